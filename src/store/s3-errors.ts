// How S3 failures read: which SDK errors mean "absent" or "precondition failed" (expected
// outcomes), and how the rest become an OperationError naming the object, the S3 code and a hint.
import { NixshipError, OperationError } from "../errors.js";
import { awsErrorText } from "../util/aws-error-text.js";
import { isAnswerCut } from "../util/aws-response-limit.js";
import type { PutCondition } from "./object-store.js";

/** `what` names the operation and object, e.g. `S3 get of "k" in bucket "b"`. */
export function s3Fault(err: unknown, what: string): Error {
  // An answer cut (util/aws-response-limit.ts) says what came; this says of what and where.
  if (isAnswerCut(err)) {
    return new OperationError("store-s3-failed", `${what} failed: ${err.message}`, {
      cause: err,
      ...(err.hint === undefined ? {} : { hint: err.hint }),
    });
  }
  if (err instanceof NixshipError) return err;
  const name = errorName(err);
  const detail = awsErrorText(err);
  // A response without a body (HEAD, or a proxy's error page) leaves the SDK with no S3 code
  // ("UnknownError"): the HTTP status is what says what happened.
  const status = httpStatus(err);
  const http = status === undefined ? "" : ` (HTTP ${status})`;
  const hint =
    HINTS.find(([names]) => names.includes(name))?.[1] ??
    (status === undefined ? undefined : STATUS_HINTS[status]);
  // The SDK records how often it tried: "after 8 attempts" says the retries ran out.
  const { attempts, totalRetryDelay } = metadata(err) ?? {};
  const tried =
    attempts !== undefined && attempts > 1
      ? ` after ${attempts} attempts (${((totalRetryDelay ?? 0) / 1000).toFixed(1)} s of backoff)`
      : "";
  return new OperationError(
    "store-s3-failed",
    `${what} failed${tried}: ${name}${http}: ${detail}`,
    {
      cause: err,
      ...(hint ? { hint } : {}),
    },
  );
}

function errorName(err: unknown): string {
  const e = err as { name?: string; code?: string } | undefined;
  // Network failures arrive as plain Node errors whose `code` (ECONNREFUSED) says the most.
  return (e?.name === "Error" || e?.name === undefined ? e?.code : e.name) ?? "Error";
}

interface Metadata {
  readonly httpStatusCode?: number;
  readonly attempts?: number;
  readonly totalRetryDelay?: number;
}

function metadata(err: unknown): Metadata | undefined {
  return (err as { $metadata?: Metadata } | undefined)?.$metadata;
}

function httpStatus(err: unknown): number | undefined {
  return metadata(err)?.httpStatusCode;
}

export function isNotFound(err: unknown): boolean {
  const name = errorName(err);
  return (
    name === "NoSuchKey" ||
    name === "NotFound" ||
    (httpStatus(err) === 404 && name !== "NoSuchBucket")
  );
}

/** A conditional GET whose If-None-Match held: S3 answers 304 with no body (so no error code). */
export function isNotModified(err: unknown): boolean {
  return httpStatus(err) === 304 || errorName(err) === "NotModified";
}

export function isPreconditionFailed(err: unknown, condition?: PutCondition): boolean {
  const status = httpStatus(err);
  if (status === 412 || errorName(err) === "PreconditionFailed") return true;
  if (status === 409 && errorName(err) === "ConditionalRequestConflict") return true;
  // If-Match on a missing key: some S3 implementations answer 404 NoSuchKey rather than 412.
  return condition !== undefined && "ifMatch" in condition && errorName(err) === "NoSuchKey";
}

const STATUS_HINTS: Readonly<Record<number, string>> = {
  301: "the bucket is in another region, or the endpoint moved: set ?region= in the store URL, or check its endpoint",
  400: "the server refused the request: check the store URL (bucket, region, endpoint)",
  401: "the server wants credentials: check the AWS credentials",
  403: "access denied: check the AWS credentials, their policy and the bucket's policy",
  500: "the server failed: try again later, and check its logs",
  502: "a proxy in front of the server failed: try again later",
  503: "the server is unavailable or slowing requests down: try again later",
  504: "a gateway in front of the server timed out: try again later",
};

const HINTS: readonly (readonly [readonly string[], string])[] = [
  [
    ["InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"],
    "check the AWS credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or ?profile=)",
  ],
  // Keys S3 accepted, refused by a policy (missing keys are CredentialsProviderError).
  [
    ["AccessDenied"],
    "the credentials' policy does not allow this request on that key: give them the cache module's policy for what this command does (docs/terraform.md: writer, reader, collector, agent or host_read), or check the bucket's policy",
  ],
  [["CredentialsProviderError"], "no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID"],
  [
    ["SlowDown", "Throttling", "ThrottlingException", "TooManyRequestsException"],
    "the server is slowing requests down: try again later, or send fewer at once (push --jobs, and the store URL's upload-concurrency=)",
  ],
  [
    ["NoSuchBucket"],
    "check the bucket name in the store URL, and its region or endpoint; nixship writes into a bucket and never makes one: make it first (terraform/modules/cache, docs/terraform.md)",
  ],
  [
    ["PermanentRedirect", "AuthorizationHeaderMalformed"],
    "the bucket is in another region: set ?region= in the store URL",
  ],
  [
    ["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "ECONNRESET", "ETIMEDOUT", "TimeoutError"],
    "check that the endpoint in the store URL is right and the server is reachable",
  ],
];
