// Waiting on a full writable: until it wants more ('drain'), failing as soon as it closes or
// fails first (its consumer gave up, its disk filled). Waiting for 'drain' alone never ends
// then, and a process with nothing else to do exits 0 with its work cut short.
import type { Writable } from "node:stream";

/**
 * Resolves when `sink` drains; rejects with the sink's own error, or with `closed()` when it
 * closes without one.
 */
export function drained(sink: Writable, closed: () => Error): Promise<void> {
  if (sink.destroyed || sink.writableFinished) return Promise.reject(closed());
  return new Promise((resolve, reject) => {
    const settle = (err?: Error): void => {
      sink.off("drain", onDrain);
      sink.off("close", onClose);
      sink.off("error", onError);
      if (err === undefined) resolve();
      else reject(err);
    };
    const onDrain = (): void => settle();
    const onClose = (): void => settle(closed());
    const onError = (err: Error): void => settle(err);
    sink.once("drain", onDrain);
    sink.once("close", onClose);
    sink.once("error", onError);
  });
}

/** Writes `chunk` into `sink`, waiting while it is full (drained). */
export async function writeDrained(
  sink: Writable,
  chunk: Buffer | string,
  closed: () => Error,
): Promise<void> {
  if (sink.destroyed) throw closed();
  if (!sink.write(chunk)) await drained(sink, closed);
}
