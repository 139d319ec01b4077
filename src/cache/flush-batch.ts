// Group commit for a push's NARs: they are stored with deferred durability and made durable by
// a few store flushes, each for a batch of them, instead of an fsync each. A flush costs about
// the same whatever it covers (a process spawn and a syncfs), so batches are large.

/** NAR bytes stored between two flushes, unless the push ends first. */
export const FLUSH_EVERY_BYTES = 128 << 20;

interface Batch {
  bytes: number;
  readonly flushed: Promise<void>;
  readonly start: () => void;
}

export class FlushBatches {
  #open: Batch | undefined;
  #settled = 0;

  /**
   * `flush` makes durable everything stored before it was called; `total` is how many NARs
   * the push stores: when all of them have settled (stored or failed), the last batch is
   * flushed at once.
   */
  constructor(
    private readonly flush: () => Promise<void>,
    private readonly total: number,
    private readonly everyBytes = FLUSH_EVERY_BYTES,
  ) {}

  /**
   * Resolves once a flush that began after `stored` settled has ended; rejects with the
   * store's error if `stored` rejects, or with the flush's error.
   */
  durable(stored: Promise<void>, bytes: number): Promise<void> {
    const durable = stored.then(
      () => {
        const batch = this.#join(bytes);
        this.#settle();
        return batch.flushed;
      },
      (err: unknown) => {
        this.#settle();
        throw err;
      },
    );
    durable.catch(() => {});
    return durable;
  }

  #join(bytes: number): Batch {
    this.#open ??= this.#batch();
    const batch = this.#open;
    batch.bytes += bytes;
    if (batch.bytes >= this.everyBytes) this.#close();
    return batch;
  }

  #settle(): void {
    this.#settled++;
    if (this.#settled === this.total) this.#close();
  }

  #close(): void {
    const batch = this.#open;
    this.#open = undefined;
    batch?.start();
  }

  #batch(): Batch {
    let start = (): void => {};
    const flushed = new Promise<void>((resolve, reject) => {
      start = () => this.flush().then(resolve, reject);
    });
    flushed.catch(() => {});
    return { bytes: 0, flushed, start };
  }
}
