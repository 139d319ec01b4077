// A TCP relay that holds every chunk it passes for a fixed time each way: a link's delay for a
// bench on a kernel without netem (bench/delta-link.ts). Order is kept (equal timers fire in
// the order set), and a side whose bytes in flight pass a bound is paused until the other
// drains, so the relay holds at most about that much per direction.

import type { AddressInfo } from "node:net";
import { connect, createServer, type Server, type Socket } from "node:net";

/** Bytes held per direction (timers pending plus the socket's buffer) before reading pauses. */
const MAX_IN_FLIGHT = 4 * 1024 * 1024;

export interface DelayRelay {
  /** host:port it listens on. */
  readonly address: string;
  close(): Promise<void>;
}

/** Listens on `host` (a free port) and relays each connection to `target`, `delayMs` each way. */
export async function startDelayRelay(
  host: string,
  target: { readonly host: string; readonly port: number },
  delayMs: number,
): Promise<DelayRelay> {
  const sockets = new Set<Socket>();
  // Half-open sockets: one side's end reaches the other only after the bytes held before it.
  const server: Server = createServer({ allowHalfOpen: true }, (client) => {
    const upstream = connect({ port: target.port, host: target.host, allowHalfOpen: true });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    hold(client, upstream, delayMs);
    hold(upstream, client, delayMs);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    address: `${host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Passes `from`'s bytes to `to`, each chunk `delayMs` later; ends `to` after the last one. */
function hold(from: Socket, to: Socket, delayMs: number): void {
  let inFlight = 0;
  const resumeIfRoom = () => {
    if (from.isPaused() && inFlight + to.writableLength <= MAX_IN_FLIGHT) from.resume();
  };
  from.on("data", (chunk: Buffer) => {
    inFlight += chunk.length;
    if (inFlight + to.writableLength > MAX_IN_FLIGHT) from.pause();
    setTimeout(() => {
      inFlight -= chunk.length;
      if (!to.destroyed) to.write(chunk);
      resumeIfRoom();
    }, delayMs);
  });
  to.on("drain", resumeIfRoom);
  // The end comes after the data before it: the same delay, set after theirs.
  from.on("end", () => setTimeout(() => to.end(), delayMs));
}
