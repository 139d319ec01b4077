// Keeps a deploy's rollout record (status/rollout.ts) in the fleet's cache store while the deploy
// runs: it follows the deploy's events, and writes the record at most every WRITE_EVERY ms, soon
// when a wave starts or a host ends (paced by how long writes take), and a last time when the
// deploy ends. Writes go one at a time
// and never hold the deploy up; a failed write is told once (onWarning) and the next change
// tries again. The same recorder serves every delivery mode.

import { randomBytes } from "node:crypto";
import type { Action } from "../fleet/action.js";
import type { DeliveryMode } from "../fleet/fleet.js";
import type { HostPhase } from "../fleet/phase.js";
import type { SecretKey } from "../nix/keys.js";
import { shownSource } from "../release/release-origin.js";
import type {
  RolloutFetchPace,
  RolloutHost,
  RolloutHostState,
  RolloutPause,
  RolloutRecord,
  RolloutReleases,
  RolloutState,
  RolloutWave,
} from "../status/rollout.js";
import {
  ROLLOUT_HEARTBEAT_SECONDS,
  ROLLOUT_RELEASES_KEPT,
  rolloutKey,
  rolloutLive,
} from "../status/rollout.js";
import type { RolloutBake } from "../status/rollout-bake.js";
import { writeRollout } from "../status/rollout-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { onLastWord } from "../util/last-words.js";
import type { DeployOrigin } from "./deploy-origin.js";
import type { DeployEvent, HostResult } from "./events.js";

/** Least time between two writes of the record while hosts change. */
const WRITE_EVERY = 1000;
/**
 * Least time between the end of a write and an urgent one (a wave started, a host ended): at
 * least URGENT_GAP, and DUTY_FACTOR times as long as that write took, so that a large fleet's
 * record (its size grows with the hosts) is not written back to back as its hosts end, one by
 * one: writing takes at most 1 / (1 + DUTY_FACTOR) of the deploy's time.
 */
const URGENT_GAP = 100;
const DUTY_FACTOR = 4;
/** How long the last write may take when the deploy ends. */
const FINAL_WRITE_DEADLINE = 10_000;

export interface RolloutRecorderOptions {
  readonly mode: DeliveryMode;
  readonly action: Action;
  /** Who started it and from what (deploy-origin.ts). */
  readonly origin?: DeployOrigin;
  /**
   * A rollback's: the rollout it undoes, and the hosts it names but does not deploy (refused:
   * they changed since; left: the rollout never changed them; not-started: what they run could
   * not be told, so the rollout still stands for them), each with why.
   */
  readonly rollback?: {
    readonly undoes: string;
    readonly left: readonly RolloutHost[];
  };
  /** Told once when a write fails (the deploy goes on). */
  readonly onWarning?: (message: string) => void;
  /** The releases the rollout published so far (an agent rollout's channel), read at each write. */
  readonly releases?: () => readonly { readonly channel: string; readonly seq: number }[];
  /**
   * Signs each write of the record (the deploy's cache key): a rollback believes only a record
   * a key of the fleet's cache.publicKeys signed (status/rollout-signature.ts).
   */
  readonly key?: SecretKey | undefined;
  readonly now?: () => Date;
}

export class RolloutRecorder {
  readonly #store: ObjectStore;
  readonly #options: RolloutRecorderOptions;
  readonly #id = randomBytes(6).toString("hex");
  readonly #startedAt: Date;
  readonly #systems = new Map<string, string>();
  /** What each host ran before, as the survey found it. */
  readonly #before = new Map<string, string | null>();
  /** How each host bakes, as the plan says. */
  readonly #bakes = new Map<string, { seconds: number; interval: number }>();
  readonly #waves: { index: number; kind: "canary" | "main"; hosts: Map<string, RolloutHost> }[] =
    [];
  readonly #skipped: RolloutHost[];
  readonly #pauses: RolloutPause[] = [];
  #fetchPace: RolloutFetchPace | undefined;
  #state: RolloutState = "running";
  #stopped: string | null = null;
  #dirty = false;
  #writing: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #warned = false;
  /** A wave started or a host ended since the last write began: write as soon as possible. */
  #urgent = false;
  /** performance.now() before which no urgent write starts (see URGENT_GAP). */
  #urgentNotBefore = 0;

  /** Writes the record every heartbeat while the rollout lasts: a record left unwritten says its deployer is gone. */
  readonly #heartbeat: NodeJS.Timeout;

  constructor(store: ObjectStore, options: RolloutRecorderOptions) {
    this.#store = store;
    this.#options = options;
    this.#startedAt = this.#now();
    this.#skipped = [...(options.rollback?.left ?? [])];
    this.#heartbeat = setInterval(() => {
      if (this.#waves.length === 0 || !rolloutLive(this.#state)) return;
      this.#dirty = true;
      void this.#flush();
    }, ROLLOUT_HEARTBEAT_SECONDS * 1000);
    this.#heartbeat.unref();
    // Killed by a second interrupt, the deploy still says where it stopped.
    this.#unregister = onLastWord(() => this.finish("interrupted"));
  }

  /** Removes the last word once the record is finished. */
  readonly #unregister: () => void;

  /** The rollout's id, as commands name it (`nixship rollout resume ID`). */
  get id(): string {
    return this.#id;
  }

  /**
   * Whether the rollout has a record: it has waves, or it names a host that did not get its
   * system (unreachable, refused), which stays behind it, or it is a rollback (whatever it sent
   * back, the rollout it undid asks nothing more). A deploy that found every host up to date
   * records nothing.
   */
  get recorded(): boolean {
    return (
      this.#waves.length > 0 ||
      this.#options.rollback !== undefined ||
      this.#skipped.some((h) => h.state !== "up-to-date" && h.state !== "left")
    );
  }

  /** Where the record is kept: status records of the hosts it moves name it. */
  get key(): string {
    return rolloutKey(this.#startedAt, this.#id);
  }

  /** Follows one deploy event. */
  onEvent(event: DeployEvent): void {
    switch (event.type) {
      case "plan":
        for (const h of event.plan.hosts) {
          this.#systems.set(h.host, h.desired);
          this.#before.set(h.host, h.current ?? h.lastKnown ?? null);
          if (h.bake !== undefined) this.#bakes.set(h.host, h.bake);
          if (h.action !== "activate") {
            this.#skipped.push({
              host: h.host,
              state: h.action === "skip" ? "up-to-date" : "unreachable",
              phase: null,
              system: h.desired,
              before: h.current ?? h.lastKnown ?? null,
              message: h.action === "skip" ? "up to date" : (h.error ?? "unreachable"),
            });
          }
        }
        // Every wave of the plan, its hosts pending until it starts: a reader sees them all.
        for (const w of event.plan.waves) this.#addWave(w.wave, w.kind, w.hosts);
        return;
      case "wave-start": {
        // The plan named it already (with its hosts pending); else it is added now.
        this.#addWave(event.wave, event.kind, event.hosts);
        this.#changed(true);
        return;
      }
      case "host-phase":
        this.#update(event.host, (h) => ({
          ...h,
          state: stateOfPhase(event.phase),
          phase: event.phase,
        }));
        return;
      case "host-done":
        this.#update(event.result.host, (h) => ({ ...h, ...finalOf(event.result) }), true);
        return;
      case "paused":
        this.#pauses.push({
          afterWave: event.afterWave,
          since: event.since,
          until: event.until,
          onTimeout: event.onTimeout,
        });
        this.#state = "paused";
        this.#changed(true);
        return;
      case "pause-ended": {
        const i = this.#pauses.findLastIndex((p) => p.afterWave === event.afterWave);
        const pause = this.#pauses[i];
        if (pause === undefined) return;
        const { action, by, at } = event;
        this.#pauses[i] = {
          ...pause,
          answer: { action, by, at, ...(event.timedOut === true ? { timedOut: true } : {}) },
        };
        // An abort or an interrupt ends the rollout next (finish says how); until then it runs.
        this.#state = "running";
        this.#changed(true);
        return;
      }
      case "bake-start":
        for (const host of event.hosts) {
          const bake = this.#bakes.get(host) ?? {
            seconds: event.seconds,
            interval: event.interval,
          };
          this.#update(host, (h) => ({
            ...h,
            state: "baking",
            phase: "bake",
            bake: { state: "baking", seconds: bake.seconds, interval: bake.interval, analysis: [] },
          }));
        }
        this.#changed(true);
        return;
      case "bake-measure":
        this.#update(event.host, (h) => ({
          ...h,
          ...(h.bake && { bake: measured(h.bake, event) }),
        }));
        return;
      case "bake-done":
        this.#update(
          event.host,
          (h) => ({
            ...h,
            ...(event.result === undefined
              ? { state: "confirmed" as const, phase: null, message: null }
              : finalOf(event.result)),
            ...(h.bake && { bake: bakeEnd(h.bake, event) }),
          }),
          true,
        );
        return;
      case "bake-failed":
        for (const r of event.results) {
          this.#update(r.host, (h) => ({ ...h, ...finalOf(r) }));
        }
        this.#changed(true);
        return;
      case "stopped":
        this.#stopped = event.reason;
        for (const host of event.notStarted) {
          this.#update(host, (h) => ({ ...h, state: "not-started", message: event.reason }));
        }
        this.#changed(true);
        return;
      default:
        return;
    }
  }

  /**
   * The deploy ended: the last write, within a deadline. A deploy that succeeded while some
   * selected host did not get its system (unreachable, not started) ends partial; a host still
   * pending then was never started.
   */
  finish(state: Exclude<RolloutState, "running" | "paused">): Promise<void> {
    // Once: a second interrupt's last word, while the deploy finishes, waits for the same write.
    this.#finishing ??= this.#finish(state).finally(() => this.#unregister());
    return this.#finishing;
  }

  #finishing: Promise<void> | undefined;

  async #finish(state: Exclude<RolloutState, "running" | "paused">): Promise<void> {
    clearInterval(this.#heartbeat);
    if (!this.recorded) return;
    for (const wave of this.#waves) {
      for (const [name, h] of wave.hosts) {
        if (h.state === "pending") wave.hosts.set(name, { ...h, state: "not-started" });
      }
    }
    // (A rollback's refused host is one it was to send back and did not.)
    const missed = [...this.#waves.flatMap((w) => [...w.hosts.values()]), ...this.#skipped].some(
      (h) => h.state === "unreachable" || h.state === "not-started" || h.state === "refused",
    );
    this.#state = state === "succeeded" && missed ? "partial" : state;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#dirty = true;
    const done = (async () => {
      await this.#writing;
      await this.#write();
    })();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.#warn(`the rollout record was not written within ${FINAL_WRITE_DEADLINE / 1000} s`);
        resolve();
      }, FINAL_WRITE_DEADLINE);
    });
    await Promise.race([done, deadline]).finally(() => clearTimeout(timer));
  }

  /**
   * Resolves once the record as it stands is written (or its write failed, which is told as
   * any other): a pause is in the store before the operator is told to answer it.
   */
  async written(): Promise<void> {
    while (this.#writing !== undefined) await this.#writing;
    if (!this.#dirty) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#flush();
    while (this.#writing !== undefined) await this.#writing;
  }

  /**
   * How fast the hosts fetched (FetchPace.seen), kept for the next deploy's first wave: written
   * with the record's last write (`finish`).
   */
  notePace(pace: RolloutFetchPace): void {
    if (pace.whole === undefined && pace.rebuilt === undefined) return;
    this.#fetchPace = pace;
  }

  /** A wave, its hosts pending, unless it is known already. */
  #addWave(index: number, kind: "canary" | "main", names: readonly string[]): void {
    if (this.#waves.some((w) => w.index === index)) return;
    const hosts = new Map(
      names.map((host): [string, RolloutHost] => [
        host,
        {
          host,
          state: "pending",
          phase: null,
          system: this.#systems.get(host) ?? null,
          ...(this.#before.has(host) ? { before: this.#before.get(host) ?? null } : {}),
          message: null,
        },
      ]),
    );
    this.#waves.push({ index, kind, hosts });
  }

  /** The record as it stands. */
  record(): RolloutRecord {
    const origin = this.#options.origin;
    return {
      version: 1,
      id: this.#id,
      mode: this.#options.mode,
      action: this.#options.action,
      state: this.#state,
      stopped: this.#stopped,
      waves: this.#waves.map(
        (w): RolloutWave => ({ index: w.index, kind: w.kind, hosts: [...w.hosts.values()] }),
      ),
      ...(this.#skipped.length > 0 ? { skipped: this.#skipped } : {}),
      ...(origin === undefined ? {} : { by: origin.by, sources: origin.sources.map(shownSource) }),
      ...(this.#options.rollback === undefined ? {} : { undoes: this.#options.rollback.undoes }),
      ...(this.#pauses.length === 0 ? {} : { pauses: [...this.#pauses] }),
      ...releasesOf(this.#options.releases?.() ?? []),
      ...(this.#fetchPace === undefined ? {} : { fetchPace: this.#fetchPace }),
      startedAt: this.#startedAt.toISOString(),
      updatedAt: this.#now().toISOString(),
    };
  }

  #update(host: string, change: (h: RolloutHost) => RolloutHost, now = false): void {
    for (let i = this.#waves.length - 1; i >= 0; i--) {
      const wave = this.#waves[i];
      const known = wave?.hosts.get(host);
      if (wave !== undefined && known !== undefined) {
        wave.hosts.set(host, change(known));
        this.#changed(now);
        return;
      }
    }
  }

  #changed(now: boolean): void {
    this.#dirty = true;
    if (!rolloutLive(this.#state)) return;
    if (now) {
      this.#urgent = true;
      clearTimeout(this.#timer);
      this.#timer = undefined;
      const wait = this.#urgentNotBefore - performance.now();
      if (wait <= 0) void this.#flush();
      else {
        this.#timer = setTimeout(() => {
          this.#timer = undefined;
          void this.#flush();
        }, wait);
        this.#timer.unref();
      }
    } else {
      this.#timer ??= setTimeout(() => {
        this.#timer = undefined;
        // A write in flight: its end sets the timer again.
        void this.#flush();
      }, WRITE_EVERY);
      this.#timer.unref();
    }
  }

  /**
   * Writes the record unless a write is in flight. What changes meanwhile is written when it
   * ends if a wave started or a host ended meanwhile, else by the throttle's timer, so that a
   * slow store is not written back to back for every step of every host.
   */
  async #flush(): Promise<void> {
    if (this.#writing !== undefined) return;
    this.#urgent = false;
    const started = performance.now();
    this.#writing = this.#write().finally(() => {
      const ended = performance.now();
      this.#urgentNotBefore = ended + Math.max(URGENT_GAP, DUTY_FACTOR * (ended - started));
      this.#writing = undefined;
      if (this.#dirty) this.#changed(this.#urgent);
    });
    await this.#writing;
  }

  async #write(): Promise<void> {
    this.#dirty = false;
    try {
      await writeRollout(this.#store, this.record(), this.#options.key);
    } catch (err) {
      this.#warn(`the rollout record could not be written: ${(err as Error).message}`);
    }
  }

  #warn(message: string): void {
    if (this.#warned) return;
    this.#warned = true;
    this.#options.onWarning?.(message);
  }

  #now(): Date {
    return this.#options.now?.() ?? new Date();
  }
}

/**
 * Measurements a record keeps of each query of a host: the latest while it bakes (the events
 * have them all), fewer once its bake ended, but for a query that failed it. A record holds a
 * whole rollout's hosts, and must stay under what its readers take (ROLLOUT_RECORD_LIMIT):
 * 360 rounds of 5 queries for 50 hosts came to 10 MB.
 */
const MEASUREMENTS_BAKING = 30;
const MEASUREMENTS_ENDED = 3;

/** A host's bake with one more measurement of one of its queries. */
function measured(
  bake: RolloutBake,
  event: Extract<DeployEvent, { type: "bake-measure" }>,
): RolloutBake {
  const known = bake.analysis.some((a) => a.name === event.name);
  const analysis = known
    ? bake.analysis
    : [
        ...bake.analysis,
        { name: event.name, query: event.query, condition: event.condition, measurements: [] },
      ];
  return {
    ...bake,
    analysis: analysis.map((a) =>
      a.name === event.name
        ? { ...a, measurements: [...a.measurements, event.measurement].slice(-MEASUREMENTS_BAKING) }
        : a,
    ),
  };
}

/** `analysis` as an ended bake keeps it: the latest few measurements, all kept of a failed query. */
function endedAnalysis(analysis: RolloutBake["analysis"]): RolloutBake["analysis"] {
  return analysis.map((a) =>
    a.failed === undefined ? { ...a, measurements: a.measurements.slice(-MEASUREMENTS_ENDED) } : a,
  );
}

/** A host's bake as it ended: passed, interrupted, or failed (by which check or queries). */
function bakeEnd(
  bake: RolloutBake,
  event: Extract<DeployEvent, { type: "bake-done" }>,
): RolloutBake {
  const o = event.result?.outcome;
  const cause = o?.status === "failed" ? o.cause : undefined;
  if (cause === undefined || cause.kind === "wave") {
    // Rolled back with its wave: its own bake did not fail (it may have been cut short).
    const ownOk = event.ok || cause !== undefined;
    return {
      ...bake,
      state: event.interrupted ? "interrupted" : ownOk ? "passed" : "failed",
      analysis: endedAnalysis(bake.analysis),
    };
  }
  const why = new Map(cause.analysis.map((a) => [a.name, a.why]));
  return {
    ...bake,
    state: "failed",
    ...(cause.check === undefined ? {} : { check: cause.check }),
    analysis: endedAnalysis(
      bake.analysis.map((a) => {
        const failed = why.get(a.name);
        return failed === undefined ? a : { ...a, failed };
      }),
    ),
  };
}

function stateOfPhase(phase: HostPhase): RolloutHostState {
  if (phase === "bake") return "baking";
  return phase === "health" || phase === "confirm" ? "health" : "activating";
}

function finalOf(
  result: HostResult,
): Pick<RolloutHost, "state" | "phase" | "message" | "waveFailedBy"> {
  const o = result.outcome;
  switch (o.status) {
    case "activated":
      return { state: "confirmed", phase: null, message: null };
    case "failed":
      return {
        state: o.rolledBack ? "rolled-back" : "failed",
        phase: o.phase,
        message: o.message,
        ...(o.cause?.kind === "wave" ? { waveFailedBy: o.cause.host } : {}),
      };
    case "skipped":
      return {
        state: o.reason,
        phase: null,
        message: o.message ?? (o.reason === "up-to-date" ? "up to date" : o.reason),
      };
  }
}

/** The record's `releases`: the first channel's numbers, the newest ROLLOUT_RELEASES_KEPT. */
function releasesOf(published: readonly { readonly channel: string; readonly seq: number }[]): {
  releases?: RolloutReleases;
} {
  const channel = published[0]?.channel;
  if (channel === undefined) return {};
  const seqs = published.filter((r) => r.channel === channel).map((r) => r.seq);
  return { releases: { channel, seqs: seqs.slice(-ROLLOUT_RELEASES_KEPT) } };
}

/**
 * A recorder for a rollout into the fleet's cache store (undefined without one): the store is
 * its own, closed by `finish`, which writes the record a last time.
 */
export async function recordRollout(
  cacheUrl: string | undefined,
  options: RolloutRecorderOptions,
): Promise<
  | {
      readonly recorder: RolloutRecorder;
      finish(state: Exclude<RolloutState, "running" | "paused">): Promise<void>;
    }
  | undefined
> {
  if (cacheUrl === undefined) return undefined;
  const store = await openStore(cacheUrl);
  const recorder = new RolloutRecorder(store, options);
  return {
    recorder,
    finish: async (state) => {
      try {
        await recorder.finish(state);
      } finally {
        await store.close();
      }
    },
  };
}
