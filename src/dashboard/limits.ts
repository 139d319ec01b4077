// What bounds the dashboard's work for its clients: how many event streams may be open (in all
// and per client), how many requests one client may send (a token bucket per remote address,
// the buckets themselves bounded in number), and how the server's own budget is shared out
// fairly when many addresses send at once.

/** Event streams open at once; one more is refused with 503. */
export const MAX_EVENT_STREAMS = 64;
/** Event streams one client (a remote address) may hold: well below the total. */
export const MAX_STREAMS_PER_CLIENT = 8;
/**
 * Requests a client (a remote address) may send per second, on average: a browser behind one
 * address may hold many pages, each fetching itself again when the snapshot changes.
 */
export const REQUESTS_PER_SECOND = 50;
/** Requests a client may send at once. */
export const REQUEST_BURST = 300;
/**
 * Requests a second the server serves from all clients together before it shares them out:
 * past it, a client is served only while it has sent less than its fair share of the last
 * second (this rate over the clients seen), so a flood from many addresses cannot crowd out a
 * viewer who sends a few requests.
 */
export const SERVER_REQUESTS_PER_SECOND = 200;
/**
 * The least fair share, a second: a page load (the page, its stylesheet, its script, its
 * events) and a couple of clicks more.
 */
export const MIN_SHARE = 10;
/** For requests without the dashboard's token: their own, smaller buckets. */
export const ANONYMOUS_LIMITS = { rate: 5, burst: 20, serverRate: 50 } as const;
/** Clients whose buckets are kept; the least recently seen is forgotten first. */
const MAX_CLIENTS = 10_000;
/** The window fair shares are counted over, in ms. */
const WINDOW = 1000;

export interface BucketOptions {
  /** Requests a second per client (default REQUESTS_PER_SECOND). */
  readonly rate?: number;
  /** Requests a client may send at once (default REQUEST_BURST). */
  readonly burst?: number;
  /** Requests a second from all clients before fair shares apply (SERVER_REQUESTS_PER_SECOND). */
  readonly serverRate?: number;
  /** A clock in ms (tests move it). */
  readonly now?: () => number;
}

/** Requests counted in fixed windows; `recent` slides over the last one. */
class WindowCount {
  #index = -1;
  #count = 0;
  #previous = 0;

  /** Counts one; true when it was the first of its window. */
  add(now: number): boolean {
    const first = this.#roll(now);
    this.#count++;
    return first;
  }

  /** Requests in the last WINDOW ms, the older window weighed by how much of it is still in. */
  recent(now: number): number {
    this.#roll(now);
    return this.#previous * (1 - (now % WINDOW) / WINDOW) + this.#count;
  }

  #roll(now: number): boolean {
    const index = Math.floor(now / WINDOW);
    if (index === this.#index) return this.#count === 0;
    this.#previous = index === this.#index + 1 ? this.#count : 0;
    this.#count = 0;
    this.#index = index;
    return true;
  }
}

interface Bucket {
  tokens: number;
  at: number;
  readonly served: WindowCount;
}

export class RequestBuckets {
  readonly #rate: number;
  readonly #burst: number;
  readonly #serverRate: number;
  readonly #now: () => number;
  /** Insertion order is recency: a client seen again is moved to the end. */
  readonly #buckets = new Map<string, Bucket>();
  readonly #served = new WindowCount();
  /** Clients served in the current and the previous window. */
  #active = { index: -1, now: 0, before: 0 };

  constructor(options: BucketOptions = {}) {
    this.#rate = options.rate ?? REQUESTS_PER_SECOND;
    this.#burst = options.burst ?? REQUEST_BURST;
    this.#serverRate = options.serverRate ?? SERVER_REQUESTS_PER_SECOND;
    this.#now = options.now ?? (() => performance.now());
  }

  /** Takes one request from the client's bucket; false when it may not send now (answer 429). */
  take(client: string): boolean {
    const now = this.#now();
    const known = this.#buckets.get(client);
    const bucket: Bucket = known ?? { tokens: this.#burst, at: now, served: new WindowCount() };
    bucket.tokens = Math.min(this.#burst, bucket.tokens + ((now - bucket.at) / 1000) * this.#rate);
    bucket.at = now;
    this.#buckets.delete(client);
    if (this.#buckets.size >= MAX_CLIENTS) {
      const oldest = this.#buckets.keys().next().value;
      if (oldest !== undefined) this.#buckets.delete(oldest);
    }
    this.#buckets.set(client, bucket);
    if (bucket.tokens < 1 || !this.#withinShare(bucket, now)) return false;
    bucket.tokens -= 1;
    this.#served.add(now);
    if (bucket.served.add(now)) this.#countActive(now);
    return true;
  }

  /** Whole seconds until the client may send again (0: it may now; 1: the server is busy). */
  retryAfter(client: string): number {
    const known = this.#buckets.get(client);
    if (known === undefined) return 0;
    const elapsed = (this.#now() - known.at) / 1000;
    const tokens = Math.min(this.#burst, known.tokens + elapsed * this.#rate);
    return tokens >= 1 ? 1 : Math.ceil((1 - tokens) / this.#rate);
  }

  /** Whether the server has room, or else the client has sent less than its fair share. */
  #withinShare(bucket: Bucket, now: number): boolean {
    if (this.#served.recent(now) < this.#serverRate) return true;
    this.#rollActive(now);
    const clients = Math.max(1, this.#active.now, this.#active.before);
    return bucket.served.recent(now) < Math.max(MIN_SHARE, this.#serverRate / clients);
  }

  #countActive(now: number): void {
    this.#rollActive(now);
    this.#active.now++;
  }

  #rollActive(now: number): void {
    const index = Math.floor(now / WINDOW);
    if (index === this.#active.index) return;
    const before = index === this.#active.index + 1 ? this.#active.now : 0;
    this.#active = { index, now: 0, before };
  }
}
