// An HTTP server's open connections, bounded (the dashboard's and the served cache's): a
// connection that sends no request in time is closed, and past MAX_CONNECTIONS the idle ones (no
// request in flight) are closed, the oldest first, so that connections held open and silent
// cannot use up the process's file descriptors.
// Node's own timeouts (set by each server) close slow requests and idle keep-alives.
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Socket } from "node:net";

/** Connections open at once; past it the idle ones are closed, oldest first. */
export const MAX_CONNECTIONS = 1000;
/** Ms a connection may take to send its first request's headers (and each request's). */
export const HEADERS_TIMEOUT = 10_000;

export interface ConnectionLimits {
  readonly maxConnections?: number;
  readonly headersTimeout?: number;
}

export interface ConnectionGuard {
  /** Connections open now. */
  readonly open: () => number;
  /** Connections closed to make room or because they sent nothing in time. */
  readonly shed: () => number;
  /** Bytes of answers written to `address`'s connections that it has not read yet. */
  readonly unsent: (address: string) => number;
}

interface Tracked {
  /** Requests in flight (an event stream is one until it ends). */
  busy: number;
  /** Until its first request: when it connected (Date.now()); the sweep closes it in time. */
  silentSince: number | undefined;
}

export function guardConnections(server: Server, limits: ConnectionLimits = {}): ConnectionGuard {
  const max = limits.maxConnections ?? MAX_CONNECTIONS;
  const timeout = limits.headersTimeout ?? HEADERS_TIMEOUT;
  // Insertion order is age; a connection that served a request moves to the end.
  const sockets = new Map<Socket, Tracked>();
  let shed = 0;
  const drop = (socket: Socket) => {
    shed++;
    socket.destroy();
  };
  // One sweep, while some connection has sent no request yet, closes those silent past the
  // timeout; it stops when none is left, so it holds no process open on its own.
  const sweepEvery = Math.max(25, Math.min(1000, Math.floor(timeout / 4)));
  let sweep: NodeJS.Timeout | undefined;
  let silent = 0;
  const heard = (tracked: Tracked) => {
    tracked.silentSince = undefined;
    silent--;
    if (silent === 0 && sweep !== undefined) {
      clearInterval(sweep);
      sweep = undefined;
    }
  };
  const sweepSilent = () => {
    const now = Date.now();
    for (const [socket, t] of sockets) {
      if (t.silentSince === undefined || now - t.silentSince < timeout) continue;
      heard(t);
      if (socket.bytesRead === 0) drop(socket);
    }
  };

  server.on("connection", (socket: Socket) => {
    // Node answers half a request with 408 at its headers timeout, but never times out a
    // connection that sent nothing: that is the sweep's.
    const tracked: Tracked = { busy: 0, silentSince: Date.now() };
    sockets.set(socket, tracked);
    silent++;
    if (sweep === undefined) sweep = setInterval(sweepSilent, sweepEvery);
    socket.once("close", () => {
      if (tracked.silentSince !== undefined) heard(tracked);
      sockets.delete(socket);
    });
    if (sockets.size <= max) return;
    // Oldest idle first; the newcomer itself is idle too, and goes last.
    for (const [old, t] of sockets) {
      if (sockets.size <= max) break;
      if (t.busy === 0) {
        sockets.delete(old);
        drop(old);
      }
    }
  });

  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket;
    const tracked = sockets.get(socket);
    if (tracked === undefined) return;
    if (tracked.silentSince !== undefined) heard(tracked);
    tracked.busy++;
    sockets.delete(socket);
    sockets.set(socket, tracked);
    res.once("close", () => {
      tracked.busy--;
    });
  });

  const unsent = (address: string) => {
    let bytes = 0;
    for (const socket of sockets.keys()) {
      if (socket.remoteAddress === address) bytes += socket.writableLength;
    }
    return bytes;
  };
  return { open: () => sockets.size, shed: () => shed, unsent };
}
