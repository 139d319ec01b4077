// The rollout record: what a deploy is doing, wave by wave, as one object the deployer rewrites
// while it runs, so that a reader (the dashboard) follows any rollout, in any delivery mode,
// with one LIST and one GET per change. Pure: the key layout, the shape and its strict parsing.
//
//   status/rollouts/<inverted time>-<id>.json
//
// The inverted time (9999999999999 minus the start's milliseconds, 13 digits) makes the newest
// rollout the first key a LIST returns, so finding it costs one LIST of one key whatever the
// number of rollouts kept.
import { InputError } from "../errors.js";
import { ACTIONS, type Action } from "../fleet/action.js";
import { DELIVERY_MODES, type DeliveryMode, NAME_PATTERN } from "../fleet/fleet.js";
import { PAUSE_OUTCOMES } from "../fleet/pause-policy.js";
import { type HostPhase, isHostPhase } from "../fleet/phase.js";
import type { SecretKey } from "../nix/keys.js";
import { isStorePath } from "../nix/store-path.js";
import { type OriginSource, readOriginSources } from "../release/release-origin.js";
import { clipped, jsonErrorText, nonFiniteAsText, withoutControls } from "../util/text.js";
import { parseRolloutBake, type RolloutBake } from "./rollout-bake.js";
import { signedRecordBytes } from "./rollout-signature.js";

export const ROLLOUT_PREFIX = "status/rollouts/";

/**
 * How a pause can end: an operator's resume or abort (or the deadline's, in their name), or
 * the deployer's own interrupt (Ctrl-C while it waited).
 */
export const PAUSE_ANSWER_ACTIONS = ["resume", "abort", "interrupted"] as const;
export type PauseAnswerAction = (typeof PAUSE_ANSWER_ACTIONS)[number];

/**
 * Where one host of a rollout is, and once it ended, what came of it: baking (confirmed, its
 * wave holds while it is measured), confirmed (activated),
 * rolled-back, failed, unreachable (skipped: it could not be reached), not-started (a wave
 * that never began), up-to-date (it ran its system already), refused (a rollback would not
 * move it: it changed since), left (a rollback named it and left it where it was: the rollout
 * it undoes never changed it; a rollback deploys only the hosts it sends back). "skipped" is
 * older records' word for up-to-date or unreachable, read as one of those.
 */
export const ROLLOUT_HOST_STATES = [
  "pending",
  "activating",
  "health",
  "baking",
  "confirmed",
  "rolled-back",
  "failed",
  "unreachable",
  "not-started",
  "up-to-date",
  "refused",
  "left",
  "skipped",
] as const;
export type RolloutHostState = (typeof ROLLOUT_HOST_STATES)[number];

/**
 * Where a rollout is: running, paused (between two waves, waiting for an operator's answer:
 * its last entry in `pauses`); and how it ended: succeeded (every selected host runs what it
 * was to get), partial (none failed, but some never got it: unreachable, not started, refused
 * by a rollback), failed,
 * interrupted, or aborted (an operator answered a pause with abort, or nobody answered and
 * abort was its default: its deployer then rolls back the hosts it changed).
 */
export const ROLLOUT_STATES = [
  "running",
  "paused",
  "succeeded",
  "partial",
  "failed",
  "interrupted",
  "aborted",
] as const;
export type RolloutState = (typeof ROLLOUT_STATES)[number];

/** States of a rollout whose deployer still works on it. */
export function rolloutLive(state: RolloutState): boolean {
  return state === "running" || state === "paused";
}

/** How often a deployer writes its rollout's record while the rollout runs, changed or not. */
export const ROLLOUT_HEARTBEAT_SECONDS = 60;

/**
 * How long a running or paused record may go unwritten before its deployer is judged gone (killed, its
 * machine lost): fifteen heartbeats, so that clocks that differ by minutes do not judge a live
 * deploy gone.
 */
export const ROLLOUT_ABANDONED_SECONDS = 15 * ROLLOUT_HEARTBEAT_SECONDS;

/**
 * How often a paused deployer reads whether its pause was answered ($NIXSHIP_PAUSE_POLL_MS
 * shortens it for tests).
 */
export const PAUSE_POLL_MS = 2000;

/**
 * How long past its deadline a pause may still say paused: its deployer takes the deadline's
 * outcome at its next read, and clocks differ a little. Past that, its deployer is gone.
 */
export const PAUSE_GONE_AFTER_MS = 5 * PAUSE_POLL_MS + 30_000;

/** Seconds a running or paused record may go unwritten before the views judge it ended. */
export const ROLLOUT_QUIET_SECONDS = 3 * ROLLOUT_HEARTBEAT_SECONDS;

/**
 * Whether `record` says running or paused yet went unwritten for ROLLOUT_QUIET_SECONDS at
 * `now`: three heartbeats a live deployer would have written. What the views show judges its
 * hosts as it ended there (asEnded: one mid-activation failed there unless it runs its
 * system), so that no view calls such a host in step, nor applying; undoing it waits for
 * rolloutGone, which allows for clocks minutes apart.
 */
export function rolloutQuiet(record: RolloutRecord, now: Date): boolean {
  if (!rolloutLive(record.state)) return false;
  return (now.getTime() - Date.parse(record.updatedAt)) / 1000 > ROLLOUT_QUIET_SECONDS;
}

/**
 * Why `record`'s deployer is gone at `now` (undefined: the record ended, or its deployer is
 * still there): it says running or paused but was not written for ROLLOUT_ABANDONED_SECONDS
 * (a live deployer writes it every heartbeat, paused too), or it is paused past its pause's
 * deadline by PAUSE_GONE_AFTER_MS (a live deployer takes the deadline's outcome).
 */
export function rolloutGone(
  record: RolloutRecord,
  now: Date,
  written?: WrittenAnswer,
): string | undefined {
  if (!rolloutLive(record.state)) return undefined;
  const quiet = (now.getTime() - Date.parse(record.updatedAt)) / 1000;
  if (quiet > ROLLOUT_ABANDONED_SECONDS) {
    return `its deployer has not written it since ${record.updatedAt} (killed, or its machine stopped)`;
  }
  const pause = record.state === "paused" ? record.pauses?.at(-1) : undefined;
  if (pause !== undefined && now.getTime() > Date.parse(pause.until) + PAUSE_GONE_AFTER_MS) {
    return `its deadline (${pause.until}) passed and its deployer took no outcome (killed, or its machine stopped)`;
  }
  return pause === undefined ? undefined : answerUntaken(pause, written, now);
}

/**
 * How long after an answer to its pause a live deployer has taken it: it reads for one every
 * PAUSE_POLL_MS; the rest allows for the clocks of the answering machine and this one.
 */
export const ANSWER_TAKEN_WITHIN_MS = 60 * PAUSE_POLL_MS;

/** An answer written to a pause (status/pause-answer.ts), which its deployer may not have taken. */
export type WrittenAnswer = RolloutPauseAnswer & { readonly afterWave: number };

/**
 * Why `pause`'s deployer is gone at `now`, by the answer written to it (`written`, read from the
 * store): one its deployer has not taken ANSWER_TAKEN_WITHIN_MS after it was written tells the
 * deployer stopped reading. Undefined when no such answer tells it.
 */
export function answerUntaken(
  pause: RolloutPause,
  written: WrittenAnswer | undefined,
  now: Date,
): string | undefined {
  if (pause.answer !== undefined || written === undefined) return undefined;
  if (written.afterWave !== pause.afterWave) return undefined;
  if (now.getTime() - Date.parse(written.at) <= ANSWER_TAKEN_WITHIN_MS) return undefined;
  return `its pause was answered (${written.action} by ${written.by} at ${written.at}) and its deployer has not taken the answer since (killed, or its machine stopped)`;
}

/** Whether `record` says running or paused but its deployer is gone (rolloutGone). */
export function rolloutAbandoned(record: RolloutRecord, now: Date): boolean {
  return rolloutGone(record, now) !== undefined;
}

/** A host's state while its activation was under way: where a killed deploy left it. */
export function inFlight(state: RolloutHostState): boolean {
  return state === "activating" || state === "health" || state === "baking";
}

/** Host states after which the host runs what the rollout gave it. */
const GOT_ITS_SYSTEM: ReadonlySet<RolloutHostState> = new Set(["confirmed", "up-to-date"]);

/** Whether the host ended running the system the rollout named for it. */
export function gotItsSystem(entry: Pick<RolloutHost, "state">): boolean {
  return GOT_ITS_SYSTEM.has(entry.state);
}

export interface RolloutHost {
  readonly host: string;
  readonly state: RolloutHostState;
  /** The step it is at, or failed in (null: not started, or finished). */
  readonly phase: HostPhase | null;
  /** The system it is given (a rollback's refused host: null, it is given nothing). */
  readonly system: string | null;
  /** The system it ran before the rollout (null: not known; absent in older records). */
  readonly before?: string | null;
  /** Why it failed or was skipped (null otherwise). */
  readonly message: string | null;
  /** Its bake, once its wave's began: each query's measurements, what failed it. */
  readonly bake?: RolloutBake;
  /** Rolled back with its wave: the host of the wave whose failed bake took it back. */
  readonly waveFailedBy?: string;
}

export interface RolloutWave {
  /** From 1. */
  readonly index: number;
  readonly kind: "canary" | "main";
  readonly hosts: readonly RolloutHost[];
}

/** How a pause ended: who answered, when, and whether its deadline answered for nobody. */
export interface RolloutPauseAnswer {
  readonly action: PauseAnswerAction;
  /** Who answered (user@machine, a CI run); for a deadline, the deployer. */
  readonly by: string;
  readonly at: string;
  /** Set when nobody answered by the deadline and the pause took its default outcome. */
  readonly timedOut?: true;
}

/** A pause of the rollout: after which wave, since and until when, and how it ended. */
export interface RolloutPause {
  /** The wave it follows (from 1). */
  readonly afterWave: number;
  readonly since: string;
  /** Its deadline: then `onTimeout` is its answer. */
  readonly until: string;
  readonly onTimeout: "abort" | "resume";
  /** Absent while it waits. */
  readonly answer?: RolloutPauseAnswer;
}

/** Where a rollout's systems came from: a flake, its git revision, whether its tree was dirty. */
export type RolloutSource = OriginSource;

/** NAR bytes hosts got and the seconds their fetching took, summed over the hosts. */
export interface FetchSeen {
  readonly bytes: number;
  readonly seconds: number;
  /**
   * The hosts whose fetches these are, sorted, the first PACE_HOSTS_KEPT of them: a later
   * deploy judges by them only when it deploys one of them (absent in older records: any).
   */
  readonly hosts?: readonly string[];
}

/** The most host names a rollout record keeps for a kind of its fetch pace. */
export const PACE_HOSTS_KEPT = 1000;

/**
 * How fast the deploy's hosts got their paths (deploy/delta-pace.ts): those that fetched every
 * path whole, and those that rebuilt paths from deltas. The next deploy judges its first wave by
 * it, before its own hosts have fetched anything.
 */
export interface RolloutFetchPace {
  readonly whole?: FetchSeen;
  readonly rebuilt?: FetchSeen;
}

/** The releases an agent rollout published to its channel (its waves' and rollbacks'). */
export interface RolloutReleases {
  readonly channel: string;
  readonly seqs: readonly number[];
}

/** Releases a record names at most: a wave and a rollback each, and more than any rollout has. */
export const ROLLOUT_RELEASES_KEPT = 2000;

export interface RolloutRecord {
  readonly version: 1;
  readonly id: string;
  readonly mode: DeliveryMode;
  readonly action: Action;
  readonly state: RolloutState;
  /** Why the rollout stopped starting waves (null: it did not). */
  readonly stopped: string | null;
  readonly waves: readonly RolloutWave[];
  /** Selected hosts the rollout leaves alone (up to date, unreachable, refused), with why. */
  readonly skipped?: readonly RolloutHost[];
  /** A rollback's record: the id of the rollout it undoes. */
  readonly undoes?: string;
  /** Who started it: a CI run, or user@machine (absent in older records). */
  readonly by?: string;
  /** The flakes its systems came from (absent in older records, or systems given as paths). */
  readonly sources?: readonly RolloutSource[];
  /** Its pauses so far, in order (absent: it never paused). */
  readonly pauses?: readonly RolloutPause[];
  /** How fast its hosts fetched, where they fetched enough to tell (absent otherwise). */
  readonly fetchPace?: RolloutFetchPace;
  /**
   * An agent rollout's releases (absent in older records and other modes): an agent's report
   * of one of these is no newer word on what the rollout asked (status/behind.ts).
   */
  readonly releases?: RolloutReleases;
  readonly startedAt: string;
  readonly updatedAt: string;
}

/** The largest rollout record read: about 150 bytes a host, for tens of thousands of hosts. */
export const ROLLOUT_RECORD_LIMIT = 8 * 1024 * 1024;
/** The longest message a host's entry keeps. */
const MAX_MESSAGE = 2000;
const INVERTED_BASE = 9_999_999_999_999;
/** A rollout's id: hex, as the recorder makes it. */
export const ROLLOUT_ID = /^[0-9a-f]{8,32}$/;

export function rolloutKey(startedAt: Date, id: string): string {
  if (!ROLLOUT_ID.test(id)) throw new Error(`rolloutKey: bad rollout id ${JSON.stringify(id)}`);
  const inverted = String(INVERTED_BASE - startedAt.getTime()).padStart(13, "0");
  return `${ROLLOUT_PREFIX}${inverted}-${id}.json`;
}

/** Whether a listed key is a rollout record's. */
export function isRolloutKey(key: string): boolean {
  return /^status\/rollouts\/[0-9]{13}-[0-9a-f]{8,32}\.json$/.test(key);
}

/** The start (ms since the epoch) a rollout record's key names; undefined: no record's key. */
export function rolloutKeyStart(key: string): number | undefined {
  if (!isRolloutKey(key)) return undefined;
  return INVERTED_BASE - Number(key.slice(ROLLOUT_PREFIX.length, ROLLOUT_PREFIX.length + 13));
}

/** The record as stored: its line, signed by `key` when given (rollout-signature.ts). */
export function formatRolloutRecord(record: RolloutRecord, key?: SecretKey): Uint8Array {
  return signedRecordBytes(JSON.stringify(record, nonFiniteAsText), key);
}

/**
 * Parses a rollout record strictly; `source` names it in errors. Control characters in its texts
 * are replaced (withoutControls), and long messages clipped.
 */
export function parseRolloutRecord(bytes: Uint8Array, source: string): RolloutRecord {
  let value: unknown;
  try {
    // (A signature, its last member, is rollout-signature.ts's to check.)
    value = JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch (err) {
    throw malformed(source, `not JSON (${jsonErrorText(err)})`);
  }
  const r = object(value, source, "the record");
  if (r.version !== 1) throw malformed(source, "unsupported version");
  const id = r.id;
  if (typeof id !== "string" || !ROLLOUT_ID.test(id)) throw malformed(source, `bad "id"`);
  const mode = oneOf(r.mode, DELIVERY_MODES, source, "mode");
  const action = oneOf(r.action, ACTIONS, source, "action");
  const state = oneOf(r.state, ROLLOUT_STATES, source, "state");
  if (!(r.stopped === null || typeof r.stopped === "string")) {
    throw malformed(source, `"stopped" must be a string or null`);
  }
  const startedAt = date(r.startedAt, source, "startedAt");
  const updatedAt = date(r.updatedAt, source, "updatedAt");
  if (!Array.isArray(r.waves)) throw malformed(source, `"waves" must be a list`);
  const waves = r.waves.map((w: unknown, i: number): RolloutWave => {
    const where = `waves[${i}]`;
    const wave = object(w, source, where);
    if (!Number.isSafeInteger(wave.index) || (wave.index as number) < 1) {
      throw malformed(source, `${where}.index must be a whole number from 1`);
    }
    const kind = oneOf(wave.kind, ["canary", "main"] as const, source, `${where}.kind`);
    if (!Array.isArray(wave.hosts)) throw malformed(source, `${where}.hosts must be a list`);
    return {
      index: wave.index as number,
      kind,
      hosts: wave.hosts.map((h: unknown, j: number) =>
        rolloutHost(h, source, `${where}.hosts[${j}]`),
      ),
    };
  });
  if (r.skipped !== undefined && !Array.isArray(r.skipped)) {
    throw malformed(source, `"skipped" must be a list`);
  }
  const skipped = (r.skipped as unknown[] | undefined)?.map((h, j) =>
    rolloutHost(h, source, `skipped[${j}]`),
  );
  if (r.by !== undefined && typeof r.by !== "string") {
    throw malformed(source, `"by" must be a string`);
  }
  const sources = r.sources === undefined ? undefined : rolloutSources(r.sources, source);
  if (r.undoes !== undefined && (typeof r.undoes !== "string" || !ROLLOUT_ID.test(r.undoes))) {
    throw malformed(source, `"undoes" is not a rollout id`);
  }
  const pauses = r.pauses === undefined ? undefined : rolloutPauses(r.pauses, source);
  const fetchPace = r.fetchPace === undefined ? undefined : rolloutFetchPace(r.fetchPace, source);
  const releases = r.releases === undefined ? undefined : rolloutReleases(r.releases, source);
  return {
    version: 1,
    id,
    mode,
    action,
    state,
    stopped: typeof r.stopped === "string" ? clip(r.stopped) : null,
    waves,
    ...(skipped === undefined ? {} : { skipped }),
    ...(pauses === undefined ? {} : { pauses }),
    ...(typeof r.by === "string" ? { by: withoutControls(r.by).slice(0, 300) } : {}),
    ...(sources === undefined ? {} : { sources }),
    ...(typeof r.undoes === "string" ? { undoes: r.undoes } : {}),
    ...(fetchPace === undefined ? {} : { fetchPace }),
    ...(releases === undefined ? {} : { releases }),
    startedAt,
    updatedAt,
  };
}

/** A record's releases: a channel's name, and at most ROLLOUT_RELEASES_KEPT release numbers. */
function rolloutReleases(value: unknown, source: string): RolloutReleases {
  const r = object(value, source, "releases");
  const seqs = r.seqs;
  if (
    typeof r.channel !== "string" ||
    !NAME_PATTERN.test(r.channel) ||
    !Array.isArray(seqs) ||
    seqs.length > ROLLOUT_RELEASES_KEPT ||
    !seqs.every((n) => Number.isSafeInteger(n) && n >= 1)
  ) {
    throw malformed(
      source,
      `"releases" must name a channel and at most ${ROLLOUT_RELEASES_KEPT} release numbers`,
    );
  }
  return { channel: r.channel, seqs: seqs as number[] };
}

/** A record's fetch pace: for each kind present, finite bytes and seconds, neither negative. */
function rolloutFetchPace(value: unknown, source: string): RolloutFetchPace {
  const pace = object(value, source, "fetchPace");
  const seen = (kind: "whole" | "rebuilt"): FetchSeen | undefined => {
    if (pace[kind] === undefined) return undefined;
    const s = object(pace[kind], source, `fetchPace.${kind}`);
    const ok = (n: unknown) => typeof n === "number" && Number.isFinite(n) && n >= 0;
    if (!ok(s.bytes) || !ok(s.seconds)) {
      throw malformed(source, `fetchPace.${kind} needs bytes and seconds, numbers from 0`);
    }
    const figures = { bytes: s.bytes as number, seconds: s.seconds as number };
    if (s.hosts === undefined) return figures;
    if (
      !Array.isArray(s.hosts) ||
      s.hosts.length > PACE_HOSTS_KEPT ||
      !s.hosts.every((h) => typeof h === "string" && NAME_PATTERN.test(h))
    ) {
      throw malformed(
        source,
        `fetchPace.${kind}.hosts must be at most ${PACE_HOSTS_KEPT} host names`,
      );
    }
    return { ...figures, hosts: s.hosts as string[] };
  };
  const whole = seen("whole");
  const rebuilt = seen("rebuilt");
  return {
    ...(whole === undefined ? {} : { whole }),
    ...(rebuilt === undefined ? {} : { rebuilt }),
  };
}

/** The sources a record names: at most 20, each a flake, a revision and whether it was dirty. */
function rolloutSources(value: unknown, source: string): RolloutSource[] {
  const read = readOriginSources(value);
  if (typeof read === "string") throw malformed(source, read);
  return read;
}

/** The most pauses a record keeps (a pause after every wave of a long rollout). */
const MAX_PAUSES = 1000;

function rolloutPauses(value: unknown, source: string): RolloutPause[] {
  if (!Array.isArray(value) || value.length > MAX_PAUSES) {
    throw malformed(source, `"pauses" must be a list of at most ${MAX_PAUSES}`);
  }
  return value.map((p: unknown, i: number): RolloutPause => {
    const where = `pauses[${i}]`;
    const pause = object(p, source, where);
    if (!Number.isSafeInteger(pause.afterWave) || (pause.afterWave as number) < 1) {
      throw malformed(source, `${where}.afterWave must be a whole number from 1`);
    }
    const onTimeout = oneOf(pause.onTimeout, PAUSE_OUTCOMES, source, `${where}.onTimeout`);
    const answer =
      pause.answer === undefined ? undefined : pauseAnswer(pause.answer, source, `${where}.answer`);
    return {
      afterWave: pause.afterWave as number,
      since: date(pause.since, source, `${where}.since`),
      until: date(pause.until, source, `${where}.until`),
      onTimeout,
      ...(answer === undefined ? {} : { answer }),
    };
  });
}

function pauseAnswer(value: unknown, source: string, where: string): RolloutPauseAnswer {
  const a = object(value, source, where);
  const action = oneOf(a.action, PAUSE_ANSWER_ACTIONS, source, `${where}.action`);
  if (typeof a.by !== "string") throw malformed(source, `${where}.by must be a string`);
  if (!(a.timedOut === undefined || a.timedOut === true)) {
    throw malformed(source, `${where}.timedOut must be true when set`);
  }
  return {
    action,
    by: withoutControls(a.by).slice(0, 300),
    at: date(a.at, source, `${where}.at`),
    ...(a.timedOut === true ? { timedOut: true } : {}),
  };
}

function rolloutHost(value: unknown, source: string, where: string): RolloutHost {
  const h = object(value, source, where);
  if (typeof h.host !== "string" || !NAME_PATTERN.test(h.host)) {
    throw malformed(source, `${where}.host is not a host name`);
  }
  const written = oneOf(h.state, ROLLOUT_HOST_STATES, source, `${where}.state`);
  // Older records said "skipped" for both; their message told which.
  const state: RolloutHostState =
    written === "skipped" ? (h.message === "up to date" ? "up-to-date" : "unreachable") : written;
  if (!(h.phase === null || (typeof h.phase === "string" && isHostPhase(h.phase)))) {
    throw malformed(source, `${where}.phase is not a step`);
  }
  if (!(h.system === null || (typeof h.system === "string" && isStorePath(h.system)))) {
    throw malformed(source, `${where}.system is not a store path`);
  }
  if (
    !(
      h.before === undefined ||
      h.before === null ||
      (typeof h.before === "string" && isStorePath(h.before))
    )
  ) {
    throw malformed(source, `${where}.before is not a store path`);
  }
  if (!(h.message === null || typeof h.message === "string")) {
    throw malformed(source, `${where}.message must be a string or null`);
  }
  if (
    !(
      h.waveFailedBy === undefined ||
      (typeof h.waveFailedBy === "string" && NAME_PATTERN.test(h.waveFailedBy))
    )
  ) {
    throw malformed(source, `${where}.waveFailedBy is not a host name`);
  }
  return {
    host: h.host,
    state,
    phase: h.phase as HostPhase | null,
    system: h.system as string | null,
    ...(h.before === undefined ? {} : { before: h.before as string | null }),
    message: typeof h.message === "string" ? clip(h.message) : null,
    ...(h.bake === undefined ? {} : { bake: parseRolloutBake(h.bake, source, `${where}.bake`) }),
    ...(h.waveFailedBy === undefined ? {} : { waveFailedBy: h.waveFailedBy as string }),
  };
}

/** Every host a rollout names, in its waves and among those it left alone. */
export function rolloutEntries(record: Pick<RolloutRecord, "waves" | "skipped">): RolloutHost[] {
  return [...record.waves.flatMap((w) => w.hosts), ...(record.skipped ?? [])];
}

/**
 * The states in which a rollback is done with a host: it went back (confirmed), found it there
 * already (up-to-date), or named it and left it, with why (left: the rollout never changed it;
 * refused: something changed it since).
 */
const UNDO_DONE: ReadonlySet<RolloutHostState> = new Set([
  "confirmed",
  "up-to-date",
  "left",
  "refused",
]);

/**
 * Each rollout a rollback among `records` undid, with the hosts that rollback is done with
 * (UNDO_DONE): a rollback of some hosts alone (`--on`) undoes the rollout for them, and the
 * rollout still stands for its other hosts, as for those the rollback did not get to send back
 * (interrupted, unreachable, failed): the next rollback finishes it.
 */
export function undoneHosts(
  records: readonly Pick<RolloutRecord, "undoes" | "waves" | "skipped">[],
): Map<string, Set<string>> {
  const undone = new Map<string, Set<string>>();
  for (const record of records) {
    if (record.undoes === undefined) continue;
    const hosts = undone.get(record.undoes) ?? new Set<string>();
    for (const entry of rolloutEntries(record))
      if (UNDO_DONE.has(entry.state)) hosts.add(entry.host);
    undone.set(record.undoes, hosts);
  }
  return undone;
}

/** The states of a host a rollout activated something on (or failed on: see mayHaveChanged). */
const ACTIVATED_STATES: ReadonlySet<RolloutHostState> = new Set([
  "activating",
  "health",
  "baking",
  "confirmed",
  "failed",
]);

/**
 * Steps a host fails in before anything of it changes (its store aside). `waiting`: an agent
 * host whose agent had not taken the release when the deploy gave up on it (offline, paused,
 * interrupted); the rollout's rollback release then withdraws it, so that the host stays on,
 * or goes back to, what it ran.
 */
const BEFORE_ANY_CHANGE: ReadonlySet<string> = new Set(["connect", "waiting", "copy", "realise"]);

/**
 * Whether a rollout may have changed what `entry`'s host runs: it activated something there,
 * or failed once it could have (a failure to connect, copy or realise changed nothing).
 */
export function mayHaveChanged(entry: Pick<RolloutHost, "state" | "phase">): boolean {
  if (entry.state === "failed") return !failedBeforeAnyChange(entry.phase);
  return ACTIVATED_STATES.has(entry.state);
}

/**
 * Whether a failure in `phase` left the host as it was (its store aside): it failed to connect,
 * copy or realise, or its agent never took the release. Such a host did not get the rollout's system and still runs what it ran:
 * it is behind that rollout, not failed (status/behind.ts).
 */
export function failedBeforeAnyChange(phase: string | null): boolean {
  return phase !== null && BEFORE_ANY_CHANGE.has(phase);
}

/** The id a rollout record's key ends with, or undefined for a key that is not one. */
export function rolloutIdOfKey(key: string): string | undefined {
  return isRolloutKey(key) ? key.slice(key.lastIndexOf("-") + 1, -".json".length) : undefined;
}

function object(value: unknown, source: string, where: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw malformed(source, `${where} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

function oneOf<T extends string>(
  value: unknown,
  allowed: readonly T[],
  source: string,
  key: string,
): T {
  if (!(allowed as readonly unknown[]).includes(value)) {
    throw malformed(source, `"${key}" must be one of ${allowed.join(", ")}`);
  }
  return value as T;
}

function date(value: unknown, source: string, key: string): string {
  if (typeof value !== "string" || value.length > 40 || Number.isNaN(Date.parse(value))) {
    throw malformed(source, `"${key}" is not a date`);
  }
  return value;
}

function clip(text: string): string {
  return clipped(text, MAX_MESSAGE);
}

function malformed(source: string, what: string): InputError {
  return new InputError("rollout-malformed", `${source}: ${what}`);
}
