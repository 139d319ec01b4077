// Group commit for a push into a store that defers its writes (a directory): NARs and narinfos
// are put with deferred durability and published by a few flushes instead of an fsync each. A
// flush costs about the same whatever it covers (one syncfs), so batches are large; flushing
// along the way spreads the disk's work over the push and bounds what an interrupted push
// leaves unpublished. The last flush waits for the disk to write what the last batch stored,
// so batches shrink towards the end of the push: half of what is left, down to a floor.

/** NAR bytes stored between two flushes, unless the push is nearly done. */
export const FLUSH_EVERY_BYTES = 128 << 20;
/** The smallest batch near the end. */
export const FLUSH_AT_LEAST_BYTES = 8 << 20;

export class FlushBatches {
  #unflushed = 0;
  #left: number;
  readonly #flushes: Promise<void>[] = [];

  /**
   * `flush` publishes, durably, everything put before it was called; `totalBytes` is the NAR
   * bytes the push stores.
   */
  constructor(
    private readonly flush: () => Promise<void>,
    totalBytes: number,
    private readonly everyBytes = FLUSH_EVERY_BYTES,
    private readonly atLeastBytes = FLUSH_AT_LEAST_BYTES,
  ) {
    this.#left = totalBytes;
  }

  /** Counts a stored NAR of `bytes`, and starts a flush once a batch's worth is stored. */
  stored(bytes: number): void {
    this.#unflushed += bytes;
    this.#left -= bytes;
    const batch = Math.min(this.everyBytes, Math.max(this.atLeastBytes, this.#left / 2));
    if (this.#unflushed < batch || this.#left <= 0) return;
    this.#unflushed = 0;
    const flush = this.flush();
    flush.catch(() => {}); // reported by finish()
    this.#flushes.push(flush);
  }

  /** Flushes what is left once the earlier flushes are done; fails with the first failure. */
  async finish(): Promise<void> {
    const earlier = await Promise.allSettled(this.#flushes);
    const last = await Promise.allSettled([this.flush()]);
    const failure = [...earlier, ...last].find((r) => r.status === "rejected");
    if (failure) throw failure.reason;
  }
}
