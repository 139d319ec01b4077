// An S3 failure without an S3 error code (a HEAD answered 503 with no body, as a failing proxy
// does) names its HTTP status and gets a hint, through the real AWS SDK.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { S3Store } from "../src/store/s3-store.js";
import { type LyingS3, startLyingS3 } from "./support/lying-s3.js";

let s3: LyingS3;

beforeAll(async () => {
  process.env.AWS_ACCESS_KEY_ID = "x";
  process.env.AWS_SECRET_ACCESS_KEY = "y";
  s3 = await startLyingS3({ headStatus: 503 });
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
