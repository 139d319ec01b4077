// Serves any ObjectStore as an HTTP binary cache a stock `nix` can substitute from: streams
// NARs (never whole in memory, at most MAX_NAR_STREAMS at once: serve-slots.ts), holds narinfos
// to NARINFO_LIMIT, answers HEAD, 404s the absent, and can require a token.

import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { type Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { InputError } from "../errors.js";
import { formatCacheInfo } from "../nix/cache-info.js";
import { readGot } from "../store/helpers.js";
import type { ObjectStore } from "../store/object-store.js";
import { carriesToken, TOKEN_CHALLENGES } from "../util/bearer-token.js";
import { listenUrl } from "../util/listen-address.js";
import { guardConnections, HEADERS_TIMEOUT, MAX_CONNECTIONS } from "../util/server-connections.js";
import { withoutControls } from "../util/text.js";
import { CACHE_INFO_KEY, isCacheKey } from "./layout.js";
import {
  boundedNarStreams,
  boundNarInfo,
  type NarBound,
  narBoundOf,
  sentAsStored,
} from "./nar-bound.js";
import { NARINFO_LIMIT } from "./read.js";
import { type Refusal, refusalText, type SlotLimits, streamSlots } from "./serve-slots.js";

/** One request answered, as `ServeOptions.onRequest` is told of it. */
export interface ServedRequest {
  readonly method: string;
  readonly key: string;
  readonly status: number;
  readonly error?: string;
}

export interface ServeOptions {
  readonly store: ObjectStore;
  /** When set, requests must carry `Authorization: Bearer <token>` (or Basic with it as password). */
  readonly token?: string;
  /** Ms without a byte either way before a connection is closed (default CACHE_IDLE_TIMEOUT_MS). */
  readonly idleTimeoutMs?: number;
  /** Connections open at once, past which the idle ones are closed (default MAX_CONNECTIONS). */
  readonly maxConnections?: number;
  /** NAR bodies streamed at once (default MAX_NAR_STREAMS); others wait their turn. */
  readonly maxNarStreams?: number;
  /** Ms a NAR request waits for its turn before a 503 (default NAR_SLOT_WAIT_MS). */
  readonly narSlotWaitMs?: number;
  /** Each request answered; `error` says why the store failed, or why a NAR was cut (never sent to the client). */
  readonly onRequest?: (entry: ServedRequest) => void;
}

/**
 * An `onRequest` that writes each failure the client was not told the cause of (the store's
 * error, a NAR cut at its signed size) as one line, with `prefix`, to the server's own log.
 */
export function logServerFailures(
  write: (line: string) => void,
  prefix = "",
): (entry: ServedRequest) => void {
  return ({ method, key, status, error }) => {
    if (error === undefined) return;
    // The error may quote what a bucket writer chose (a narinfo's URL): no terminal controls.
    write(
      `${prefix}${method} ${withoutControls(key.slice(0, 200))}: ${status}: ${withoutControls(error.slice(0, 600))}\n`,
    );
  };
}

/**
 * Sends `body` through `streams` to `res`. A client that closes its connection once it holds
 * every byte of an answer of known `length` (Nix 2.8 may, as soon as it has read that many) ends
 * the pipeline before the server's own end: that is no failure, and none is told.
 */
async function send(
  body: Readable,
  streams: readonly NodeJS.ReadWriteStream[],
  res: ServerResponse,
  length: number | undefined,
): Promise<void> {
  let sent = 0;
  const counted = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      sent += chunk.length;
      done(null, chunk);
    },
  });
  try {
    await pipeline([body, ...streams, counted, res]);
  } catch (err) {
    const closed = (err as NodeJS.ErrnoException).code === "ERR_STREAM_PREMATURE_CLOSE";
    if (closed && length !== undefined && sent >= length) return;
    throw err;
  }
}

function contentType(key: string): string {
  if (key === CACHE_INFO_KEY) return "text/x-nix-cache-info";
  if (key.endsWith(".narinfo")) return "text/x-nix-narinfo";
  return "application/x-nix-nar";
}

function authorized(req: IncomingMessage, token: string | undefined): boolean {
  return token === undefined || carriesToken(req.headers.authorization, token);
}

/** The object a request names, and its query (a NAR's bound, nar-bound.ts). */
function requestTarget(
  url: string | undefined,
): { readonly key: string; readonly search: URLSearchParams } | undefined {
  try {
    const parsed = new URL(url ?? "/", "http://x");
    return { key: decodeURIComponent(parsed.pathname.slice(1)), search: parsed.searchParams };
  } catch {
    return undefined;
  }
}

/**
 * Ms a connection may pass without a byte either way before it is closed: a client that stops
 * reading a NAR midway (its stream and file held open) or sends nothing. Nix retries a download
 * that fails, and one that moves at any pace is never idle.
 */
export const CACHE_IDLE_TIMEOUT_MS = 60_000;

/**
 * NAR bodies one server streams at once. Each from S3 holds one of the AWS SDK's sockets (50)
 * while its client reads: kept well below, narinfos and HEADs always find one free.
 */
export const MAX_NAR_STREAMS = 32;
/** Ms a NAR request past MAX_NAR_STREAMS waits for its turn before a 503. */
export const NAR_SLOT_WAIT_MS = 10_000;
/** Requests that may wait for a turn, per stream: past that, a 503 at once. */
const NAR_WAITERS_PER_STREAM = 4;

/**
 * Answers a NAR request that got no turn. Nix counts a 503 as transient and asks again after a
 * growing delay (filetransfer.cc), as it does after a 502; a client gone needs no answer.
 */
function refuseNar(res: ServerResponse, refused: Refusal, limits: SlotLimits) {
  if (refused !== "client-left") {
    res
      .writeHead(503, { "content-type": "text/plain", "retry-after": "1" })
      .end("the cache is sending as many NARs as it may at once; try again\n");
  }
  return { status: 503, error: refusalText(refused, limits) };
}

export function createCacheServer(options: ServeOptions): Server {
  const { store } = options;
  const maxNarStreams = options.maxNarStreams ?? MAX_NAR_STREAMS;
  const slotLimits: SlotLimits = {
    slots: maxNarStreams,
    waiting: maxNarStreams * NAR_WAITERS_PER_STREAM,
    waitMs: options.narSlotWaitMs ?? NAR_SLOT_WAIT_MS,
  };
  const narSlots = streamSlots(slotLimits);
  /** A request answered with a status, and (for the log) why, where it is not what was asked. */
  type Answered = number | { readonly status: number; readonly error: string };
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<Answered> => {
    const method = req.method ?? "GET";
    if (!authorized(req, options.token)) {
      res.writeHead(401, { "www-authenticate": [...TOKEN_CHALLENGES] }).end();
      return 401;
    }
    if (method !== "GET" && method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return 405;
    }
    const target = requestTarget(req.url);
    if (target === undefined || !isCacheKey(target.key)) {
      res.writeHead(404).end();
      return 404;
    }
    const { key } = target;
    const isNarInfo = key.endsWith(".narinfo");
    let bound: NarBound | undefined;
    try {
      bound = isNarInfo || key === CACHE_INFO_KEY ? undefined : narBoundOf(target.search);
    } catch (err) {
      res.writeHead(400, { "content-type": "text/plain" }).end(`${(err as Error).message}\n`);
      return 400;
    }
    const headers = { "content-type": contentType(key) };
    if (method === "HEAD") {
      const info = await store.head(key);
      if (!info && key === CACHE_INFO_KEY) {
        res.writeHead(200, { ...headers, "content-length": formatCacheInfo().length }).end();
        return 200;
      }
      if (!info) {
        res.writeHead(404).end();
        return 404;
      }
      // A narinfo is served rewritten, and a NAR sent decompressed has no length known yet.
      const asStored = !isNarInfo && (bound === undefined || sentAsStored(bound.compression));
      const length = asStored ? { "content-length": info.size } : {};
      res.writeHead(200, { ...headers, ...length, etag: info.etag }).end();
      return 200;
    }
    if (isNarInfo || key === CACHE_INFO_KEY) return await serveWhole(key, isNarInfo, res);
    // The slot is taken before the store's GET (on S3, a socket from then on) and given back
    // however the answer ends: sent, cut, its client gone, or the store failed.
    const clientLeft = new AbortController();
    res.once("close", () => clientLeft.abort());
    const slot = await narSlots.take(clientLeft.signal);
    if ("refused" in slot) return refuseNar(res, slot.refused, slotLimits);
    try {
      return await serveNar(key, bound, res);
    } finally {
      slot.release();
    }
  };
  /** A narinfo or nix-cache-info: read whole, within NARINFO_LIMIT. */
  const serveWhole = async (
    key: string,
    isNarInfo: boolean,
    res: ServerResponse,
  ): Promise<Answered> => {
    const headers = { "content-type": contentType(key) };
    const got = await store.get(key);
    if (!got) {
      if (key === CACHE_INFO_KEY) {
        res.writeHead(200, headers).end(formatCacheInfo());
        return 200;
      }
      res.writeHead(404).end();
      return 404;
    }
    // What Nix reads whole (a narinfo, nix-cache-info) is held to what such a file can be, so
    // that a planted one of gigabytes never reaches its memory: a 502, and the log says why.
    const read = await readGot(got, key, NARINFO_LIMIT);
    // Each NAR is held to the size its narinfo's signature covers (nar-bound.ts). One that
    // does not parse is no path: a 404, so that Nix asks its next substituter, or a host's
    // delta step loses that delta alone (a 5xx would have Nix retry, and fail the query).
    let bytes: Buffer;
    try {
      bytes = isNarInfo ? Buffer.from(boundNarInfo(read.toString("utf8"), key)) : read;
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      res.writeHead(404).end();
      return { status: 404, error: err.message };
    }
    res.writeHead(200, { ...headers, "content-length": bytes.length, etag: got.info.etag });
    res.end(bytes);
    return 200;
  };
  /** A NAR (a delta path's too), streamed: as stored, or held to its `bound`. */
  const serveNar = async (
    key: string,
    bound: NarBound | undefined,
    res: ServerResponse,
  ): Promise<Answered> => {
    const headers = { "content-type": contentType(key) };
    const got = await store.get(key);
    if (!got) {
      res.writeHead(404).end();
      return 404;
    }
    if (bound === undefined) {
      res.writeHead(200, { ...headers, "content-length": got.info.size, etag: got.info.etag });
      await send(got.body, [], res, got.info.size);
      return 200;
    }
    const streams = boundedNarStreams(key, bound);
    const asStored = sentAsStored(bound.compression);
    const length = asStored ? { "content-length": got.info.size } : {};
    res.writeHead(200, { ...headers, ...length, etag: got.info.etag });
    await send(got.body, streams, res, asStored ? got.info.size : undefined);
    return 200;
  };
  const server = createServer(
    { headersTimeout: HEADERS_TIMEOUT, requestTimeout: HEADERS_TIMEOUT },
    (req, res) => {
      handle(req, res).then(
        (answered) =>
          options.onRequest?.({
            method: req.method ?? "",
            key: req.url ?? "",
            ...(typeof answered === "number" ? { status: answered } : answered),
          }),
        (err: Error) => {
          // The store's own words may name its location (a directory, a bucket): they go to
          // the server's log, not to a client that may not even have a token.
          if (!res.headersSent) {
            res
              .writeHead(502, { "content-type": "text/plain" })
              .end("the cache's store could not be read; the server's log says why\n");
          } else res.destroy(err);
          options.onRequest?.({
            method: req.method ?? "",
            key: req.url ?? "",
            status: 502,
            error: err.message,
          });
        },
      );
    },
  );
  server.keepAliveTimeout = 5000;
  server.setTimeout(options.idleTimeoutMs ?? CACHE_IDLE_TIMEOUT_MS, (socket) => socket.destroy());
  guardConnections(server, { maxConnections: options.maxConnections ?? MAX_CONNECTIONS });
  return server;
}

/** Starts a cache server on host:port (port 0: any free one) and returns it with its URL. */
export async function listenCacheServer(
  options: ServeOptions,
  host: string,
  port: number,
): Promise<{ readonly server: Server; readonly url: string }> {
  const server = createCacheServer(options);
  server.listen(port, host);
  await once(server, "listening");
  const address = server.address();
  const bound = typeof address === "object" && address ? address.port : port;
  return { server, url: listenUrl(host, bound) };
}

/**
 * Serves the fleet's cache `store` to the hosts while a command runs (deploy and doctor
 * --serve-cache): its URL, and close(), which stops the server and then closes the store.
 */
export async function serveStoreWhileRunning(
  store: ObjectStore,
  host: string,
  port: number,
  onRequest?: (entry: ServedRequest) => void,
): Promise<{ readonly url: string; readonly close: () => Promise<void> }> {
  const { server, url } = await listenCacheServer(
    { store, ...(onRequest === undefined ? {} : { onRequest }) },
    host,
    port,
  );
  return {
    url,
    close: async () => {
      await closeCacheServer(server);
      await store.close();
    },
  };
}

/** Stops a server, cutting its open connections. */
export async function closeCacheServer(server: Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  await closed;
}
