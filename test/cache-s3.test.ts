// A push to s3:// on a real S3 protocol server (s3rver, and moto's server; through the AWS SDK) is
// readable by stock `nix copy --from` through `nixship cache serve`, and by us.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nixCopyFrom, nixStoreDump, nixship } from "../support/cli.js";
import type { S3Bucket } from "../support/s3-server.js";
import { startCacheServer } from "../support/serve.js";
import { buildFixtureClosure, closureMeta, type PathMeta } from "./support/fixture-closure.js";
import { S3_SERVERS } from "./support/s3-servers.js";

describe.each(S3_SERVERS)("on $name", ({ name, start }) => {
  let work: string;
  let s3: S3Bucket;
  let root: string;
  let source: Map<string, PathMeta>;
  let cacheUrl: string;
  let pub: string;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), `nixship-cache-${name}-`));
    s3 = await start();
    root = await buildFixtureClosure();
    source = await closureMeta(root);
    cacheUrl = `s3://${s3.bucket}/nix-cache?region=us-east-1&endpoint=${s3.endpoint}`;
    const secret = join(work, "k.sec");
    pub = (
      await nixship(["key", "generate", "--name", "s3-cache-1", "--out", secret])
    ).stdout.trim();
    const push = await nixship(["push", root, "--to", cacheUrl, "--key", secret, "--json"]);
    expect(push.code, push.stderr).toBe(0);
    expect(push.stderr).toBe("");
    expect(JSON.parse(push.stdout)).toMatchObject({ paths: source.size, pushed: source.size });
  });
  afterAll(async () => {
    await s3?.close();
    await rm(work, { recursive: true, force: true });
  });

  describe("a cache in S3", () => {
    it("is readable by nix copy --from through cache serve, with the source's NarHashes", async () => {
      const server = await startCacheServer(cacheUrl);
      try {
        const store = join(work, "store");
        const r = await nixCopyFrom(server.url, store, pub, root);
        expect(r.code, r.stderr).toBe(0);
        expect([...(await closureMeta(root, store)).values()]).toEqual([...source.values()]);
      } finally {
        await server.stop();
      }
    });

    it("passes nixship verify and restores with nixship fetch", async () => {
      const v = await nixship(["verify", "--cache", cacheUrl, "--trusted-key", pub, "--json"]);
      expect(v.code, v.stdout).toBe(0);
      expect(JSON.parse(v.stdout)).toMatchObject({ checked: source.size, ok: source.size });
      const dir = join(work, "restored");
      const f = await nixship([
        "fetch",
        root,
        "--from",
        cacheUrl,
        "--trusted-key",
        pub,
        "--restore",
        dir,
      ]);
      expect(f.code, f.stderr).toBe(0);
      expect(nixStoreDump(dir).equals(nixStoreDump(root))).toBe(true);
    });

    it("keeps the cache under its prefix", async () => {
      const bare = `s3://${s3.bucket}?region=us-east-1&endpoint=${s3.endpoint}`;
      const v = await nixship(["verify", "--cache", bare, "--trusted-key", pub, "--json"]);
      expect(v.code).toBe(2);
      expect(JSON.parse(v.stdout).error).toMatchObject({ code: "no-binary-cache" });
      expect(v.stderr).toContain("holds no binary cache (it has no nix-cache-info)");
    });
  });

  describe("an uncompressed push to S3 (NARs streamed straight into the bucket)", () => {
    it("verifies and is readable by Nix", async () => {
      const url = `s3://${s3.bucket}/plain?region=us-east-1&endpoint=${s3.endpoint}`;
      const secret = join(work, "plain.sec");
      const key = (
        await nixship(["key", "generate", "--name", "s3-plain-1", "--out", secret])
      ).stdout.trim();
      const push = await nixship([
        "push",
        root,
        "--to",
        url,
        "--key",
        secret,
        "--compression",
        "none",
        "--json",
      ]);
      expect(push.code, push.stderr).toBe(0);
      const v = await nixship(["verify", "--cache", url, "--trusted-key", key, "--json"]);
      expect(JSON.parse(v.stdout)).toMatchObject({
        checked: source.size,
        ok: source.size,
        problems: [],
      });
      const server = await startCacheServer(url);
      try {
        const r = await nixCopyFrom(server.url, join(work, "store-plain"), key, root);
        expect(r.code, r.stderr).toBe(0);
      } finally {
        await server.stop();
      }
    });
  });
});
