// What the release pages read beyond the poll (one release's hosts and their markers, a
// channel's whole list), read at most once per poll whatever the number of requests: a request
// in the same poll gets the same read. Only what the last snapshot lists may be asked for, so
// the reads a poll can cost are bounded by what the store holds, not by the requests.
import { InputError } from "../errors.js";
import type { PublicKey } from "../nix/keys.js";
import type { OriginCheck } from "../release/release-origin.js";
import type { ReleaseEntry } from "../release/release-store.js";
import { readRelease, readReleaseOrigin } from "../release/release-store.js";
import { loadRelease } from "../release/shard-store.js";
import { readProgress } from "../status/status-store.js";
import type { ObjectStore } from "../store/object-store.js";
import type { ReleaseTrust } from "../views/release-board.js";
import { type ReleaseListView, readReleaseList } from "../views/release-view.js";

/** Hosts a release page lists (the rest are counted). */
export const RELEASE_PAGE_HOSTS = 1000;
/** Reads kept; past it a request waits for the next poll (503) rather than read again. */
const MAX_KEPT = 256;
/** Release files' entries kept for /api/releases/CHANNEL. */
const MAX_KEPT_ENTRIES = 100_000;

/** One release as its page shows it. */
export interface ReleasePageData {
  readonly channel: string;
  readonly seq: number;
  readonly trust: ReleaseTrust;
  /** Who published it and from what (trusted only when a fleet release key signed it). */
  readonly origin: OriginCheck;
  /** Why its hosts could not be read (a malformed file, a shard missing). */
  readonly problem?: string;
  readonly created?: string;
  /** Hosts it names in all. */
  readonly hosts: number;
  /** The first RELEASE_PAGE_HOSTS of them, with their state for it (null: none yet). */
  readonly lines: readonly {
    readonly host: string;
    readonly path: string;
    readonly state: string | null;
  }[];
}

/** Too many different reads in one poll: the request should wait for the next. */
export class ReadsFull extends Error {}

/** A page's own read of the store past its deadline: the page says so (504). */
export class StoreTooSlow extends Error {}

/**
 * How long a page's own reads (beyond the poll) may take: well within the server's idle
 * timeout, so that the viewer is told, not cut off.
 */
export const PAGE_READ_MS = 20_000;

/** `work`, or StoreTooSlow once `ms` pass (the work itself goes on, and is not kept). */
export function inTime<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new StoreTooSlow(`the store did not answer within ${ms / 1000} s`)),
      ms,
    );
    timer.unref();
  });
  work.catch(() => {});
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}

/**
 * Values read at most once per poll, by key; a failed read too (its failure is what every
 * request of that poll gets): a store that fails, or a file that cannot be read, is asked again
 * at the next poll, not by every request until then.
 */
export class PerPoll<T> {
  readonly #entries = new Map<string, { readonly poll: number; readonly value: Promise<T> }>();
  readonly #readMs: number;

  /** `readMs`: how long a read may take (PAGE_READ_MS), past which it fails (StoreTooSlow). */
  constructor(readMs: number = PAGE_READ_MS) {
    this.#readMs = readMs;
  }

  get(key: string, poll: number, read: () => Promise<T>): Promise<T> {
    const kept = this.#entries.get(key);
    if (kept?.poll === poll) return kept.value;
    this.#entries.delete(key);
    if (this.#entries.size >= MAX_KEPT) {
      // Only reads of earlier polls make room: this poll's are what bounds its reads.
      const old = [...this.#entries].find(([, e]) => e.poll !== poll)?.[0];
      if (old === undefined) return Promise.reject(new ReadsFull());
      this.#entries.delete(old);
    }
    const value = inTime(read(), this.#readMs);
    // Kept, and each caller sees its failure; none is left unhandled.
    value.catch(() => {});
    this.#entries.set(key, { poll, value });
    return value;
  }
}

export class ReleaseReads {
  readonly #store: ObjectStore;
  readonly #pages: PerPoll<ReleasePageData | undefined>;
  readonly #lists: PerPoll<ReleaseListView>;
  /** Release files' entries, by key: files are never replaced, so each is read once. */
  readonly #entries = new Map<string, ReleaseEntry>();

  readonly #keys: readonly PublicKey[] | undefined;

  /**
   * `keys`: the fleet's releases.publicKeys, that a release's origin must be signed by;
   * `readMs`: how long a page's read may take.
   */
  constructor(store: ObjectStore, keys?: readonly PublicKey[], readMs: number = PAGE_READ_MS) {
    this.#store = store;
    this.#keys = keys;
    this.#pages = new PerPoll(readMs);
    this.#lists = new PerPoll(readMs);
  }

  /** Release `seq` of the channel and its hosts' states (undefined: no such file). */
  page(
    channel: string,
    seq: number,
    trust: ReleaseTrust,
    poll: number,
  ): Promise<ReleasePageData | undefined> {
    return this.#pages.get(`${channel}/${seq}`, poll, () =>
      readPage(this.#store, channel, seq, trust, this.#keys),
    );
  }

  /** `release list --json` for the channel. */
  list(channel: string, poll: number): Promise<ReleaseListView> {
    return this.#lists.get(channel, poll, async () => {
      const view = await readReleaseList(this.#store, channel, this.#entries);
      // Bounded: a store with more release files than this is read again past it.
      if (this.#entries.size > MAX_KEPT_ENTRIES) this.#entries.clear();
      return view;
    });
  }
}

async function readPage(
  store: ObjectStore,
  channel: string,
  seq: number,
  trust: ReleaseTrust,
  keys: readonly PublicKey[] | undefined,
): Promise<ReleasePageData | undefined> {
  const read = await readRelease(store, channel, seq);
  if (read.status === "absent") return undefined;
  const source = `release ${seq} of ${channel}`;
  // One GET of at most ORIGIN_LIMIT bytes, once per poll with the page.
  const origin: OriginCheck =
    keys === undefined
      ? { status: "untrusted", problem: "the fleet file lists no releases.publicKeys to check it" }
      : await readReleaseOrigin(store, { channel, seq }, read.bytes, keys);
  try {
    const [{ release }, progress] = await Promise.all([
      loadRelease(store, read.bytes, source),
      readProgress(store, channel, seq),
    ]);
    const names = Object.keys(release.hosts);
    return {
      channel,
      seq,
      trust,
      origin,
      created: release.created,
      hosts: names.length,
      lines: names.slice(0, RELEASE_PAGE_HOSTS).map((host) => ({
        host,
        path: release.hosts[host]?.path ?? "",
        state: progress.hosts.get(host)?.state ?? null,
      })),
    };
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    return { channel, seq, trust, origin, problem: err.message, hosts: 0, lines: [] };
  }
}
