import { describe, expect, it } from "vitest";
import {
  CountingRetryStrategy,
  DEFAULT_RETRY_BOUNDS,
  maxTotalBackoffMs,
  requestKind,
} from "./s3-requests.js";

type ErrorInfo = Parameters<CountingRetryStrategy["refreshRetryTokenForRetry"]>[1];
type SdkError = ErrorInfo["error"];

const slowDown = (): ErrorInfo => ({
  error: Object.assign(new Error("Please reduce your request rate."), {
    name: "SlowDown",
    $metadata: { httpStatusCode: 503 },
  }) as SdkError,
  errorType: "THROTTLING",
});

const refused = (): ErrorInfo => ({
  error: Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), {
    code: "ECONNREFUSED",
    $metadata: {},
  }) as SdkError,
  errorType: "TRANSIENT",
});

/** Retries one request until the strategy refuses; how many it granted, and their delays. */
async function retryUntilRefused(
  strategy: CountingRetryStrategy,
  error: () => ErrorInfo,
): Promise<number[]> {
  let token = await strategy.acquireInitialRetryToken("");
  const delays: number[] = [];
  for (let i = 0; i < 100; i++) {
    try {
      token = await strategy.refreshRetryTokenForRetry(token, error());
    } catch {
      return delays;
    }
    delays.push(
      (token as { $retryLog?: { acquisitionDelay: number } }).$retryLog?.acquisitionDelay ?? -1,
    );
  }
  throw new Error("the strategy never stopped retrying");
}

describe("S3 retry bounds", () => {
  it("by default, at most 8 attempts and 27 s of backoff (1+2+4+5+5+5+5 s)", () => {
    expect(DEFAULT_RETRY_BOUNDS.maxAttempts).toBe(8);
    expect(maxTotalBackoffMs(DEFAULT_RETRY_BOUNDS)).toBe(27_000);
    expect(maxTotalBackoffMs({ maxAttempts: 1, maxDelayMs: 5_000 })).toBe(0);
  });

  it("retries throttling up to maxAttempts, counts each retry, and never waits past maxDelayMs", async () => {
    const strategy = new CountingRetryStrategy({ maxAttempts: 5, maxDelayMs: 3 });
    const delays = await retryUntilRefused(strategy, slowDown);
    expect(delays).toHaveLength(4);
    expect(strategy.retries).toBe(4);
    for (const delay of delays) expect(delay).toBeLessThanOrEqual(3);
  });

  it("ignores a Retry-After that would stretch a backoff past the bound", async () => {
    const strategy = new CountingRetryStrategy({ maxAttempts: 2, maxDelayMs: 2 });
    const delays = await retryUntilRefused(strategy, () => ({
      ...slowDown(),
      retryAfterHint: new Date(Date.now() + 60_000),
    }));
    expect(delays).toHaveLength(1);
    expect(delays[0]).toBeLessThanOrEqual(2);
  });

  it("gives a request that got no answer at all 3 attempts, so a wrong endpoint fails fast", async () => {
    const strategy = new CountingRetryStrategy({ maxAttempts: 8, maxDelayMs: 1 });
    expect(await retryUntilRefused(strategy, refused)).toHaveLength(2);
    expect(strategy.retries).toBe(2);
  });
});

describe("requestKind", () => {
  it.each([
    ["HeadObjectCommand", "head"],
    ["GetObjectCommand", "get"],
    ["PutObjectCommand", "put"],
    ["ListObjectsV2Command", "list"],
    ["DeleteObjectCommand", "delete"],
    ["CreateMultipartUploadCommand", "multipart-create"],
    ["UploadPartCommand", "multipart-part"],
    ["CompleteMultipartUploadCommand", "multipart-complete"],
    ["AbortMultipartUploadCommand", "multipart-abort"],
    ["CopyObjectCommand", "other"],
    [undefined, "other"],
  ])("%s is %s", (command, kind) => {
    expect(requestKind(command)).toBe(kind);
  });
});
