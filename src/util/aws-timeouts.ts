// How long an AWS SDK client (S3, SSM) waits on its connections. The SDK's defaults have no
// timer at all: a server that accepts a connection and then stops answering, or stops sending
// a body halfway, or sends its answer's headers a byte at a time, would hold a deploy, an
// agent's poll or a dashboard's reader for ever. Each attempt of a request is bounded instead,
// and the retry strategies bound the attempts.
import { NodeHttpHandler } from "@smithy/node-http-handler";
import type { HttpHandlerOptions, HttpResponse, RequestHandler } from "@smithy/types";
import { eitherSignal, startDeadline, timedOut } from "./deadline.js";

/** A request as Node's handler takes it. */
type HttpRequest = Parameters<NodeHttpHandler["handle"]>[0];

/** Connecting, a connection that sends nothing, and an answer's headers, at most this long (ms). */
export interface AwsTimeouts {
  /** Establishing the TCP (and TLS) connection. */
  readonly connectMs: number;
  /**
   * A connection with no byte moving either way: waiting for an answer's headers, or in the
   * middle of its body. Not a bound on a whole request: a large upload or download that keeps
   * moving goes on (the AWS CLI's read timeout is the same 60 s).
   */
  readonly idleMs: number;
  /**
   * From sending a request to the end of its answer's headers, past the time its body may take
   * (answerDeadlineMs). A server that trickles its headers, a byte within each idle timeout,
   * is stopped here. The answer's body is its reader's to bound (store/helpers.ts readBody, a
   * NAR's signed size), or, read whole by the SDK, aws-response-limit.ts's (this is its grace).
   */
  readonly answerMs: number;
}

export const AWS_TIMEOUTS: AwsTimeouts = { connectMs: 10_000, idleMs: 60_000, answerMs: 60_000 };

/**
 * The slowest rate a request's body may be sent at: 32 KiB (256 kbit) a second. A part of an
 * upload shares the link with the others sent at once (the store URL's upload-concurrency=).
 */
const UPLOAD_MIN_RATE = 32 * 1024;

/** The time an attempt of a request with a body of `bodyBytes` has for its answer's headers. */
export function answerDeadlineMs(timeouts: AwsTimeouts, bodyBytes: number): number {
  return timeouts.answerMs + Math.ceil(bodyBytes / UPLOAD_MIN_RATE) * 1000;
}

/** The SDK client's `requestHandler` for `timeouts`: Node's, with a deadline on each answer. */
export function awsRequestHandler(
  timeouts: AwsTimeouts = AWS_TIMEOUTS,
): RequestHandler<HttpRequest, HttpResponse, HttpHandlerOptions> {
  return new AnswerDeadline(
    new NodeHttpHandler({ connectionTimeout: timeouts.connectMs, socketTimeout: timeouts.idleMs }),
    timeouts,
  );
}

/**
 * Node's handler, each attempt of a request aborted when its answer's headers have not all come
 * within answerDeadlineMs. The SDK calls `handle` once per attempt, so a retry gets its own
 * deadline; the abort fails the attempt as a TimeoutError, which the retry strategy treats as a
 * request that got no answer.
 */
class AnswerDeadline implements RequestHandler<HttpRequest, HttpResponse, HttpHandlerOptions> {
  readonly metadata: NodeHttpHandler["metadata"];
  readonly #inner: NodeHttpHandler;
  readonly #timeouts: AwsTimeouts;

  constructor(inner: NodeHttpHandler, timeouts: AwsTimeouts) {
    this.#inner = inner;
    this.#timeouts = timeouts;
    this.metadata = inner.metadata;
  }

  async handle(
    request: HttpRequest,
    options: HttpHandlerOptions = {},
  ): Promise<{ response: HttpResponse }> {
    const ms = answerDeadlineMs(this.#timeouts, bodyBytes(request));
    const deadline = startDeadline(ms);
    try {
      return await this.#inner.handle(request, {
        ...options,
        abortSignal: eitherSignal(deadline, options.abortSignal as AbortSignal | undefined),
      });
    } catch (err) {
      if (!timedOut(deadline.signal)) throw err;
      throw Object.assign(
        new Error(
          `the server had not answered ${formatSeconds(ms)} after the request was sent (its answer's headers were not all there): stopped`,
          { cause: err },
        ),
        { name: "TimeoutError" },
      );
    } finally {
      deadline.clear();
    }
  }

  updateHttpClientConfig(...args: Parameters<NodeHttpHandler["updateHttpClientConfig"]>): void {
    this.#inner.updateHttpClientConfig(...args);
  }

  httpHandlerConfigs(): ReturnType<NodeHttpHandler["httpHandlerConfigs"]> {
    return this.#inner.httpHandlerConfigs();
  }

  destroy(): void {
    this.#inner.destroy();
  }
}

/**
 * The bytes of a request's body: its Content-Length (the SDK sets it on every body it can
 * measure), else the body's own length. A stream of unknown length (nixship sends none: an
 * upload's parts are buffers) counts as the largest single request S3 takes, 5 GiB, so its
 * deadline is still an end.
 */
function bodyBytes(request: HttpRequest): number {
  const body: unknown = request.body;
  if (body === undefined || body === null) return 0;
  for (const [name, value] of Object.entries(request.headers)) {
    if (name.toLowerCase() === "content-length" && /^\d+$/.test(value)) return Number(value);
  }
  if (typeof body === "string") return Buffer.byteLength(body);
  if (body instanceof Uint8Array) return body.byteLength;
  return LARGEST_SINGLE_REQUEST;
}

const LARGEST_SINGLE_REQUEST = 5 * 1024 ** 3;

function formatSeconds(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Math.round(ms / 100) / 10} s`;
}
