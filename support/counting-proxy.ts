// A counting HTTP proxy on 127.0.0.1 in front of an S3 server (s3rver), for tests and the S3 push
// benchmark: it counts every request by kind (the kinds S3Store's requestStats uses), the body
// bytes each way, and the most of each kind in flight at once; a test can answer a request itself
// (503 SlowDown) or hold it before it goes on. Whatever the client, it is counted the same way.
import {
  Agent,
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import type { RequestKind } from "../src/store/object-store.js";
import { noRequests } from "../src/store/s3-requests.js";

export interface ProxiedRequest {
  readonly kind: RequestKind;
  readonly method: string;
  /** The path and query as sent: path-style, "/bucket/key?partNumber=1&uploadId=…". */
  readonly url: string;
  /** 1 for the first request the proxy got (since the last reset), and so on. */
  readonly seq: number;
  readonly headers: IncomingHttpHeaders;
}

/** An S3 error the proxy sends instead of forwarding the request. */
export interface Answer {
  readonly status: number;
  readonly code: string;
  readonly message: string;
}

export const SLOW_DOWN: Answer = {
  status: 503,
  code: "SlowDown",
  message: "Please reduce your request rate.",
};

export interface CountingProxyOptions {
  /**
   * Called for each request before it is forwarded: an Answer is sent instead of forwarding;
   * while the promise is pending the request waits (the hook bounds how long).
   */
  readonly intercept?: (
    request: ProxiedRequest,
  ) => Answer | undefined | Promise<Answer | undefined>;
}

export interface ProxyCounts {
  readonly requests: Readonly<Record<RequestKind, number>>;
  /** Request body bytes, client to server. */
  readonly bytesIn: number;
  /** Response body bytes, server to client. */
  readonly bytesOut: number;
  readonly maxInFlight: Readonly<Record<RequestKind, number>>;
  /** Answers with a status of 500 or more, forwarded or sent by the intercept. */
  readonly serverErrors: number;
}

export interface CountingProxy {
  /** `http://127.0.0.1:<port>` */
  readonly endpoint: string;
  counts(): ProxyCounts;
  inFlight(kind: RequestKind): number;
  /** Starts counting from zero (requests in flight stay counted as in flight). */
  reset(): void;
  close(): Promise<void>;
}

/** Upstream answers slower than this fail the request with 504 (every wait is bounded). */
const UPSTREAM_TIMEOUT_MS = 120_000;

export async function startCountingProxy(
  upstream: string,
  options: CountingProxyOptions = {},
): Promise<CountingProxy> {
  const target = new URL(upstream);
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  let counts = fresh();
  const inFlight = noRequests();

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const method = req.method ?? "GET";
    const url = req.url ?? "/";
    const kind = classify(method, url, req.headers);
    const mine = counts;
    mine.requests[kind]++;
    inFlight[kind]++;
    mine.maxInFlight[kind] = Math.max(mine.maxInFlight[kind], inFlight[kind]);
    res.once("close", () => {
      inFlight[kind]--;
    });
    req.on("data", (chunk: Buffer) => {
      mine.bytesIn += chunk.length;
    });
    req.pause();
    const answer = await options.intercept?.({
      kind,
      method,
      url,
      seq: ++mine.seq,
      headers: req.headers,
    });
    if (answer !== undefined) {
      req.resume();
      const body =
        method === "HEAD"
          ? ""
          : `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${answer.code}</Code><Message>${answer.message}</Message></Error>`;
      if (answer.status >= 500) mine.serverErrors++;
      mine.bytesOut += Buffer.byteLength(body);
      res.writeHead(answer.status, {
        "content-type": "application/xml",
        "content-length": Buffer.byteLength(body),
      });
      res.end(body);
      return;
    }
    // "expect" is not signed; the proxy already answered 100-continue to the client itself.
    const { expect: _expect, ...headers } = req.headers;
    const forward = httpRequest(
      { host: target.hostname, port: target.port, method, path: url, headers, agent },
      (answerIn) => {
        const status = answerIn.statusCode ?? 502;
        if (status >= 500) mine.serverErrors++;
        res.writeHead(status, answerIn.headers);
        answerIn.on("data", (chunk: Buffer) => {
          mine.bytesOut += chunk.length;
        });
        answerIn.pipe(res);
      },
    );
    forward.setTimeout(UPSTREAM_TIMEOUT_MS, () => {
      forward.destroy(new Error(`no answer from ${upstream} within ${UPSTREAM_TIMEOUT_MS} ms`));
    });
    forward.on("error", () => {
      if (!res.headersSent) {
        mine.serverErrors++;
        res.writeHead(504);
      }
      res.end();
    });
    req.pipe(forward);
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    counts: () => ({
      requests: { ...counts.requests },
      bytesIn: counts.bytesIn,
      bytesOut: counts.bytesOut,
      maxInFlight: { ...counts.maxInFlight },
      serverErrors: counts.serverErrors,
    }),
    inFlight: (kind) => inFlight[kind],
    reset: () => {
      counts = fresh();
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
        agent.destroy();
      }),
  };
}

function fresh() {
  return {
    requests: noRequests(),
    maxInFlight: noRequests(),
    bytesIn: 0,
    bytesOut: 0,
    serverErrors: 0,
    seq: 0,
  };
}

/** Bucket-level GETs that are not listings of objects. */
const BUCKET_SUBRESOURCES = ["uploads", "location", "versioning", "acl", "policy", "versions"];

/** What a path-style S3 request does, from its method, path, query and copy-source header. */
export function classify(method: string, url: string, headers: IncomingHttpHeaders): RequestKind {
  const { pathname, searchParams: q } = new URL(url, "http://proxy");
  const hasKey = /^\/[^/]+\/./.test(pathname);
  const copy = headers["x-amz-copy-source"] !== undefined;
  switch (method) {
    case "HEAD":
      return hasKey ? "head" : "other";
    case "GET":
      if (hasKey) return "get";
      return BUCKET_SUBRESOURCES.some((name) => q.has(name)) ? "other" : "list";
    case "PUT":
      if (!hasKey || copy) return "other";
      return q.has("partNumber") && q.has("uploadId") ? "multipart-part" : "put";
    case "POST":
      if (hasKey && q.has("uploads")) return "multipart-create";
      return hasKey && q.has("uploadId") ? "multipart-complete" : "other";
    case "DELETE":
      if (hasKey && q.has("uploadId")) return "multipart-abort";
      return hasKey ? "delete" : "other";
    default:
      return "other";
  }
}
