// The newest rollout record (status/rollout.ts), kept up to date poll by poll: one LIST of one
// key finds it, and it is read only when its key or etag moved. Also the recent rollouts a host
// took part in (a host page's history), read on demand and kept while their etags hold.
import { InputError } from "../errors.js";
import type { PublicKey } from "../nix/keys.js";
import type { Ask } from "../status/fleet-asks.js";
import type { PauseAnswer } from "../status/pause-answer.js";
import { readAnswer } from "../status/pause-answer-store.js";
import {
  answerUntaken,
  type RolloutHost,
  type RolloutPause,
  type RolloutRecord,
  rolloutAbandoned,
  rolloutQuiet,
} from "../status/rollout.js";
import {
  ASK_ROLLOUTS,
  type AsksRead,
  type DisbelievedRollout,
  listNewestRollouts,
  readAsksBack,
  readWeighedRollout,
} from "../status/rollout-store.js";
import type { ObjectInfo, ObjectStore } from "../store/object-store.js";
import { mapLimit } from "../util/pool.js";

/** Rollouts a host page looks back over. */
export const HISTORY_ROLLOUTS = ASK_ROLLOUTS;
const READS = 4;

export type RolloutRead =
  | { readonly status: "none" }
  | { readonly status: "found"; readonly key: string; readonly record: RolloutRecord }
  | {
      readonly status: "unreadable";
      readonly key: string;
      readonly problem: string;
      /** Read, but not to be believed (the watch's keys did not sign it): it asks nothing. */
      readonly disbelieved?: DisbelievedRollout;
    };

/** One rollout a host took part in: its wave and its outcome there. */
export interface HostRollout {
  readonly id: string;
  readonly mode: RolloutRecord["mode"];
  readonly action: RolloutRecord["action"];
  readonly startedAt: string;
  readonly updatedAt: string;
  /** Its wave; null: the rollout named it but left it alone (up to date, unreachable, refused). */
  readonly wave: number | null;
  /** A rollback's: the rollout it undid. */
  readonly undoes?: string;
  readonly entry: RolloutHost;
}

/** A rollout that waits at a pause for an operator's answer (`nixship rollout resume|abort`). */
export interface PausedRollout {
  readonly id: string;
  readonly mode: RolloutRecord["mode"];
  readonly by?: string;
  readonly startedAt: string;
  readonly pause: RolloutPause;
  /** An answer written to the pause that its deploy has not taken yet (withAnswers). */
  readonly answer?: PauseAnswer;
}

/**
 * `paused` with the answers written to their pauses: one its deploy has not taken for
 * ANSWER_TAKEN_WITHIN_MS is gone (rolloutGone), and waits for nothing; one not yet taken says
 * it was answered. One read a paused rollout.
 */
export async function withAnswers(
  store: ObjectStore,
  paused: readonly PausedRollout[],
  now: Date = new Date(),
): Promise<PausedRollout[]> {
  const read = await Promise.all(
    paused.map(async (p) => {
      const answer = await readAnswer(store, p.id, p.pause.afterWave).catch(() => undefined);
      if (answer === undefined) return p;
      return answerUntaken(p.pause, answer, now) === undefined ? { ...p, answer } : undefined;
    }),
  );
  return read.flatMap((p) => (p === undefined ? [] : [p]));
}

/**
 * The pause `record` waits at, when it is paused and its deployer is not gone at `now`
 * (rolloutAbandoned: nothing waits for an answer then).
 */
export function pausedRollout(record: RolloutRecord, now: Date): PausedRollout | undefined {
  if (rolloutAbandoned(record, now)) return undefined;
  const pause = record.state === "paused" ? record.pauses?.at(-1) : undefined;
  if (pause === undefined || pause.answer !== undefined) return undefined;
  const { id, mode, by, startedAt } = record;
  return { id, mode, ...(by === undefined ? {} : { by }), startedAt, pause };
}

interface Known {
  readonly etag: string;
  readonly read: RolloutRead;
}

export class RolloutWatch {
  readonly #store: ObjectStore;
  #latest: { readonly key: string; readonly known: Known } | undefined;
  /** The records the last hostHistory read, and those the last asks read. */
  #history = new Map<string, Known>();
  #looked = new Map<string, Known>();
  /** The last asks made, and of what: the same map while nothing changed (rows are kept by it). */
  #asked:
    | {
        readonly of: string;
        readonly asks: Map<string, Ask>;
        readonly undone: AsksRead["undone"];
      }
    | undefined;

  readonly #keys: readonly PublicKey[];

  /**
   * `keys`: the fleet's cache.publicKeys. A record none of them signed (or one copied to another
   * key) is not believed: it is no rollout of the watch's, and asks nothing.
   */
  constructor(store: ObjectStore, keys: readonly PublicKey[]) {
    this.#store = store;
    this.#keys = keys;
  }

  /** The newest rollout. */
  async poll(): Promise<RolloutRead> {
    const [newest] = await listNewestRollouts(this.#store, 1);
    if (newest === undefined) {
      this.#latest = undefined;
      return { status: "none" };
    }
    const kept = this.#latest;
    if (kept !== undefined && kept.key === newest.key && kept.known.etag === newest.etag) {
      return kept.known.read;
    }
    const read = await this.#read(newest.key);
    this.#latest = { key: newest.key, known: { etag: newest.etag, read } };
    return read;
  }

  /** The recent rollouts that name `host`, newest first. */
  async hostHistory(host: string): Promise<HostRollout[]> {
    return (await this.#recentRecords()).flatMap(({ record }): HostRollout[] => {
      const { id, mode, action, startedAt, updatedAt } = record;
      const undoes = record.undoes === undefined ? {} : { undoes: record.undoes };
      for (const wave of record.waves) {
        const entry = wave.hosts.find((h) => h.host === host);
        if (entry !== undefined) {
          return [{ id, mode, action, startedAt, updatedAt, wave: wave.index, entry, ...undoes }];
        }
      }
      const left = record.skipped?.find((h) => h.host === host);
      return left === undefined
        ? []
        : [{ id, mode, action, startedAt, updatedAt, wave: null, entry: left, ...undoes }];
    });
  }

  /**
   * The rollouts paused now among those the last `asks` or `hostHistory` read (newest first):
   * no request of its own.
   */
  pausedNow(now: Date = new Date()): PausedRollout[] {
    const read = [...new Map([...this.#history, ...this.#looked])].sort(([a], [b]) =>
      a < b ? -1 : a > b ? 1 : 0,
    );
    return read.flatMap(([, known]) => {
      const paused =
        known.read.status === "found" ? pausedRollout(known.read.record, now) : undefined;
      return paused === undefined ? [] : [paused];
    });
  }

  /**
   * What the fleet last asked of each of `hosts` (readAsksBack: the recent rollouts, and older
   * ones while a host is open; `since`: when each host's own record began). The same map while
   * the records read and the hosts are the same (rows are kept by it).
   */
  async asks(
    hosts: Iterable<string>,
    since: ReadonlyMap<string, string> = new Map(),
  ): Promise<Omit<AsksRead, "records">> {
    const names = [...hosts];
    const next = new Map<string, Known>();
    // (A record left running is judged abandoned once enough time passes: its etag stays.)
    const now = new Date();
    const read = await readAsksBack(
      {
        list: (count) => listNewestRollouts(this.#store, count),
        read: async (info) => {
          const known = await this.#known(info);
          next.set(info.key, known);
          const { read } = known;
          if (read.status === "found") return { key: read.key, record: read.record };
          if (read.status === "unreadable" && read.disbelieved !== undefined) {
            return { key: read.key, disbelieved: read.disbelieved };
          }
          return undefined;
        },
      },
      names,
      since,
      now,
    );
    this.#looked = next;
    // A record judged as it ended (quiet for three heartbeats, or its deployer gone) changes
    // the asks as the clock passes, its etag the same.
    const ended = read.records.flatMap(({ key, record }) => {
      const quiet = rolloutQuiet(record, now);
      const gone = rolloutAbandoned(record, now);
      return quiet || gone ? [`${key}${quiet ? " quiet" : ""}${gone ? " gone" : ""}`] : [];
    });
    // (In key order: the reads end in any order.)
    const of = `${[...next]
      .map(([key, k]) => `${key} ${k.etag}`)
      .sort()
      .join("\n")}\n\n${names.join("\n")}\n\n${ended.join("\n")}`;
    if (this.#asked?.of !== of) this.#asked = { of, asks: read.asks, undone: read.undone };
    return {
      asks: this.#asked.asks,
      unjudged: read.unjudged,
      undone: this.#asked.undone,
      disbelieved: read.disbelieved,
      lookedBack: read.lookedBack,
    };
  }

  /** The recent rollout records that could be read, newest first, each read once a change. */
  async #recentRecords(): Promise<{ key: string; record: RolloutRecord }[]> {
    const listed = await listNewestRollouts(this.#store, HISTORY_ROLLOUTS);
    const next = new Map<string, Known>();
    const reads = await mapLimit(listed, READS, async (info) => {
      const known = await this.#known(info);
      next.set(info.key, known);
      return known.read;
    });
    this.#history = next;
    return reads.flatMap((read) =>
      read.status === "found" ? [{ key: read.key, record: read.record }] : [],
    );
  }

  /** What is known of a listed record: kept while its etag holds, else read. */
  async #known(info: ObjectInfo): Promise<Known> {
    const kept = this.#looked.get(info.key) ?? this.#history.get(info.key);
    return kept !== undefined && kept.etag === info.etag
      ? kept
      : { etag: info.etag, read: await this.#read(info.key) };
  }

  async #read(key: string): Promise<RolloutRead> {
    try {
      const weighed = await readWeighedRollout(this.#store, key, this.#keys);
      if (weighed === undefined) return { status: "none" };
      if (weighed.trusted) return { status: "found", key, record: weighed.record };
      const disbelieved = { key, id: weighed.record.id, why: weighed.why };
      return {
        status: "unreadable",
        key,
        problem: `rollout ${disbelieved.id}'s record is not to be believed: ${disbelieved.why}; anyone who can write the store could have put it there`,
        disbelieved,
      };
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      return { status: "unreadable", key, problem: err.message };
    }
  }
}
