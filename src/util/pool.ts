// Bounded concurrency: run `fn` over items with at most `limit` calls in flight.

/**
 * After a failure no new call starts; the calls already running are awaited, then the first
 * error is thrown. So when mapLimit settles, nothing it started is still running.
 */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (!failure && next < items.length) {
      const index = next++;
      try {
        results[index] = await fn(items[index] as T, index);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failure) throw failure.error;
  return results;
}

/** Counts permits: `acquire` waits until one is free and resolves to its release function. */
export class Semaphore {
  private free: number;
  private readonly waiting: (() => void)[] = [];

  constructor(permits: number) {
    this.free = Math.max(1, permits);
  }

  /** A permit, once one is free; a `signal` that aborts while it waits rejects with its reason. */
  async acquire(signal?: AbortSignal): Promise<() => void> {
    if (this.free > 0) this.free--;
    else {
      signal?.throwIfAborted();
      await new Promise<void>((resolve, reject) => {
        const wake = () => {
          signal?.removeEventListener("abort", give);
          resolve();
        };
        const give = () => {
          const at = this.waiting.indexOf(wake);
          if (at >= 0) this.waiting.splice(at, 1);
          reject(signal?.reason);
        };
        this.waiting.push(wake);
        signal?.addEventListener("abort", give, { once: true });
      });
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    };
  }
}

/**
 * A budget of bytes (of memory, of disk) that work running at once shares: `take(n)` waits until
 * n bytes are free and resolves to its release function. A request larger than the whole budget
 * waits until nothing holds any, then runs alone. Requests are served in the order they came: a
 * large one waiting is not passed by smaller ones, which would starve it. A request whose
 * `signal` aborts while it waits is dropped and rejects with the signal's reason.
 */
export class ByteBudget {
  private used = 0;
  private readonly waiting: { readonly bytes: number; readonly grant: () => void }[] = [];

  constructor(private readonly capacity: number) {}

  async take(bytes: number, signal?: AbortSignal): Promise<() => void> {
    signal?.throwIfAborted();
    const want = Math.min(Math.max(0, bytes), this.capacity);
    if (this.waiting.length === 0 && this.fits(want)) this.used += want;
    else {
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => {
          const at = this.waiting.indexOf(entry);
          if (at >= 0) this.waiting.splice(at, 1);
          reject(signal?.reason);
          this.grantWaiting();
        };
        const entry = {
          bytes: want,
          grant: () => {
            signal?.removeEventListener("abort", onAbort);
            resolve();
          },
        };
        this.waiting.push(entry);
        signal?.addEventListener("abort", onAbort, { once: true });
      });
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.used -= want;
      this.grantWaiting();
    };
  }

  private fits(bytes: number): boolean {
    return this.used === 0 || this.used + bytes <= this.capacity;
  }

  private grantWaiting(): void {
    for (let next = this.waiting[0]; next !== undefined && this.fits(next.bytes); ) {
      this.waiting.shift();
      this.used += next.bytes;
      next.grant();
      next = this.waiting[0];
    }
  }
}
