// How S3Store's requests are retried and counted: the AWS SDK's own standard retry strategy with
// explicit bounds (attempts, and the longest backoff, so a longest total), and counts by kind.
import type { S3Client } from "@aws-sdk/client-s3";
import { Retry, StandardRetryStrategy } from "@smithy/core/retry";
import { REQUEST_KINDS, type RequestKind, type RequestStats } from "./object-store.js";

export interface RetryBounds {
  /** Attempts per request, the first included, while the server answers throttled, 500, 502, 503 or 504. */
  readonly maxAttempts: number;
  /** The longest one backoff may be, in ms: each waits a random time up to base × 2^retry. */
  readonly maxDelayMs: number;
}

/**
 * S3 asks clients that get 503 SlowDown to back off and try again; the SDK's default (3 attempts)
 * gives up within about 3 s. These wait longer, and still end: see maxTotalBackoffMs.
 */
export const DEFAULT_RETRY_BOUNDS: RetryBounds = { maxAttempts: 8, maxDelayMs: 5_000 };

/**
 * Attempts when no answer came at all (connection refused or reset, timeout): the SDK's default,
 * so a mistyped endpoint still fails within a second, with its hint.
 */
const UNANSWERED_ATTEMPTS = 3;

/**
 * The most a request can spend waiting between its attempts. The SDK's bases are 1 s for
 * throttling answers (SlowDown, 429) and 50 ms for others, doubled at each retry; the throttling
 * base is the larger, so it bounds both.
 */
export function maxTotalBackoffMs(bounds: RetryBounds): number {
  let total = 0;
  for (let retry = 0; retry < bounds.maxAttempts - 1; retry++) {
    total += Math.min(bounds.maxDelayMs, Retry.throttlingDelay() * 2 ** retry);
  }
  return total;
}

type RetryToken = Awaited<ReturnType<StandardRetryStrategy["acquireInitialRetryToken"]>>;
type RetryErrorInfo = Parameters<StandardRetryStrategy["refreshRetryTokenForRetry"]>[1];

/**
 * The SDK's standard strategy (which errors are retried, its retry quota, full jitter), with
 * our bounds, and a count of the retries it granted.
 */
export class CountingRetryStrategy extends StandardRetryStrategy {
  #retries = 0;

  constructor(bounds: RetryBounds) {
    super({ maxAttempts: bounds.maxAttempts, backoff: new CappedBackoff(bounds.maxDelayMs) });
  }

  get retries(): number {
    return this.#retries;
  }

  override async refreshRetryTokenForRetry(
    token: RetryToken,
    errorInfo: RetryErrorInfo,
  ): Promise<RetryToken> {
    if (!answered(errorInfo.error) && token.getRetryCount() + 1 >= UNANSWERED_ATTEMPTS) {
      // What the SDK throws when it refuses a retry: the request then fails with its last error.
      throw new Error("No retry token available");
    }
    // Without retryAfterHint: a Retry-After header would stretch a backoff past maxDelayMs.
    const next = await super.refreshRetryTokenForRetry(token, {
      error: errorInfo.error,
      errorType: errorInfo.errorType,
    });
    this.#retries++;
    return next;
  }
}

/** Full jitter over base × 2^retry, at most `maxDelayMs`; the strategy sets the base per error. */
class CappedBackoff {
  #base = Retry.delay();

  constructor(private readonly maxDelayMs: number) {}

  setDelayBase(delayBase: number): void {
    this.#base = delayBase;
  }

  computeNextBackoffDelay(retry: number): number {
    return Math.floor(Math.random() * Math.min(this.maxDelayMs, this.#base * 2 ** retry));
  }
}

function answered(err: unknown): boolean {
  return (
    (err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode !==
    undefined
  );
}

const KINDS: Readonly<Record<string, RequestKind>> = {
  HeadObjectCommand: "head",
  GetObjectCommand: "get",
  PutObjectCommand: "put",
  ListObjectsV2Command: "list",
  DeleteObjectCommand: "delete",
  // One request for up to 1,000 keys; counted as one delete request.
  DeleteObjectsCommand: "delete",
  CreateMultipartUploadCommand: "multipart-create",
  UploadPartCommand: "multipart-part",
  CompleteMultipartUploadCommand: "multipart-complete",
  AbortMultipartUploadCommand: "multipart-abort",
};

export function requestKind(commandName: string | undefined): RequestKind {
  return KINDS[commandName ?? ""] ?? "other";
}

export function noRequests(): Record<RequestKind, number> {
  return Object.fromEntries(REQUEST_KINDS.map((kind) => [kind, 0])) as Record<RequestKind, number>;
}

/**
 * Counts every request `client` sends, by kind: the counter sits in the deserialize step, which
 * the retry middleware (in finalizeRequest) runs once per attempt.
 */
export function countRequests(
  client: S3Client,
  strategy: CountingRetryStrategy,
): () => RequestStats {
  const counts = noRequests();
  client.middlewareStack.add(
    (next, context) => async (args) => {
      counts[requestKind(context.commandName)]++;
      return next(args);
    },
    { step: "deserialize", name: "nixshipRequestCounter" },
  );
  return () => ({ requests: { ...counts }, retries: strategy.retries });
}
