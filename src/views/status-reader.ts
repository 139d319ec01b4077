// Hosts' status records, read incrementally: each poll LISTs `status/hosts/` (1,000 records a
// call, each with its etag) and GETs only the records that are new or whose etag moved since
// the last poll, while it lists the next page. A poll where nothing changed costs LIST calls
// only; a record that is gone is dropped. One reader serves one caller's polls (the CLI polls
// once, a dashboard keeps it).
import type { StatusRecord } from "../status/status.js";
import {
  type ListedRecord,
  listStatusRecordPages,
  type RecordRead,
  readStatusOf,
} from "../status/status-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { Semaphore } from "../util/pool.js";

/** Records read at once by a poll. */
export const STATUS_READS = 32;

export interface StatusReaderOptions {
  /** Only these hosts' records are read (default: every record listed). */
  readonly hosts?: Iterable<string>;
  /** GETs at once (default STATUS_READS). */
  readonly concurrency?: number;
}

export interface StatusPoll {
  /** Each host's latest record (hosts that never reported are absent). */
  readonly records: ReadonlyMap<string, StatusRecord>;
  /** Hosts whose record is malformed or too large, and why: theirs alone. */
  readonly unreadable: ReadonlyMap<string, string>;
  /** What this poll cost: LIST calls, and GETs of records. */
  readonly listCalls: number;
  readonly getCalls: number;
}

/** A record as a poll read it, with the etag of the listing it was read for. */
interface Known {
  readonly etag: string;
  readonly read: Exclude<RecordRead, { status: "absent" }>;
}

export class StatusReader {
  readonly store: ObjectStore;
  readonly #wanted: ReadonlySet<string> | undefined;
  readonly #concurrency: number;
  #known = new Map<string, Known>();
  #polling = false;

  constructor(store: ObjectStore, options: StatusReaderOptions = {}) {
    this.store = store;
    this.#wanted = options.hosts === undefined ? undefined : new Set(options.hosts);
    this.#concurrency = options.concurrency ?? STATUS_READS;
  }

  /**
   * Lists the records and reads those that changed. A fault of the store is thrown once every
   * read it started has settled, and leaves what the reader knows as it was.
   */
  async poll(): Promise<StatusPoll> {
    // What a poll knows is the last poll's: two at once would each start from a stale one.
    if (this.#polling) throw new Error("StatusReader.poll: the last poll has not finished");
    this.#polling = true;
    try {
      return await this.#poll();
    } finally {
      this.#polling = false;
    }
  }

  async #poll(): Promise<StatusPoll> {
    const permits = new Semaphore(this.#concurrency);
    let failure: { readonly error: unknown } | undefined;
    const read = async (l: ListedRecord) => {
      const release = await permits.acquire();
      try {
        if (failure !== undefined) return undefined;
        // The etag is the listing's: a record written again between the LIST and the GET is
        // read once more at the next poll, never missed.
        return { host: l.host, etag: l.etag, read: await readStatusOf(this.store, l.host) };
      } catch (error) {
        failure ??= { error };
        return undefined;
      } finally {
        release();
      }
    };
    const listed: ListedRecord[] = [];
    const reads: Promise<Awaited<ReturnType<typeof read>>>[] = [];
    let listCalls = 0;
    try {
      for await (const page of listStatusRecordPages(this.store)) {
        listCalls++;
        if (failure !== undefined) break;
        for (const l of page) {
          if (this.#wanted !== undefined && !this.#wanted.has(l.host)) continue;
          listed.push(l);
          if (this.#known.get(l.host)?.etag !== l.etag) reads.push(read(l));
        }
      }
    } catch (error) {
      failure ??= { error };
    }
    const fresh = await Promise.all(reads);
    if (failure !== undefined) throw failure.error;
    const next = new Map<string, Known>();
    for (const l of listed) {
      const known = this.#known.get(l.host);
      if (known !== undefined && known.etag === l.etag) next.set(l.host, known);
    }
    for (const f of fresh) {
      // Deleted since the listing: gone, as if it had not been listed.
      if (f !== undefined && f.read.status !== "absent")
        next.set(f.host, { etag: f.etag, read: f.read });
    }
    this.#known = next;
    const records = new Map<string, StatusRecord>();
    const unreadable = new Map<string, string>();
    for (const [host, { read }] of next) {
      if (read.status === "found") records.set(host, read.record);
      else unreadable.set(host, read.problem);
    }
    return { records, unreadable, listCalls, getCalls: reads.length };
  }
}
