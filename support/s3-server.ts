// A real S3 server for tests and benchmarks: s3rver on 127.0.0.1, a random port, a temp directory and one
// pre-created bucket, plus the conditional writes (If-None-Match / If-Match) that s3rver lacks
// (unless a test asks for plain s3rver, to stand for a server that ignores them).
import { mkdtemp, rm } from "node:fs/promises";
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const S3RVER_CREDENTIALS = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };

/** A bucket on a test S3 server, whichever server it is (s3rver here, moto in moto-server.ts). */
export interface S3Bucket {
  readonly server: "s3rver" | "moto";
  /** `http://127.0.0.1:<port>` */
  readonly endpoint: string;
  readonly bucket: string;
  /** `s3://<bucket>?region=us-east-1&endpoint=<endpoint>`, for openStore. */
  readonly url: string;
  close(): Promise<void>;
}

export interface S3Server extends S3Bucket {
  readonly server: "s3rver";
  /** Where s3rver keeps the objects, to look at them as files. */
  readonly directory: string;
}

/** The slice of s3rver's Koa context this file uses (s3rver ships no types). */
interface Ctx {
  readonly method: string;
  readonly path: string;
  readonly query: Record<string, unknown>;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  store: S3rverStore;
  get(header: string): string;
  status: number;
  type: string;
  body: unknown;
}
interface S3rverStore {
  getMetadata(bucket: string, key: string): Promise<{ etag: string }>;
  listObjects(bucket: string, options: unknown): Promise<{ isTruncated: boolean }>;
}
type Middleware = (ctx: Ctx, next: () => Promise<void>) => Promise<void>;
interface S3rverApp {
  middleware: Middleware[];
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
}
type S3rverCtor = new (options: Record<string, unknown>) => S3rverApp;

export interface S3ServerOptions {
  /**
   * Honour If-None-Match: * and If-Match on writes, as real S3 does (default true). With false,
   * plain s3rver: it ignores both and writes anyway.
   */
  readonly conditionalWrites?: boolean;
  /** The address to listen on (default 127.0.0.1; a lab's bridge address for its hosts). */
  readonly address?: string;
  /**
   * Called as each request's answer ends (sent, or the client went away), for counting without a
   * proxy in the way, as the S3 push benchmark does.
   */
  readonly onAnswered?: (answered: AnsweredRequest) => void;
}

export interface AnsweredRequest {
  readonly method: string;
  /** The path and query as sent. */
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly status: number;
  /** Body sizes as the request's and the answer's Content-Length say (0 without one). */
  readonly bytesIn: number;
  readonly bytesOut: number;
}

const require = createRequire(import.meta.url);

export async function startS3Server(
  bucket = "nixship-test",
  options: S3ServerOptions = {},
): Promise<S3Server> {
  // The SDK's default credential chain reads these; s3rver accepts only S3RVER/S3RVER.
  process.env.AWS_ACCESS_KEY_ID = S3RVER_CREDENTIALS.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = S3RVER_CREDENTIALS.secretAccessKey;
  process.env.AWS_REGION ??= "us-east-1";
  const directory = await mkdtemp(join(tmpdir(), "nixship-s3rver-"));
  const S3rver = require("s3rver") as S3rverCtor;
  const app = new S3rver({
    address: options.address ?? "127.0.0.1",
    port: 0,
    directory,
    silent: true,
    configureBuckets: [{ name: bucket, configs: [] }],
  });
  app.middleware.unshift(
    ...(options.onAnswered ? [reportAnswers(options.onAnswered)] : []),
    ...(options.conditionalWrites === false ? [] : [conditionalWrites()]),
    truncatedListsWithoutDes(),
  );
  const address = await app.run();
  const endpoint = `http://${options.address ?? "127.0.0.1"}:${address.port}`;
  return {
    server: "s3rver",
    endpoint,
    bucket,
    directory,
    url: `s3://${bucket}?region=us-east-1&endpoint=${encodeURIComponent(endpoint)}`,
    async close() {
      await app.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
}

/** Outermost, so that it sees every answer, the conditional writes' 412s included. */
function reportAnswers(onAnswered: (answered: AnsweredRequest) => void): Middleware {
  return async (ctx, next) => {
    const { req, res } = ctx;
    res.once("close", () => {
      onAnswered({
        method: req.method ?? "GET",
        url: req.url ?? "/",
        headers: req.headers,
        status: res.statusCode,
        bytesIn: Number(req.headers["content-length"] ?? 0) || 0,
        bytesOut: Number(res.getHeader("content-length") ?? 0) || 0,
      });
    });
    await next();
  };
}

/**
 * Real S3's documented conditional writes, which s3rver 3.7.1 ignores: on PutObject and
 * CompleteMultipartUpload, `If-None-Match: *` fails with 412 PreconditionFailed when the key
 * exists, and `If-Match: <etag>` fails with 412 when its ETag differs and with 404 NoSuchKey
 * when the key is absent (as S3 answers it, and moto).
 * A per-key mutex, held until the response is finished, makes check-then-write atomic.
 * (It runs ahead of s3rver's signature check, which real S3 would do first; fine for tests.)
 */
function conditionalWrites(): Middleware {
  const tails = new Map<string, Promise<void>>();
  return async (ctx, next) => {
    const ifNoneMatch = ctx.get("if-none-match");
    const ifMatch = ctx.get("if-match");
    const target = objectWriteTarget(ctx);
    if (target === undefined || (ifNoneMatch !== "*" && ifMatch === "")) return next();

    const id = `${target.bucket}/${target.key}`;
    const previous = tails.get(id) ?? Promise.resolve();
    let release = () => {};
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous.then(() => mine);
    tails.set(id, tail);
    // 'close' fires once the response is fully sent, or the client went away.
    ctx.res.once("close", () => {
      release();
      if (tails.get(id) === tail) tails.delete(id);
    });
    await previous;

    const current = await ctx.store.getMetadata(target.bucket, target.key).then(
      (meta) => meta.etag,
      () => undefined,
    );
    const unquote = (etag: string) => etag.replace(/"/g, "");
    const absent = ifMatch !== "" && current === undefined;
    const failed =
      absent ||
      (ifNoneMatch === "*" && current !== undefined) ||
      (ifMatch !== "" && current !== undefined && unquote(current) !== unquote(ifMatch));
    if (!failed) return next();
    const [status, code, message] = absent
      ? [404, "NoSuchKey", "The specified key does not exist."]
      : [
          412,
          "PreconditionFailed",
          "At least one of the pre-conditions you specified did not hold",
        ];
    ctx.status = status;
    ctx.type = "application/xml";
    ctx.body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message></Error>`;
    // The request body (the object) is not needed; drain it so the client sees the answer.
    ctx.req.resume();
  };
}

/**
 * s3rver mints ListObjectsV2 continuation tokens with DES, which OpenSSL 3 (Node >= 17) refuses,
 * so every truncated listing fails with 500 InternalError. S3Store pages with StartAfter and
 * never needs those tokens, so hide truncation from s3rver's controller (no token is minted)
 * and put `IsTruncated` back into the XML it produced. Requests that carry a
 * continuation-token are left alone (they fail, as they would without this shim).
 */
function truncatedListsWithoutDes(): Middleware {
  return async (ctx, next) => {
    if (ctx.method !== "GET" || ctx.query["list-type"] !== "2") return next();
    const store = ctx.store;
    let truncated = false;
    ctx.store = Object.create(store, {
      listObjects: {
        value: async (bucket: string, options: unknown) => {
          const result = await store.listObjects(bucket, options);
          truncated = result.isTruncated;
          return { ...result, isTruncated: false };
        },
      },
    }) as S3rverStore;
    await next();
    if (truncated && typeof ctx.body === "string") {
      ctx.body = ctx.body.replace(
        "<IsTruncated>false</IsTruncated>",
        "<IsTruncated>true</IsTruncated>",
      );
    }
  };
}

/** PUT /bucket/key (PutObject) or POST /bucket/key?uploadId= (CompleteMultipartUpload). */
function objectWriteTarget(ctx: Ctx): { bucket: string; key: string } | undefined {
  // The SDK tags every request with `?x-id=<Operation>`; any other query names a subresource.
  const subresources = Object.keys(ctx.query).filter((name) => name !== "x-id");
  const isCopy = ctx.get("x-amz-copy-source") !== "";
  const isPut = ctx.method === "PUT" && subresources.length === 0 && !isCopy;
  const isComplete = ctx.method === "POST" && "uploadId" in ctx.query;
  if (!isPut && !isComplete) return undefined;
  const match = /^\/([^/]+)\/(.+)$/.exec(ctx.path);
  if (!match?.[1] || !match[2]) return undefined;
  return { bucket: decodeURIComponent(match[1]), key: decodeURIComponent(match[2]) };
}
