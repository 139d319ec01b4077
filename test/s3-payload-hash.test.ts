// A NAR's FileHash is the SHA-256 of the file push uploads, so S3's SigV4 need not hash the file
// again: push hands it to the store, which sends it as the signed payload hash
// (x-amz-content-sha256), and S3 refuses a body that does not match it. Real s3rver behind a
// counting proxy that records each PUT's header; s3rver itself does not check the hash, so
// these tests check what is sent.
import { createHash } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import type { IncomingHttpHeaders } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pushClosure } from "../src/cache/push.js";
import { generateSecretKey } from "../src/nix/keys.js";
import { parseNarInfo } from "../src/nix/narinfo.js";
import { parseStorePath } from "../src/nix/store-path.js";
import { FsStore } from "../src/store/fs-store.js";
import { readAll } from "../src/store/helpers.js";
import type { PutOptions, PutResult } from "../src/store/object-store.js";
import { S3Store } from "../src/store/s3-store.js";
import { nixship } from "../support/cli.js";
import { type CountingProxy, startCountingProxy } from "../support/counting-proxy.js";
import { type S3Server, startS3Server } from "../support/s3-server.js";
import { buildFixtureClosure, closureMeta } from "./support/fixture-closure.js";

let work: string;
let s3: S3Server;
let proxy: CountingProxy;
/** The x-amz-content-sha256 header of every PUT the proxy forwarded, by path (no query). */
const sent = new Map<string, string | undefined>();

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-s3-payload-"));
  s3 = await startS3Server();
  proxy = await startCountingProxy(s3.endpoint, {
    intercept: (r) => {
      if (r.method === "PUT") sent.set(r.url.split("?")[0] ?? "", header(r.headers));
      return undefined;
    },
  });
});
afterAll(async () => {
  await proxy?.close();
  await s3?.close();
  await rm(work, { recursive: true, force: true });
});

function header(headers: IncomingHttpHeaders): string | undefined {
  const value = headers["x-amz-content-sha256"];
  return Array.isArray(value) ? value.join(",") : value;
}

function hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function store(prefix: string): S3Store {
  return new S3Store({ bucket: s3.bucket, prefix, region: "us-east-1", endpoint: proxy.endpoint });
}

describe("the S3 payload hash", () => {
  it("is the caller's sha256 when it gives one, and the stored bytes are the file's", async () => {
    const s = store("given");
    const bytes = Buffer.from("a NAR file's bytes\n".repeat(1000));
    const file = join(work, "given.nar");
    await writeFile(file, bytes);
    await s.putFile("nar/given.nar", file, { sha256: hex(bytes) });
    expect(sent.get(`/${s3.bucket}/given/nar/given.nar`)).toBe(hex(bytes));
    expect((await readAll(s, "nar/given.nar", bytes.length))?.equals(bytes)).toBe(true);
    await s.close();
  });

  it("is sent as given, not hashed again (real S3 would refuse a wrong one)", async () => {
    const s = store("as-given");
    const claimed = hex(Buffer.from("some other bytes"));
    await s.put("x", Buffer.from("these bytes"), { sha256: claimed });
    expect(sent.get(`/${s3.bucket}/as-given/x`)).toBe(claimed);
    await s.close();
  });

  it("is the SDK's own hash of the body without one", async () => {
    const s = store("hashed");
    const bytes = Buffer.from("hashed by the signer");
    await s.put("y", bytes);
    expect(sent.get(`/${s3.bucket}/hashed/y`)).toBe(hex(bytes));
    await s.close();
  });

  it("must be 64 lowercase hex digits: anything else is refused before a request", async () => {
    const s = store("malformed");
    const before = proxy.counts().requests.put;
    for (const bad of ["ABC", "g".repeat(64), hex(Buffer.from("x")).toUpperCase()]) {
      await expect(s.put("z", Buffer.from("z"), { sha256: bad })).rejects.toThrow(
        /sha256 must be 64 lowercase hex digits/,
      );
    }
    expect(proxy.counts().requests.put).toBe(before);
    await s.close();
  });

  it("of every NAR push uploads is the FileHash its narinfo records", async () => {
    const root = await buildFixtureClosure();
    const paths = await closureMeta(root);
    const secret = join(work, "k.sec");
    const key = await nixship(["key", "generate", "--name", "payload-1", "--out", secret]);
    expect(key.code, key.stderr).toBe(0);
    const url = `s3://${s3.bucket}/pushed?region=us-east-1&endpoint=${proxy.endpoint}`;
    const push = await nixship(["push", root, "--to", url, "--key", secret, "--json"]);
    expect(push.code, push.stderr).toBe(0);
    expect(JSON.parse(push.stdout)).toMatchObject({ pushed: paths.size });
    const s = store("pushed");
    const narinfos = (await s.list("")).objects.filter((o) => o.key.endsWith(".narinfo"));
    expect(narinfos).toHaveLength(paths.size);
    for (const { key: name } of narinfos) {
      const info = parseNarInfo((await readAll(s, name))?.toString("utf8") ?? "");
      const fileHash = Buffer.from(info.fileHash?.bytes ?? []).toString("hex");
      expect(fileHash).toMatch(/^[0-9a-f]{64}$/);
      expect(sent.get(`/${s3.bucket}/pushed/${info.url}`)).toBe(fileHash);
    }
    await s.close();
  });

  it("is what push hands the store for each NAR: its FileHash", async () => {
    const root = await buildFixtureClosure();
    const given = new Map<string, string | undefined>();
    // A directory store that notes what each putFile was given (it ignores sha256 itself).
    class Noting extends FsStore {
      override putFile(
        key: string,
        file: string,
        options?: Omit<PutOptions, "size">,
      ): Promise<PutResult> {
        given.set(key, options?.sha256);
        return super.putFile(key, file, options);
      }
    }
    const cache = new Noting(join(work, "noted"));
    try {
      const summary = await pushClosure({
        store: cache,
        roots: [parseStorePath(root).path],
        key: generateSecretKey("noting-1"),
        compression: "zstd",
        createCache: true,
        inlineNarBytes: 0,
      });
      expect(given.size).toBe(summary.pushed);
      for (const { key: name } of (await cache.list("")).objects) {
        if (!name.endsWith(".narinfo")) continue;
        const info = parseNarInfo((await readAll(cache, name))?.toString("utf8") ?? "");
        expect(given.get(info.url)).toBe(Buffer.from(info.fileHash?.bytes ?? []).toString("hex"));
      }
    } finally {
      await cache.close();
    }
  });
});
