// S3 answers 503 SlowDown, and nixship backs off and tries again, counting the
// retries; a server that never stops answering 503 ends the push, within the bounds, with an
// error that names the object, the status and what to do. Real s3rver, real AWS SDK, real CLI;
// the 503s come from a counting proxy in front of s3rver.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { S3Store } from "../src/store/s3-store.js";
import { nixship } from "../support/cli.js";
import {
  type CountingProxy,
  type CountingProxyOptions,
  SLOW_DOWN,
  startCountingProxy,
} from "../support/counting-proxy.js";
import { type S3Server, startS3Server } from "../support/s3-server.js";
import { buildFixtureClosure, closureMeta } from "./support/fixture-closure.js";

let work: string;
let s3: S3Server;
let root: string;
let paths: number;
let secret: string;
let pub: string;
let proxy: CountingProxy | undefined;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-s3-retry-"));
  s3 = await startS3Server();
  root = await buildFixtureClosure();
  paths = (await closureMeta(root)).size;
  secret = join(work, "k.sec");
  pub = (await nixship(["key", "generate", "--name", "s3-retry-1", "--out", secret])).stdout.trim();
});
afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
});
afterAll(async () => {
  await s3?.close();
  await rm(work, { recursive: true, force: true });
});

async function proxied(options: CountingProxyOptions): Promise<CountingProxy> {
  proxy = await startCountingProxy(s3.endpoint, options);
  return proxy;
}

const cacheUrl = (prefix: string, endpoint: string) =>
  `s3://${s3.bucket}/${prefix}?region=us-east-1&endpoint=${endpoint}`;

describe("503 SlowDown", () => {
  it("a push whose first 3 uploads are answered SlowDown succeeds and reports 3 retries", async () => {
    let slowed = 0;
    const p = await proxied({
      intercept: (r) => (r.kind === "put" && slowed++ < 3 ? SLOW_DOWN : undefined),
    });
    const url = cacheUrl("k-slowed", p.endpoint);
    const push = await nixship(["push", root, "--to", url, "--key", secret, "--json"]);
    expect(push.code, push.stderr).toBe(0);
    const summary = JSON.parse(push.stdout);
    expect(summary).toMatchObject({ paths, pushed: paths });
    expect(p.counts().serverErrors).toBe(3);
    expect(summary.store.retries).toBe(3);
    // The store counts what the server saw, kind by kind, the three refused PUTs included.
    expect(summary.store.requests).toEqual(p.counts().requests);

    const verify = await nixship(["verify", "--cache", url, "--trusted-key", pub, "--json"]);
    expect(verify.code, verify.stdout).toBe(0);
    expect(JSON.parse(verify.stdout)).toMatchObject({ checked: paths, ok: paths });
  });

  it("the text summary of a push to S3 names its requests and retries", async () => {
    let slowed = 0;
    const p = await proxied({
      intercept: (r) => (r.kind === "head" && slowed++ < 1 ? SLOW_DOWN : undefined),
    });
    const push = await nixship([
      "push",
      root,
      "--to",
      cacheUrl("k-text", p.endpoint),
      "--key",
      secret,
    ]);
    expect(push.code, push.stderr).toBe(0);
    const total = Object.values(p.counts().requests).reduce((a, b) => a + b, 0);
    expect(push.stderr).toMatch(
      new RegExp(`\\n  ${total} requests \\(\\d+ head, .*\\), 1 retry\\n`),
    );
  });

  it("a store that always answers SlowDown fails after maxAttempts, naming key, status and hint", async () => {
    const p = await proxied({ intercept: () => SLOW_DOWN });
    const store = new S3Store({
      bucket: s3.bucket,
      prefix: "always",
      region: "us-east-1",
      endpoint: p.endpoint,
      retry: { maxAttempts: 4, maxDelayMs: 2 },
    });
    try {
      await expect(store.put("nar/abc.nar.zst", Buffer.from("nar"))).rejects.toMatchObject({
        code: "store-s3-failed",
        message: expect.stringMatching(
          /^S3 put of "always\/nar\/abc\.nar\.zst" in bucket "nixship-test" at http:\/\/127\.0\.0\.1:\d+ failed after 4 attempts \([\d.]+ s of backoff\): SlowDown \(HTTP 503\): Please reduce your request rate\.$/,
        ),
        hint: expect.stringContaining("the server is slowing requests down: try again later"),
      });
      expect(p.counts().requests.put).toBe(4);
      expect(store.requestStats()).toMatchObject({ requests: { put: 4 }, retries: 3 });
    } finally {
      await store.close();
    }
  });

  it("a push against a server that never stops answering 503 ends with the default bounds", async () => {
    const p = await proxied({ intercept: () => SLOW_DOWN });
    const push = await nixship([
      "push",
      root,
      "--to",
      cacheUrl("k-never", p.endpoint),
      "--key",
      secret,
    ]);
    expect(push.code).toBe(1);
    // The first request (does the cache exist?) is tried 8 times, and the push stops there.
    expect(push.stderr).toMatch(
      /(?:^|\n)error: S3 get of "k-never\/nix-cache-info" in bucket "nixship-test" at \S+ failed after 8 attempts \([\d.]+ s of backoff\): SlowDown \(HTTP 503\): Please reduce your request rate\.\nhint: the server is slowing requests down: try again later, or send fewer at once/,
    );
    expect(p.counts().requests).toMatchObject({ get: 8, put: 0 });
  });
});
