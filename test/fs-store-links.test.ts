// A directory store never reads, serves or writes through a symbolic link: a NAR planted as a
// link to a file outside the cache (or under a directory that is a link out of it) is refused
// by the store and never served by `cache serve`, and a put or delete under a directory that
// links out of the store touches nothing outside it.
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NixshipError } from "../src/errors.js";
import { FsStore } from "../src/store/fs-store.js";
import { type RunningServer, startCacheServer } from "../support/serve.js";

const SECRET = "the-contents-of-a-file-outside-the-cache";
// Names the cache server serves: NAR files are named by a 52-character nix32 hash.
const REAL = `nar/${"1".repeat(52)}.nar`;
const PLANTED = `nar/${"2".repeat(52)}.nar`;
let work: string;
let cache: string;
let server: RunningServer;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-links-"));
  cache = join(work, "cache");
  const outside = join(work, "outside");
  await mkdir(join(cache, "nar"), { recursive: true });
  await mkdir(outside);
  await writeFile(join(outside, "secret"), SECRET);
  await writeFile(join(cache, REAL), "nar bytes");
  await writeFile(join(cache, "nix-cache-info"), "StoreDir: /nix/store\n");
  // A link to a file outside, and a whole directory of the cache that is a link out of it.
  await symlink(join(outside, "secret"), join(cache, PLANTED));
  await writeFile(join(outside, "also.narinfo"), SECRET);
  await symlink(outside, join(cache, "realisations"));
  server = await startCacheServer(`file://${cache}`);
});

afterAll(async () => {
  await server?.stop();
  await rm(work, { recursive: true, force: true });
});

async function refusal(p: Promise<unknown>): Promise<NixshipError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof NixshipError)) throw new Error(`expected a refusal, got ${String(err)}`);
  return err;
}

describe("the directory store and links", () => {
  it("reads a real object, and refuses one that is a link, for get and head", async () => {
    const store = new FsStore(cache);
    expect((await store.head(REAL))?.size).toBe(9);
    for (const op of [() => store.get(PLANTED), () => store.head(PLANTED)]) {
      const err = await refusal(op());
      expect(err.code).toBe("store-link");
      expect(err.message).toBe(
        `${PLANTED} in ${cache} is reached through a symbolic link; the store never follows links`,
      );
    }
  });

  it("refuses an object under a directory that is a link out of the root", async () => {
    const store = new FsStore(cache);
    const err = await refusal(store.get("realisations/also.narinfo"));
    expect(err.code).toBe("store-link");
  });

  it("never serves a link's target over HTTP", async () => {
    const planted = await fetch(`${server.url}/${PLANTED}`);
    const body = await planted.text();
    expect(planted.status).not.toBe(200);
    expect(body).not.toContain(SECRET);
    const head = await fetch(`${server.url}/${PLANTED}`, { method: "HEAD" });
    expect(head.status).not.toBe(200);
    const real = await fetch(`${server.url}/${REAL}`);
    expect(real.status).toBe(200);
    expect(await real.text()).toBe("nar bytes");
  });

  it("writes and deletes nothing through a directory that is a link out of the root", async () => {
    // As a writer of status/ could leave it: status/hosts a link to a directory elsewhere.
    const elsewhere = join(work, "elsewhere");
    await mkdir(join(elsewhere, "deeper"), { recursive: true });
    await writeFile(join(elsewhere, "web1.json"), "theirs");
    await mkdir(join(cache, "status"));
    await symlink(elsewhere, join(cache, "status", "hosts"));
    const store = new FsStore(cache);
    const file = join(work, "body");
    await writeFile(file, "a file's bytes");
    const refusals = [
      () => store.put("status/hosts/web1.json", Buffer.from("ours")),
      () =>
        store.put("status/hosts/new.json", Buffer.from("ours"), { condition: { ifAbsent: true } }),
      // A directory not made yet, below the link.
      () => store.put("status/hosts/deeper/more/x.json", Buffer.from("ours")),
      () => store.putFile("status/hosts/file.json", file),
      () => store.delete("status/hosts/web1.json"),
      async () => {
        await store.put("status/hosts/later.json", Buffer.from("ours"), { durability: "deferred" });
        await store.flush();
      },
    ];
    for (const op of refusals) expect((await refusal(op())).code).toBe("store-link");
    await store.close();
    expect((await readdir(elsewhere)).sort()).toEqual(["deeper", "web1.json"]);
    expect(await readdir(join(elsewhere, "deeper"))).toEqual([]);
    // What is inside the root is written as before.
    await store.put("status/own.json", Buffer.from("ours"));
    expect((await store.head("status/own.json"))?.size).toBe(4);
  });
});
