// One poll loop for every viewer: the dashboard reads the store here, and only here, every
// `interval` ms (the next poll starts when the last has ended, so polls never pile up), whatever
// the number of pages and event streams open. Each poll lists the status records (reading only
// those that changed), the channels' releases and the newest rollout; a viewer gets the snapshot
// the last poll made. A poll that fails keeps the last snapshot and says why. Releases are
// verified with the fleet's releases.publicKeys; rollout records dated in the future are passed
// over (status/future-rollouts.ts), and the view names the first.
import { AgentSignalsReader } from "../channel/standing-store.js";
import type { Fleet } from "../fleet/fleet.js";
import { parsePublicKey } from "../nix/keys.js";
import type { ObjectStore } from "../store/object-store.js";
import { countReads, type ReadCounts } from "../store/wrap-store.js";
import type { OriginCache } from "../views/host-origins.js";
import { ReleaseBoard } from "../views/release-board.js";
import { RolloutWatch } from "../views/rollout-watch.js";
import { StatusReader } from "../views/status-reader.js";
import type { StatusRow } from "../views/status-rows.js";
import { readStatusView } from "../views/status-view.js";
import { rolloutClockView, type Snapshot } from "./snapshot.js";

/** Default ms between the end of a poll and the start of the next. */
export const POLL_INTERVAL = 2000;
/** A poll that takes longer than this fails (the store hangs); the next one tries again. */
export const POLL_DEADLINE = 60_000;

/** What one poll cost, and when it ended. */
export interface PollReport {
  readonly seconds: number;
  readonly requests: Readonly<ReadCounts>;
  readonly changed: boolean;
  /** Why it failed (the snapshot is the last good one). */
  readonly error?: string;
}

export interface PollerOptions {
  readonly interval?: number;
  readonly deadline?: number;
}

export class FleetPoller {
  readonly fleet: Fleet;
  readonly store: ObjectStore;
  readonly watch: RolloutWatch;
  readonly #counts: ReadCounts;
  readonly #reader: StatusReader;
  readonly #signals: AgentSignalsReader;
  /** Who put each host's system there: each rollout record and release origin read once. */
  readonly #origins: OriginCache;
  readonly #board: ReleaseBoard;
  readonly #interval: number;
  readonly #deadline: number;
  readonly #listeners = new Set<(snapshot: Snapshot) => void>();
  #snapshot: Snapshot | undefined;
  #fingerprint = "";
  #last: PollReport | undefined;
  #polls = 0;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #running: Promise<void> | undefined;
  /**
   * A read a poll gave up on at its deadline, still running: when it began and why it was
   * given up. No new read starts while it runs (it would wait behind it).
   */
  #unanswered: { readonly since: Date; readonly why: string } | undefined;

  constructor(fleet: Fleet, store: ObjectStore, options: PollerOptions = {}) {
    this.fleet = fleet;
    const counted = countReads(store);
    this.store = counted.store;
    this.#counts = counted.counts;
    this.#reader = new StatusReader(this.store, { hosts: fleet.hosts.map((h) => h.name) });
    this.#signals = new AgentSignalsReader(this.store, fleet);
    this.#origins = new Map();
    this.#board = new ReleaseBoard(
      this.store,
      fleet.releases?.publicKeys.map((k) => parsePublicKey(k)),
    );
    this.watch = new RolloutWatch(
      this.store,
      (fleet.cache?.publicKeys ?? []).map((k) => parsePublicKey(k)),
    );
    this.#interval = options.interval ?? POLL_INTERVAL;
    this.#deadline = options.deadline ?? POLL_DEADLINE;
  }

  /** The last good snapshot (undefined before the first poll succeeded). */
  get snapshot(): Snapshot | undefined {
    return this.#snapshot;
  }

  get lastPoll(): PollReport | undefined {
    return this.#last;
  }

  get polls(): number {
    return this.#polls;
  }

  /** Requests sent to the store since the poller started (polls and pages' own reads). */
  get requests(): Readonly<ReadCounts> {
    return this.#counts;
  }

  /** Called with each new snapshot; returns the unsubscribe. */
  subscribe(listener: (snapshot: Snapshot) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Polls once now, then every interval until stop(). */
  async start(): Promise<PollReport> {
    const first = await this.pollOnce();
    this.#schedule();
    return first;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
  }

  /** One poll: the store read once, the snapshot replaced when something changed. */
  async pollOnce(): Promise<PollReport> {
    const before = { ...this.#counts };
    const started = performance.now();
    let report: PollReport;
    const unanswered = this.#unanswered;
    if (unanswered !== undefined) {
      const waited = Math.round((Date.now() - unanswered.since.getTime()) / 1000);
      report = {
        seconds: 0,
        requests: delta(before, this.#counts),
        changed: false,
        error: `the store has not answered for ${waited} s (since ${unanswered.since.toISOString()}): ${unanswered.why}`,
      };
      this.#polls++;
      this.#last = report;
      return report;
    }
    const since = new Date();
    const read = this.#read();
    try {
      const snapshot = await withDeadline(read, this.#deadline, this.store.url);
      // The small parts are compared as JSON; rows by identity first (a row of an unchanged
      // record is the same object), and as JSON only where they differ (agents' rows, which
      // are made again each poll).
      const fingerprint = JSON.stringify([
        snapshot.channels,
        snapshot.warnings,
        snapshot.futureRollout,
        rolloutClockView(snapshot),
      ]);
      const last = this.#snapshot;
      const changed =
        last === undefined ||
        fingerprint !== this.#fingerprint ||
        snapshot.rollout !== last.rollout ||
        !sameRows(snapshot.rows, last.rows);
      if (changed) {
        this.#fingerprint = fingerprint;
        this.#snapshot = { ...snapshot, version: (this.#snapshot?.version ?? 0) + 1 };
      } else if (this.#snapshot !== undefined) {
        this.#snapshot = { ...this.#snapshot, at: snapshot.at };
      }
      report = { seconds: seconds(started), requests: delta(before, this.#counts), changed };
      if (changed) for (const l of this.#listeners) l(this.#snapshot as Snapshot);
    } catch (err) {
      // A store that fails or hangs, or a record nobody expected: the page says so and the
      // next poll tries again (once the read given up on has ended).
      if (err instanceof PollTimeout) {
        this.#unanswered = { since, why: err.message };
        const ended = () => {
          this.#unanswered = undefined;
        };
        read.then(ended, ended);
      }
      report = {
        seconds: seconds(started),
        requests: delta(before, this.#counts),
        changed: false,
        error: err instanceof Error ? err.message : String(err),
      };
    }
    this.#polls++;
    this.#last = report;
    return report;
  }

  async #read(): Promise<Omit<Snapshot, "version">> {
    const [view, channels] = await Promise.all([
      readStatusView(this.fleet, this.fleet.hosts, {
        stored: true,
        reader: this.#reader,
        signals: this.#signals,
        origins: this.#origins,
        rollouts: this.watch,
      }),
      this.#board.poll(),
    ]);
    const { rollout } = view;
    return {
      at: new Date().toISOString(),
      rows: view.rows,
      tags: new Map(this.fleet.hosts.map((h) => [h.name, h.tags])),
      channels,
      rollout,
      futureRollout: view.futureRollout ?? null,
      warnings: view.warnings,
    };
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#running = this.pollOnce().then(
        () => this.#schedule(),
        () => this.#schedule(),
      );
    }, this.#interval);
  }
}

class PollTimeout extends Error {}

function sameRows(a: readonly StatusRow[], b: readonly StatusRow[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((row, i) => row === b[i] || JSON.stringify(row) === JSON.stringify(b[i]));
}

async function withDeadline<T>(work: Promise<T>, ms: number, store: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new PollTimeout(`the store ${store} did not answer within ${ms / 1000} s`)),
      ms,
    );
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

function seconds(started: number): number {
  return (performance.now() - started) / 1000;
}

function delta(before: ReadCounts, after: ReadCounts): ReadCounts {
  return {
    list: after.list - before.list,
    get: after.get - before.get,
    head: after.head - before.head,
  };
}
