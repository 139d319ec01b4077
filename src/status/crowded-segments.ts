// What a long-running reader (the dashboard, a deploy's agent watch) remembers between two
// listings of a per-host prefix (host-listing.ts): where its crowded host segments lie and how
// many keys come before each, so that the next listing cuts its page at each one and starts
// after it at once instead of reading a page of its junk every time. Bounded: a few segments
// of a few prefixes.

/** A segment a listing passed over most of, and how many keys the listing took to reach it. */
export interface CrowdedSegment {
  /** The host segment (`<prefix><segment>/…`). */
  readonly segment: string;
  /**
   * Keys listed between the end of the segment remembered before this one (or the start of
   * the prefix) and this segment's first key.
   */
  readonly before: number;
}

/** Segments remembered of one prefix: the first ones in byte order, past which pages are full. */
export const REMEMBERED_SEGMENTS = 100;
/** Prefixes remembered: the least recently listed one is forgotten first. */
export const REMEMBERED_PREFIXES = 32;

export class CrowdedSegments {
  /** By prefix, least recently listed first. */
  readonly #byPrefix = new Map<string, readonly CrowdedSegment[]>();

  /** The segments the last listing of `prefix` found crowded, in byte order. */
  recall(prefix: string): readonly CrowdedSegment[] {
    return this.#byPrefix.get(prefix) ?? [];
  }

  /** What the listing of `prefix` that just ended found (replacing what was remembered). */
  remember(prefix: string, segments: readonly CrowdedSegment[]): void {
    this.#byPrefix.delete(prefix);
    if (segments.length === 0) return;
    this.#byPrefix.set(prefix, segments.slice(0, REMEMBERED_SEGMENTS));
    for (const oldest of this.#byPrefix.keys()) {
      if (this.#byPrefix.size <= REMEMBERED_PREFIXES) break;
      this.#byPrefix.delete(oldest);
    }
  }
}
