// What bounds the dashboard's work for its clients: how many event streams may be open, and how
// many requests one client may send (a token bucket per remote address, the buckets themselves
// bounded in number).

/** Event streams open at once; one more is refused with 503. */
export const MAX_EVENT_STREAMS = 64;
/**
 * Requests a client (a remote address) may send per second, on average: a browser behind one
 * address may hold many pages, each fetching itself again when the snapshot changes.
 */
export const REQUESTS_PER_SECOND = 50;
/** Requests a client may send at once. */
export const REQUEST_BURST = 300;
/** Clients whose buckets are kept; the least recently seen is forgotten first. */
const MAX_CLIENTS = 10_000;

export class RequestBuckets {
  readonly #rate: number;
  readonly #burst: number;
  readonly #now: () => number;
  /** Insertion order is recency: a client seen again is moved to the end. */
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    rate = REQUESTS_PER_SECOND,
    burst = REQUEST_BURST,
    now: () => number = () => performance.now(),
  ) {
    this.#rate = rate;
    this.#burst = burst;
    this.#now = now;
  }

  /** Takes one request from the client's bucket; false when it is empty (answer 429). */
  take(client: string): boolean {
    const now = this.#now();
    const known = this.#buckets.get(client);
    const tokens =
      known === undefined
        ? this.#burst
        : Math.min(this.#burst, known.tokens + ((now - known.at) / 1000) * this.#rate);
    this.#buckets.delete(client);
    if (this.#buckets.size >= MAX_CLIENTS) {
      const oldest = this.#buckets.keys().next().value;
      if (oldest !== undefined) this.#buckets.delete(oldest);
    }
    const allowed = tokens >= 1;
    this.#buckets.set(client, { tokens: allowed ? tokens - 1 : tokens, at: now });
    return allowed;
  }

  /** Whole seconds until the client may send again (0: it may now). */
  retryAfter(client: string): number {
    const known = this.#buckets.get(client);
    if (known === undefined) return 0;
    const elapsed = (this.#now() - known.at) / 1000;
    const tokens = Math.min(this.#burst, known.tokens + elapsed * this.#rate);
    return tokens >= 1 ? 0 : Math.ceil((1 - tokens) / this.#rate);
  }
}
