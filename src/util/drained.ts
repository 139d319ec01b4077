// Waiting on a writable: until it wants more ('drain') or has taken everything ('finish'),
// failing as soon as it closes or fails first (its consumer gave up, its disk filled).
// Waiting for the event alone never ends then, and a process with nothing else to do exits 0
// with its work cut short.
import type { Writable } from "node:stream";

/**
 * Resolves when `sink` drains; rejects with the sink's own error, or with `closed()` when it
 * closes without one.
 */
export function drained(sink: Writable, closed: () => Error): Promise<void> {
  if (sink.destroyed || sink.writableFinished) return Promise.reject(closed());
  return until(sink, "drain", closed);
}

/**
 * Resolves when `sink`, ended, has taken everything ('finish': a sink that commits, commits
 * then); rejects with its error, or with `closed()` when it closes first. Stricter than
 * `stream.finished`, which takes a sink closed after its end with nothing buffered as finished,
 * though its 'finish' never came.
 */
export function finishedWriting(sink: Writable, closed: () => Error): Promise<void> {
  if (sink.writableFinished) return Promise.resolve();
  if (sink.destroyed) return Promise.reject(closed());
  return until(sink, "finish", closed);
}

function until(sink: Writable, event: "drain" | "finish", closed: () => Error): Promise<void> {
  return new Promise((resolve, reject) => {
    const settle = (err?: Error): void => {
      sink.off(event, onEvent);
      sink.off("close", onClose);
      sink.off("error", onError);
      if (err === undefined) resolve();
      else reject(err);
    };
    const onEvent = (): void => settle();
    const onClose = (): void => settle(closed());
    const onError = (err: Error): void => settle(err);
    sink.once(event, onEvent);
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
