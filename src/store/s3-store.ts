// S3Store: an ObjectStore on an S3 bucket (or MinIO, R2 and others through `endpoint`), under an
// optional key prefix. Small bodies go up in one PutObject; large ones as a bounded multipart upload.

import { createReadStream } from "node:fs";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import {
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type PutObjectCommandInput,
  S3Client,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { OperationError } from "../errors.js";
import { isAnswerCut, limitAnswers } from "../util/aws-response-limit.js";
import { type AwsTimeouts, awsRequestHandler } from "../util/aws-timeouts.js";
import { Semaphore } from "../util/pool.js";
import { keyProblem, pageLimit, validateKey, validatePrefix } from "./keys.js";
import {
  DELETE_BATCH,
  type DeleteManyResult,
  type GetOptions,
  type GetResult,
  type ListOptions,
  type ListPage,
  type NotModified,
  type ObjectInfo,
  type ObjectStore,
  type PutCondition,
  type PutOptions,
  type PutResult,
  type RequestStats,
} from "./object-store.js";
import { isNotFound, isNotModified, isPreconditionFailed, s3Fault } from "./s3-errors.js";
import {
  CountingRetryStrategy,
  countRequests,
  DEFAULT_RETRY_BOUNDS,
  type RetryBounds,
} from "./s3-requests.js";

export interface S3StoreOptions {
  readonly bucket: string;
  /** Key prefix without a trailing "/"; every key lives under it. Default: the whole bucket. */
  readonly prefix?: string;
  readonly region: string;
  /** An S3-compatible server (MinIO, R2, s3rver); implies path-style addressing. */
  readonly endpoint?: string;
  /** A profile from the shared AWS config files; otherwise the SDK's default chain decides. */
  readonly profile?: string;
  /** The URL to report as `store.url` (the factory passes the canonical one). */
  readonly url?: string;
  /** Parts of multipart uploads in flight at once, in the whole store (URL: upload-concurrency). */
  readonly uploadConcurrency?: number;
  /** How long throttled and failing requests are retried (tests shorten it). */
  readonly retry?: Partial<RetryBounds>;
  /** How long a request waits to connect, and on a connection that sends nothing (tests shorten it). */
  readonly timeouts?: AwsTimeouts;
}

/** Bodies of known size below this are buffered and sent in one request (retryable by the SDK). */
const SINGLE_PUT_LIMIT = 16 * 1024 * 1024;
const PART_SIZE = 8 * 1024 * 1024;
/** Parts in flight unless the URL's upload-concurrency says otherwise (url.ts bounds it: 1-16). */
export const DEFAULT_UPLOAD_CONCURRENCY = 4;
const FAILED: PutResult = { status: "precondition-failed" };

// The SDK warns on Node 20 that its future releases will need Node 22. nixship pins its SDK
// in package-lock.json, so the warning is not actionable for our users; keep stderr clean.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";

export class S3Store implements ObjectStore {
  readonly url: string;
  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #prefix: string;
  readonly #endpoint: string | undefined;
  readonly #uploadConcurrency: number;
  /**
   * One multipart upload at a time, each with up to #uploadConcurrency parts in flight: each
   * part in flight is a buffer of PART_SIZE, and lib-storage reads one more ahead, so multipart
   * uploads hold at most (upload-concurrency + 1) × 8 MiB (40 MiB by default), however many
   * puts run at once. (A queue per upload would hold that much per upload.) Smaller bodies go
   * in one PutObject, each buffered, under SINGLE_PUT_LIMIT.
   */
  readonly #multipart = new Semaphore(1);
  readonly #stats: () => RequestStats;

  constructor(options: S3StoreOptions) {
    this.#bucket = options.bucket;
    this.#prefix = options.prefix ? `${options.prefix}/` : "";
    this.#endpoint = options.endpoint;
    this.#uploadConcurrency = Math.max(
      1,
      Math.floor(options.uploadConcurrency ?? DEFAULT_UPLOAD_CONCURRENCY),
    );
    this.url = options.url ?? `s3://${options.bucket}${options.prefix ? `/${options.prefix}` : ""}`;
    const retryStrategy = new CountingRetryStrategy({ ...DEFAULT_RETRY_BOUNDS, ...options.retry });
    this.#client = new S3Client({
      region: options.region,
      retryStrategy,
      // Every body we send is a buffer, signed with its SHA-256 (the SDK's, or the caller's:
      // push's FileHash), and S3 refuses a body that does not match (XAmzContentSHA256Mismatch);
      // a CRC32 of it as well (the SDK's default, WHEN_SUPPORTED) would only cost CPU: about
      // 0.4 s per 300 MB pushed.
      requestChecksumCalculation: "WHEN_REQUIRED",
      requestHandler: awsRequestHandler(options.timeouts),
      ...(options.endpoint ? { endpoint: options.endpoint, forcePathStyle: true } : {}),
      ...(options.profile ? { profile: options.profile } : {}),
    });
    // A listing or an error is read whole: at most ANSWER_LIMIT bytes of it. An object found is
    // streamed to the caller, who bounds it.
    limitAnswers(this.#client, new Set(["GetObjectCommand"]), {
      ...(options.timeouts === undefined ? {} : { timeouts: options.timeouts }),
    });
    this.#stats = countRequests(this.#client, retryStrategy);
  }

  get(key: string): Promise<GetResult | undefined>;
  get(key: string, options?: GetOptions): Promise<GetResult | NotModified | undefined>;
  async get(key: string, options: GetOptions = {}): Promise<GetResult | NotModified | undefined> {
    const { ifNoneMatch } = options;
    try {
      const out = await this.#client.send(
        new GetObjectCommand({
          ...this.#target(key),
          ...(ifNoneMatch !== undefined ? { IfNoneMatch: ifNoneMatch } : {}),
        }),
      );
      const body = out.Body instanceof Readable ? out.Body : Readable.from([]);
      const info = toInfo(key, out.ContentLength, out.ETag, out.LastModified);
      return { status: "found", info, body };
    } catch (err) {
      if (ifNoneMatch !== undefined && isNotModified(err)) return { status: "not-modified" };
      if (isNotFound(err)) return undefined;
      throw this.#fault("get", key, err);
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    try {
      const out = await this.#client.send(new HeadObjectCommand(this.#target(key)));
      return toInfo(key, out.ContentLength, out.ETag, out.LastModified);
    } catch (err) {
      // HEAD errors carry no body, so a missing bucket also reads as 404 here; get and list tell.
      if (isNotFound(err)) return undefined;
      throw this.#fault("head", key, err);
    }
  }

  async put(
    key: string,
    body: Readable | Uint8Array,
    options: PutOptions = {},
  ): Promise<PutResult> {
    const params: PutObjectCommandInput = {
      ...this.#target(key),
      ...(options.contentType ? { ContentType: options.contentType } : {}),
      ...conditionParams(options.condition),
    };
    const { size, sha256 } = options;
    if (sha256 !== undefined && !/^[0-9a-f]{64}$/.test(sha256)) {
      throw new Error(`put "${key}": sha256 must be 64 lowercase hex digits`);
    }
    try {
      let etag: string | undefined;
      if (body instanceof Uint8Array || (size !== undefined && size < SINGLE_PUT_LIMIT)) {
        const bytes = body instanceof Uint8Array ? body : await readExactly(body, size ?? 0, key);
        const command = new PutObjectCommand({
          ...params,
          Body: bytes,
          ContentLength: bytes.length,
        });
        if (sha256 !== undefined) signWithPayloadHash(command, sha256);
        etag = (await this.#client.send(command)).ETag;
      } else {
        // lib-storage aborts the multipart upload itself when a part, the body or completion fails.
        const release = await this.#multipart.acquire();
        try {
          const upload = new Upload({
            client: this.#client,
            params: {
              ...params,
              Body: body,
              ...(size !== undefined ? { ContentLength: size } : {}),
            },
            partSize: PART_SIZE,
            queueSize: this.#uploadConcurrency,
          });
          etag = (await upload.done()).ETag;
        } finally {
          release();
        }
      }
      return { status: "written", etag: etag ?? "" };
    } catch (err) {
      if (isPreconditionFailed(err, options.condition)) return FAILED;
      throw this.#fault("put", key, err);
    }
  }

  async putFile(
    key: string,
    file: string,
    options: Omit<PutOptions, "size"> = {},
  ): Promise<PutResult> {
    try {
      const { size } = await stat(file);
      const body = size < SINGLE_PUT_LIMIT ? await readFile(file) : createReadStream(file);
      return await this.put(key, body, { ...options, size });
    } finally {
      await rm(file, { force: true });
    }
  }

  async makeStagingDir(): Promise<string> {
    return mkdtemp(join(tmpdir(), "nixship-staging-"));
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListPage> {
    validatePrefix(prefix);
    const after = options.token ?? options.startAfter;
    try {
      // The page token is the last key returned, sent back as StartAfter: as cheap for S3 as
      // ContinuationToken, and the same token the fs store uses.
      const out = await this.#client.send(
        new ListObjectsV2Command({
          Bucket: this.#bucket,
          Prefix: this.#prefix + prefix,
          MaxKeys: pageLimit(options.limit),
          ...(after ? { StartAfter: this.#prefix + after } : {}),
        }),
      );
      // A key outside the prefix asked for is no answer to it (a store that lies, or ignores
      // Prefix): cut by the prefix's length, it would name another object.
      const asked = this.#prefix + prefix;
      const outside = (out.Contents ?? []).find((o) => !(o.Key ?? "").startsWith(asked));
      if (outside !== undefined) {
        throw new OperationError(
          "store-list-wrong",
          `S3 list of "${asked}" in bucket "${this.#bucket}"${this.#endpoint ? ` at ${this.#endpoint}` : ""} answered a key outside that prefix: ${JSON.stringify((outside.Key ?? "").slice(0, 200))}`,
          {
            hint: "the store does not honour ListObjectsV2's Prefix; use an S3-compatible store that does",
          },
        );
      }
      const all = (out.Contents ?? []).map((o) =>
        toInfo((o.Key ?? "").slice(this.#prefix.length), o.Size, o.ETag, o.LastModified),
      );
      // A listing must move forward: every page starts after its token, in key order. A store
      // that ignores StartAfter (or says "truncated" with nothing in the page) would otherwise
      // be listed forever.
      const stuck = stalledPage(
        all.map((o) => o.key),
        after,
        out.IsTruncated === true,
      );
      if (stuck !== undefined) {
        throw new OperationError(
          "store-list-stuck",
          `S3 list of "${this.#prefix}${prefix}" in bucket "${this.#bucket}"${this.#endpoint ? ` at ${this.#endpoint}` : ""} does not advance: ${stuck}`,
          {
            hint: "the store does not honour ListObjectsV2's StartAfter; use an S3-compatible store that does",
          },
        );
      }
      // Objects written by other tools may have names our keys cannot express; skip them.
      const objects = all.filter((info) => keyProblem(info.key) === undefined);
      const last = all.at(-1)?.key;
      return out.IsTruncated && last !== undefined ? { objects, nextToken: last } : { objects };
    } catch (err) {
      // (Its own stall, above, names the listing already.)
      if (err instanceof OperationError && !isAnswerCut(err)) throw err;
      throw this.#fault("list", prefix, err);
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await this.#client.send(new DeleteObjectCommand(this.#target(key)));
    } catch (err) {
      throw this.#fault("delete", key, err);
    }
  }

  /** DeleteObjects: up to 1,000 keys in one request; the keys S3 could not delete come back. */
  async deleteMany(keys: readonly string[]): Promise<DeleteManyResult> {
    if (keys.length === 0) return { failed: [] };
    if (keys.length > DELETE_BATCH) {
      throw new OperationError(
        "store-delete-batch",
        `a batch delete takes at most ${DELETE_BATCH} keys, not ${keys.length}`,
      );
    }
    const objects = keys.map((key) => ({ Key: this.#prefix + validateKey(key) }));
    try {
      const out = await this.#client.send(
        new DeleteObjectsCommand({
          Bucket: this.#bucket,
          Delete: { Objects: objects, Quiet: true },
        }),
      );
      const failed = (out.Errors ?? []).map((e) => ({
        key: (e.Key ?? "").slice(this.#prefix.length),
        message: `${e.Code ?? "error"}${e.Message ? `: ${e.Message}` : ""}`,
      }));
      return { failed };
    } catch (err) {
      throw this.#fault("batch delete", `${keys[0]} and ${keys.length - 1} more`, err);
    }
  }

  async close(): Promise<void> {
    this.#client.destroy();
  }

  async presignGet(key: string, seconds: number): Promise<string> {
    try {
      return await getSignedUrl(this.#client, new GetObjectCommand(this.#target(key)), {
        expiresIn: seconds,
      });
    } catch (err) {
      throw this.#fault("presign", key, err);
    }
  }

  /** Requests sent since the store was opened, by kind, and how many were retries. */
  requestStats(): RequestStats {
    return this.#stats();
  }

  #target(key: string): { Bucket: string; Key: string } {
    return { Bucket: this.#bucket, Key: this.#prefix + validateKey(key) };
  }

  #fault(op: string, key: string, err: unknown): Error {
    const at = this.#endpoint ? ` at ${this.#endpoint}` : "";
    return s3Fault(err, `S3 ${op} of "${this.#prefix}${key}" in bucket "${this.#bucket}"${at}`);
  }
}

/**
 * Why a listing page does not move past `token` (undefined when it does): a key at or before
 * the token, keys out of order, or a truncated page with no key at all.
 */
export function stalledPage(
  keys: readonly string[],
  token: string | undefined,
  truncated: boolean,
): string | undefined {
  if (truncated && keys.length === 0) return "an empty page says more follow";
  // S3 lists in the byte order of the keys' UTF-8.
  const notAfter = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b)) <= 0;
  let previous = token;
  for (const key of keys) {
    if (previous !== undefined && notAfter(key, previous)) {
      return previous === token
        ? `the page after "${token}" starts again at "${key}"`
        : `"${key}" comes after "${previous}" in the page`;
    }
    previous = key;
  }
  return undefined;
}

function toInfo(key: string, size?: number, etag?: string, lastModified?: Date): ObjectInfo {
  return { key, size: size ?? 0, etag: etag ?? "", lastModified: lastModified ?? new Date(0) };
}

/**
 * Makes SigV4 sign `command` with `sha256` (the body's, known to the caller) as its payload
 * hash: the signer takes an x-amz-content-sha256 header that is already set as it is, instead
 * of hashing the body. S3 checks the body against it (XAmzContentSHA256Mismatch).
 */
function signWithPayloadHash(command: PutObjectCommand, sha256: string): void {
  command.middlewareStack.add(
    (next) => (args) => {
      // The HTTP request the serializer built, before the signer (finalizeRequest) sees it.
      const request = args.request as { headers?: Record<string, string> };
      if (request.headers) request.headers["x-amz-content-sha256"] = sha256;
      return next(args);
    },
    { step: "build", name: "nixshipPayloadHash" },
  );
}

function conditionParams(condition?: PutCondition): Partial<PutObjectCommandInput> {
  if (condition === undefined) return {};
  return "ifAbsent" in condition ? { IfNoneMatch: "*" } : { IfMatch: condition.ifMatch };
}

async function readExactly(body: Readable, size: number, key: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body as AsyncIterable<Buffer | string>) {
    const bytes = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    total += bytes.length;
    if (total > size) break;
    chunks.push(bytes);
  }
  if (total !== size) {
    throw new OperationError(
      "store-size-mismatch",
      `put "${key}": size ${size} was declared but the body had ${total > size ? "more" : total} bytes`,
    );
  }
  return Buffer.concat(chunks, total);
}
