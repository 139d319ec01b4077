// Our cache works with Nix (file:// and through `cache serve`), and a
// cache written by Nix works with us (verify, fetch --restore, fetch --import).
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nixCopyFrom, nixCopyFromArgs, nixStoreDump, nixship, run, runOk } from "../support/cli.js";
import { startCacheServer } from "../support/serve.js";
import { buildFixtureClosure, closureMeta, type PathMeta } from "./support/fixture-closure.js";

let work: string;
let root: string;
let source: Map<string, PathMeta>;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-cache-nix-"));
  root = await buildFixtureClosure();
  source = await closureMeta(root);
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

async function makeKey(name: string): Promise<{ secret: string; pub: string }> {
  const secret = join(work, `${name}.sec`);
  const r = await nixship(["key", "generate", "--name", name, "--out", secret]);
  expect(r.code).toBe(0);
  return { secret, pub: r.stdout.trim() };
}

describe("our cache works with Nix", () => {
  for (const compression of ["zstd", "xz", "none"]) {
    it(`nix copy --from file:// accepts a ${compression} push, with the source's NarHashes`, async () => {
      const key = await makeKey(`ours-${compression}`);
      const cache = join(work, `cache-${compression}`);
      const push = await nixship([
        "push",
        root,
        "--to",
        `file://${cache}`,
        "--key",
        key.secret,
        "--compression",
        compression,
        "--json",
      ]);
      expect(push.stderr).toBe("");
      expect(push.code).toBe(0);
      const summary = JSON.parse(push.stdout);
      expect(summary.paths).toBe(source.size);
      expect(summary.pushed).toBe(source.size);

      const store = join(work, `store-file-${compression}`);
      const copy = await nixCopyFrom(`file://${cache}`, store, key.pub, root);
      expect(copy.code, copy.stderr).toBe(0);
      const copied = await closureMeta(root, store);
      expect([...copied.values()]).toEqual([...source.values()]);
    });
  }

  it("nix copy --from http:// through `nixship cache serve` accepts it too", async () => {
    const key = await makeKey("served");
    const cache = join(work, "cache-served");
    expect(
      (await nixship(["push", root, "--to", `file://${cache}`, "--key", key.secret])).code,
    ).toBe(0);
    const server = await startCacheServer(`file://${cache}`);
    try {
      const store = join(work, "store-http");
      const copy = await nixCopyFrom(server.url, store, key.pub, root);
      expect(copy.code, copy.stderr).toBe(0);
      expect([...(await closureMeta(root, store)).values()]).toEqual([...source.values()]);
    } finally {
      await server.stop();
    }
  });

  it("a second push skips everything already in the cache", async () => {
    const key = await makeKey("again");
    const cache = join(work, "cache-again");
    await nixship(["push", root, "--to", `file://${cache}`, "--key", key.secret]);
    const again = await nixship([
      "push",
      root,
      "--to",
      `file://${cache}`,
      "--key",
      key.secret,
      "--json",
    ]);
    expect(JSON.parse(again.stdout)).toMatchObject({ pushed: 0, alreadyPresent: source.size });
  });
});

describe("Nix's cache works with us", () => {
  let cache: string;
  let pub: string;

  beforeAll(async () => {
    const secret = join(work, "nix-made.sec");
    await runOk("sh", ["-c", `nix key generate-secret --key-name nix-made-1 > ${secret}`]);
    pub = (await runOk("sh", ["-c", `nix key convert-secret-to-public < ${secret}`])).trim();
    cache = join(work, "cache-by-nix");
    await runOk("nix", [
      "copy",
      "--to",
      `file://${cache}?secret-key=${secret}&compression=zstd`,
      root,
    ]);
  });

  it("nixship verify accepts it", async () => {
    const r = await nixship([
      "verify",
      "--cache",
      `file://${cache}`,
      "--trusted-key",
      pub,
      "--json",
    ]);
    expect(r.code, r.stdout).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      checked: source.size,
      ok: source.size,
      problems: [],
    });
  });

  it("nixship fetch --restore gives the same tree as the store path", async () => {
    const dir = join(work, "restored-from-nix");
    const r = await nixship([
      "fetch",
      root,
      "--from",
      `file://${cache}`,
      "--trusted-key",
      pub,
      "--restore",
      dir,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(nixStoreDump(dir).equals(nixStoreDump(root))).toBe(true);
  });

  it("nixship fetch --import adds the closure to another Nix store", async () => {
    const store = join(work, "store-imported");
    const importArgs = [
      "fetch",
      root,
      "--from",
      `file://${cache}`,
      "--trusted-key",
      pub,
      "--import",
      "--store",
      store,
      "--json",
    ];
    const r = await nixship(importArgs);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).imported).toHaveLength(source.size);
    expect([...(await closureMeta(root, store)).values()]).toEqual([...source.values()]);
    // A second fetch finds everything already valid and imports nothing.
    const again = await nixship(importArgs);
    expect(JSON.parse(again.stdout)).toMatchObject({ imported: [], alreadyValid: source.size });
  });

  it("the key file nixship writes is the format Nix reads", async () => {
    const key = await makeKey("for-nix");
    const text = await readFile(key.secret, "utf8");
    const derived = await runOk("sh", ["-c", `nix key convert-secret-to-public < ${key.secret}`]);
    expect(derived.trim()).toBe(key.pub);
    expect(text.endsWith("\n")).toBe(false);
  });
});

describe("cache serve with a token", () => {
  it("refuses Nix without the token and serves Nix that sends it from a netrc file", async () => {
    const key = await makeKey("guarded");
    const cache = join(work, "cache-guarded");
    expect(
      (await nixship(["push", root, "--to", `file://${cache}`, "--key", key.secret])).code,
    ).toBe(0);
    const tokenFile = join(work, "token");
    await writeFile(tokenFile, "s3cret-token\n", { mode: 0o644 });
    // A token others may read is refused, as a key would be; then it is made private.
    const exposed = await nixship([
      "cache",
      "serve",
      `file://${cache}`,
      "--listen",
      "127.0.0.1:0",
      "--token-file",
      tokenFile,
    ]);
    expect(exposed.code).toBe(2);
    expect(exposed.stderr).toContain(`--token-file ${tokenFile} may be read by others`);
    expect(exposed.stderr).not.toContain("s3cret-token");
    await chmod(tokenFile, 0o600);
    const server = await startCacheServer(`file://${cache}`, ["--token-file", tokenFile]);
    try {
      const refused = await nixCopyFrom(server.url, join(work, "store-no-token"), key.pub, root);
      expect(refused.code).not.toBe(0);
      const netrc = join(work, "netrc");
      await writeFile(netrc, "machine 127.0.0.1\nlogin nix\npassword s3cret-token\n");
      const args = nixCopyFromArgs(server.url, join(work, "store-token"), key.pub, root);
      const allowed = await run("nix", [...args, "--option", "netrc-file", netrc]);
      expect(allowed.code, allowed.stderr).toBe(0);
    } finally {
      await server.stop();
    }
  });
});
