// An S3 failure without an S3 error code (a HEAD answered 503 with no body, as a failing proxy
// does) names its HTTP status and gets a hint, and a server that stops answering ends the
// request instead of holding it for ever; through the real AWS SDK.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readAll } from "../src/store/helpers.js";
import { S3Store } from "../src/store/s3-store.js";
import { type LyingS3, startLyingS3 } from "./support/lying-s3.js";

let s3: LyingS3;

beforeAll(async () => {
  process.env.AWS_ACCESS_KEY_ID = "x";
  process.env.AWS_SECRET_ACCESS_KEY = "y";
  s3 = await startLyingS3({
    headStatus: 503,
    stalls: { "silent.narinfo": "answer", "halfway.nar": "body" },
  });
});
afterAll(() => s3.stop());

describe("S3 failures name the HTTP status", () => {
  it("a HEAD answered 503 with no body", async () => {
    const store = new S3Store({
      bucket: s3.bucket,
      region: "us-east-1",
      endpoint: s3.endpoint,
      // The answer is always 503: keep the retries' backoff short (s3-retry.test.ts tests it).
      retry: { maxDelayMs: 1 },
    });
    try {
      await expect(store.head("nix-cache-info")).rejects.toMatchObject({
        code: "store-s3-failed",
        message: expect.stringContaining('S3 head of "nix-cache-info" in bucket "lies"'),
        hint: "the server is unavailable or slowing requests down: try again later",
      });
      await expect(store.head("nix-cache-info")).rejects.toThrow(/\(HTTP 503\)/);
    } finally {
      await store.close();
    }
  });
});

describe("a server that stops answering", () => {
  // The SDK's own defaults have no timer: without the store's, each of these waits for ever
  // (and the test for vitest's timeout).
  const quiet = () =>
    new S3Store({
      bucket: s3.bucket,
      region: "us-east-1",
      endpoint: s3.endpoint,
      retry: { maxDelayMs: 1 },
      timeouts: { connectMs: 2_000, idleMs: 300, answerMs: 60_000 },
    });

  it("ends a request that gets no answer, naming the store and the fix", async () => {
    const store = quiet();
    const before = s3.requests.get("stalled") ?? 0;
    try {
      await expect(store.get("silent.narinfo")).rejects.toMatchObject({
        message: expect.stringContaining('"silent.narinfo" in bucket "lies"'),
        hint: "check that the endpoint in the store URL is right and the server is reachable",
      });
      // Retried as a request that got no answer: a few attempts, not the throttling's eight.
      expect((s3.requests.get("stalled") ?? 0) - before).toBe(3);
    } finally {
      await store.close();
    }
  });

  it("ends a body that stops halfway", async () => {
    const store = quiet();
    try {
      await expect(readAll(store, "halfway.nar")).rejects.toThrow(/timed out after 300 ms/);
    } finally {
      await store.close();
    }
  });
});
