// A promise that gives up waiting when a signal aborts: for work that cannot itself be stopped
// (a worker thread's job), so that its caller keeps its deadline; the work's own outcome, when
// it comes later, is dropped.

/** Resolves once `signal` is aborted (a service's wait for its stop). */
export function whenAborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener("abort", () => resolve(), { once: true });
  });
}

/** `work`'s outcome, or `signal`'s reason as soon as it aborts, whichever comes first. */
export function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    work.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      work.catch(() => {});
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(err);
      },
    );
  });
}

/**
 * `source`'s items until `signal` aborts: then the wait for the next item ends at once with the
 * signal's reason (a stalled stdin or network stream included), and the source is let go.
 */
export async function* untilAbortedEach<T>(
  source: AsyncIterable<T> | Iterable<T>,
  signal: AbortSignal,
): AsyncGenerator<T> {
  const items: AsyncIterator<T> | Iterator<T> =
    Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : source[Symbol.iterator]();
  try {
    for (;;) {
      const next = await untilAborted(Promise.resolve(items.next()), signal);
      if (next.done === true) return;
      yield next.value;
    }
  } finally {
    // Let go without waiting: a stalled source may never answer.
    void Promise.resolve(items.return?.()).catch(() => {});
  }
}
