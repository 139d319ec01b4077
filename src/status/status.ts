// The status model: what each host last reported, as one small JSON object per host, and the
// key layout that lets a deployer watch a rollout over many hosts with a few LIST calls.
//
//   status/hosts/<host>.json                         the host's latest record (any delivery mode)
//   status/releases/<channel>/<seq>/<host>/<state>   one marker per state a host reached while
//                                                    applying release <seq>; the body is the record
//
// A LIST of `status/releases/<channel>/<seq>/` returns up to 1,000 keys per call, and the keys
// alone say which host is applying, succeeded, failed or refused the release: the deployer's
// cost per poll grows with hosts/1000. It reads a body only to learn why a host failed.
import { InputError } from "../errors.js";
import { DELIVERY_MODES, type DeliveryMode, NAME_PATTERN } from "../fleet/fleet.js";
import { type HostPhase, isHostPhase } from "../fleet/phase.js";
import { isStorePath } from "../nix/store-path.js";
import { clipped, quoted, withoutControls } from "../util/text.js";
import { type RebootState, readRebootState } from "./boot.js";
import { type DeltaReport, readDeltaReport } from "./delta-report.js";
import { type PruneReport, readPruneReport } from "./prune-report.js";
import { recordObject } from "./record-json.js";
import { isRolloutKey } from "./rollout.js";

/** Where a host is in applying a release (or a push deploy). */
export const STATUS_STATES = ["applying", "success", "failed", "rejected"] as const;
export type StatusState = (typeof STATUS_STATES)[number];

/** The step a record names: a deploy's phases, or "verify" for a release an agent refused. */
export type StatusPhase = HostPhase | "verify";

export interface StatusRecord {
  readonly version: 1;
  readonly host: string;
  readonly mode: DeliveryMode;
  /** The release channel and sequence number (agent mode); null for push deploys. */
  readonly channel: string | null;
  readonly seq: number | null;
  /** The system the host was asked to run. */
  readonly desired: string | null;
  /** The system it runs now. */
  readonly current: string | null;
  readonly generation: number | null;
  /**
   * The system the host ran before it started on `desired` (agent records; absent in records
   * of deploys and of agents older than this field).
   */
  readonly previous?: string | null;
  /**
   * The digest of the secrets the host has installed (activate.sh's manifest; agent records,
   * absent when the host did not say).
   */
  readonly secrets?: string | null;
  /**
   * What a reboot of the host would load (agent records; activate.sh's status `reboot`): the
   * deployer's plan decides `--reboot auto` from it. Absent when the host did not say.
   */
  readonly reboot?: RebootState | null;
  /**
   * What the host pruned after this activation (policy.keepGenerations; agent records, absent
   * when it did not prune).
   */
  readonly pruned?: PruneReport | null;
  /**
   * What the host fetched by delta to get the system it runs (activate --delta-tool's report,
   * docs/deltas.md); carried while it runs that system. Absent: it fetched without deltas, or
   * did not say.
   */
  readonly delta?: DeltaReport;
  /**
   * The store path of the nixship package the agent runs (agent records; absent when it does
   * not run from the store): a cache collection keeps it, so a host can realise it again.
   */
  readonly agent?: string | null;
  /**
   * What put the system the host runs there: the rollout record of the deploy, the
   * release the agent applied, or a rollback. Absent: not known (records older than it).
   */
  readonly origin?: RecordOrigin;
  readonly state: StatusState;
  /** The step the host was at, or failed in (null: none). */
  readonly phase: StatusPhase | null;
  /** Why the host failed or refused; null otherwise. */
  readonly error: string | null;
  /**
   * A refusal (state rejected): the digest (`sha256-BASE64`, as releases name each other) of the
   * channel document the agent refused, so that a refusal of a document that only claimed a
   * release's number is not taken for a refusal of that release. Absent: older agents, or
   * another state.
   */
  readonly refused?: string;
  /**
   * "boot": written by a boot deploy (--action boot) that set `desired` as what the host boots
   * next, while it runs `current` until it reboots. "dry-activate": an agent's report of a dry
   * run of `desired`, which asked nothing of the host: it is written on its release's marker
   * alone (for the deploy that watches it), never as the host's record. Absent for every other
   * write.
   */
  readonly action?: "boot" | "dry-activate";
  /**
   * An agent's report on a release that only carried the host's entry: a refresh (the channel's
   * release signed again), which asked nothing new of it (status/behind.ts). Absent: any other
   * release, or an older agent.
   */
  readonly carried?: true;
  /**
   * After a failure: whether the host went back to the system it ran before (null when it did
   * not fail, or a record written before nixship recorded it).
   */
  readonly rolledBack: boolean | null;
  /**
   * The newest lines of the host's activation log (agent records, while applying and after):
   * what a deploy shows of a host it cannot watch. Absent: none kept.
   */
  readonly log?: HostLog;
  /** When the host started on `desired`. */
  readonly startedAt: string;
  readonly updatedAt: string;
}

/** What put a host's current system there; a reader looks up who and from what source. */
export type RecordOrigin =
  /** A deploy: its rollout record (status/rollouts/…), which names who and from what. */
  | { readonly kind: "rollout"; readonly key: string }
  /** An agent applied this release: its origin document (release-origin.ts) names them. */
  | { readonly kind: "release"; readonly channel: string; readonly seq: number }
  /** `nixship rollback` of a push host: who ran it (a rollback has no source of its own). */
  | { readonly kind: "rollback"; readonly by: string }
  /**
   * Its writer does not know (an agent that lost its state, a system moved unexplained). A
   * record of a writer older than origins has none at all, and a reader may tell it from the
   * record's own release; this one it may not.
   */
  | { readonly kind: "unknown" };

/** An origin that names what put the system there. */
export type KnownOrigin = Exclude<RecordOrigin, { readonly kind: "unknown" }>;

/** The tail of a host's log: at most LOG_LINES lines of at most LOG_LINE_LENGTH characters. */
export interface HostLog {
  /** The number of the first line here (lines counted from 0 since the apply began). */
  readonly from: number;
  readonly lines: readonly string[];
}

export const LOG_LINES = 20;
export const LOG_LINE_LENGTH = 500;

/** A host log's newest lines (LOG_LINES), each cut and without control characters. */
export class LogTail {
  #lines: string[] = [];
  #count = 0;

  add(line: string): void {
    this.#lines.push(withoutControls(line).slice(0, LOG_LINE_LENGTH));
    if (this.#lines.length > LOG_LINES) this.#lines.shift();
    this.#count++;
  }

  /** Lines added so far. */
  get count(): number {
    return this.#count;
  }

  get log(): HostLog {
    return { from: this.#count - this.#lines.length, lines: [...this.#lines] };
  }
}

/** A host's outcome, as deliveries report it. */
export type HostOutcome =
  | { readonly status: "activated" }
  | {
      readonly status: "failed";
      readonly phase: HostPhase;
      readonly message: string;
      readonly rolledBack: boolean;
    };

/** The fields of a record that say how a host's deploy ended: one place for every mode. */
export function outcomeFields(
  outcome: HostOutcome,
): Pick<StatusRecord, "state" | "phase" | "error" | "rolledBack"> {
  return outcome.status === "activated"
    ? { state: "success", phase: null, error: null, rolledBack: null }
    : {
        state: "failed",
        phase: outcome.phase,
        error: outcome.message,
        rolledBack: outcome.rolledBack,
      };
}

/** The fields of a record while the host applies: it starts by realising the system. */
export const APPLYING = {
  state: "applying",
  phase: "realise",
  error: null,
  rolledBack: null,
} as const satisfies Pick<StatusRecord, "state" | "phase" | "error" | "rolledBack">;

export function isFinalState(state: StatusState): boolean {
  return state !== "applying";
}

export function hostStatusKey(host: string): string {
  return `status/hosts/${host}.json`;
}

export const HOST_STATUS_PREFIX = "status/hosts/";

export function progressPrefix(channel: string, seq: number): string {
  return `status/releases/${channel}/${seq}/`;
}

export function progressKey(
  channel: string,
  seq: number,
  host: string,
  state: StatusState,
): string {
  return `${progressPrefix(channel, seq)}${host}/${state}`;
}

/** The host and state a progress key names, or undefined for a key that is not one. */
export function parseProgressKey(
  prefix: string,
  key: string,
): { readonly host: string; readonly state: StatusState } | undefined {
  if (!key.startsWith(prefix)) return undefined;
  const [host, state, ...rest] = key.slice(prefix.length).split("/");
  if (rest.length > 0 || host === undefined || !NAME_PATTERN.test(host)) return undefined;
  if (!(STATUS_STATES as readonly string[]).includes(state ?? "")) return undefined;
  return { host, state: state as StatusState };
}

export interface ProgressEntry {
  readonly state: StatusState;
  /** The marker holding the record for that state. */
  readonly key: string;
  readonly at: Date;
  /**
   * Set on a success when the host also left a failure marker on the release: which one counts
   * is the newer's word, so a reader that verifies reports judges both (believed-history.ts).
   */
  readonly failedToo?: true;
}

/**
 * Each host's state from a listing of one release's markers: a final state beats applying, and
 * of two final states (a host that applied the release again after a restart) the newer wins.
 */
export function summariseProgress(
  prefix: string,
  objects: readonly { readonly key: string; readonly lastModified: Date }[],
): Map<string, ProgressEntry> {
  const hosts = new Map<string, ProgressEntry>();
  const failed = new Set<string>();
  for (const o of objects) {
    const parsed = parseProgressKey(prefix, o.key);
    if (parsed === undefined) continue;
    if (parsed.state === "failed") failed.add(parsed.host);
    const entry = { state: parsed.state, key: o.key, at: o.lastModified };
    const known = hosts.get(parsed.host);
    if (known === undefined || beats(entry, known)) hosts.set(parsed.host, entry);
  }
  for (const [host, entry] of hosts) {
    if (entry.state === "success" && failed.has(host))
      hosts.set(host, { ...entry, failedToo: true });
  }
  return hosts;
}

function beats(a: ProgressEntry, b: ProgressEntry): boolean {
  const finalA = isFinalState(a.state);
  const finalB = isFinalState(b.state);
  if (finalA !== finalB) return finalA;
  return a.at.getTime() >= b.at.getTime();
}

/** What a status record is made of, in every mode. */
export interface RecordParts {
  readonly host: string;
  readonly mode: DeliveryMode;
  /** The release acted on (agents); null for ssh and ssm deploys, and a refused release. */
  readonly release: { readonly channel: string; readonly seq: number } | null;
  readonly desired: string | null;
  /** What the host runs, as it said; undefined: it did not say. */
  readonly system?:
    | {
        readonly current: string | null;
        readonly generation: number | null;
        readonly secrets?: string | null | undefined;
        readonly reboot?: RebootState | null | undefined;
      }
    | undefined;
  readonly previous?: string | null;
  /** The agent's own package (agents running from the store). */
  readonly agent?: string | undefined;
  /** What put `system` there; null: not known; undefined: see nextRecord. */
  readonly origin?: RecordOrigin | null | undefined;
  /** How the apply the record describes went, and its log (agents). */
  readonly what: Pick<
    StatusRecord,
    | "state"
    | "phase"
    | "error"
    | "rolledBack"
    | "pruned"
    | "delta"
    | "log"
    | "refused"
    | "action"
    | "carried"
  >;
  readonly startedAt: string;
  readonly updatedAt: string;
}

/** The longest error a status record may carry. */
export const MAX_ERROR = 8192;

/**
 * The one builder of a status record (deploys, agents' reports and refusals). Its error is
 * clipped to what a reader takes (MAX_ERROR, no control character): a message quoting what a
 * store's writer chose (a refused release's key name, its unknown keys) never makes a record
 * that its own reader, or the agent's state file, refuses.
 */
export function statusRecord(p: RecordParts): StatusRecord {
  const { system } = p;
  return {
    version: 1,
    host: p.host,
    mode: p.mode,
    channel: p.release?.channel ?? null,
    seq: p.release?.seq ?? null,
    desired: p.desired,
    current: system?.current ?? null,
    generation: system?.generation ?? null,
    ...(p.previous === undefined ? {} : { previous: p.previous }),
    ...(system?.secrets === undefined ? {} : { secrets: system.secrets }),
    ...(system?.reboot === undefined ? {} : { reboot: system.reboot }),
    ...(p.agent === undefined ? {} : { agent: p.agent }),
    origin: p.origin ?? { kind: "unknown" },
    ...p.what,
    error: typeof p.what.error === "string" ? clipped(p.what.error, MAX_ERROR) : p.what.error,
    startedAt: p.startedAt,
    updatedAt: p.updatedAt,
  };
}

export function formatStatusRecord(record: StatusRecord): Uint8Array {
  return Buffer.from(`${JSON.stringify(record)}\n`);
}

/** A release's digest as a refusal names it: SRI sha256. */
const RELEASE_DIGEST = /^sha256-[A-Za-z0-9+/]{43}=$/;

/** Parses a status object; `source` names it in errors. */
export function parseStatusRecord(bytes: Uint8Array, source: string): StatusRecord {
  const r = recordObject(bytes, source, "status-malformed");
  const text = (key: string, nullable: boolean): void => {
    const v = r[key];
    if (!(typeof v === "string" || (nullable && v === null))) {
      throw malformed(source, `"${key}" must be a string${nullable ? " or null" : ""}`);
    }
  };
  const count = (key: string): void => {
    const v = r[key];
    if (!(v === null || (Number.isSafeInteger(v) && (v as number) >= 0))) {
      throw malformed(source, `"${key}" must be a whole number or null`);
    }
  };
  if (r.version !== 1) throw malformed(source, `unsupported version ${quoted(r.version)}`);
  text("host", false);
  if (!NAME_PATTERN.test(r.host as string))
    throw malformed(source, `bad host name ${quoted(r.host)}`);
  if (!(DELIVERY_MODES as readonly unknown[]).includes(r.mode)) {
    throw malformed(source, `"mode" must be one of ${DELIVERY_MODES.join(", ")}`);
  }
  if (!(STATUS_STATES as readonly unknown[]).includes(r.state)) {
    throw malformed(source, `"state" must be one of ${STATUS_STATES.join(", ")}`);
  }
  for (const key of ["channel", "desired", "current", "phase", "error"]) text(key, true);
  if (r.previous !== undefined) text("previous", true);
  if (r.secrets !== undefined) text("secrets", true);
  if (r.agent !== undefined) text("agent", true);
  const reboot = r.reboot === undefined || r.reboot === null ? r.reboot : readRebootState(r.reboot);
  if (typeof reboot === "string") throw malformed(source, `"reboot": ${reboot}`);
  const pruned = r.pruned === undefined || r.pruned === null ? r.pruned : readPruneReport(r.pruned);
  if (typeof pruned === "string") throw malformed(source, `"pruned": ${pruned}`);
  const delta = r.delta === undefined ? undefined : readDeltaReport(r.delta);
  if (typeof delta === "string") throw malformed(source, `"delta": ${delta}`);
  for (const key of ["startedAt", "updatedAt"]) {
    text(key, false);
    if ((r[key] as string).length > 40 || Number.isNaN(Date.parse(r[key] as string))) {
      throw malformed(source, `"${key}" is not a date: ${quoted(r[key])}`);
    }
  }
  for (const key of ["desired", "current", "previous", "agent"]) {
    const v = r[key];
    if (typeof v === "string" && !isStorePath(v)) {
      throw malformed(source, `"${key}" is not a store path: ${quoted(v)}`);
    }
  }
  if (typeof r.error === "string" && r.error.length > MAX_ERROR) {
    throw malformed(source, `"error" is longer than ${MAX_ERROR} characters`);
  }
  count("seq");
  count("generation");
  const origin = r.origin === undefined ? undefined : readOrigin(r.origin);
  if (typeof origin === "string") throw malformed(source, `"origin": ${origin}`);
  if (
    r.refused !== undefined &&
    !(typeof r.refused === "string" && RELEASE_DIGEST.test(r.refused))
  ) {
    throw malformed(source, `"refused" must be a release digest (sha256-BASE64)`);
  }
  const log = r.log === undefined ? undefined : readLog(r.log);
  if (typeof log === "string") throw malformed(source, `"log": ${log}`);
  if (!(r.rolledBack === undefined || r.rolledBack === null || typeof r.rolledBack === "boolean")) {
    throw malformed(source, `"rolledBack" must be true, false or null`);
  }
  // A phase this version does not know (an older agent's "activate") reads as none.
  const phase =
    typeof r.phase === "string" && (isHostPhase(r.phase) || r.phase === "verify")
      ? (r.phase as StatusPhase)
      : null;
  return {
    version: 1,
    host: r.host as string,
    mode: r.mode as DeliveryMode,
    channel: typeof r.channel === "string" ? withoutControls(r.channel) : null,
    seq: r.seq as number | null,
    desired: r.desired as string | null,
    current: r.current as string | null,
    generation: r.generation as number | null,
    ...(r.previous === undefined ? {} : { previous: r.previous as string | null }),
    ...(r.secrets === undefined ? {} : { secrets: r.secrets as string | null }),
    ...(reboot === undefined ? {} : { reboot }),
    ...(pruned === undefined ? {} : { pruned }),
    ...(delta === undefined ? {} : { delta }),
    ...(r.agent === undefined ? {} : { agent: r.agent as string | null }),
    ...(origin === undefined ? {} : { origin }),
    state: r.state as StatusState,
    phase,
    // Shown on terminals: what a host (or whoever wrote the store) put there, controls removed.
    error: typeof r.error === "string" ? withoutControls(r.error) : null,
    ...(r.refused === undefined ? {} : { refused: r.refused as string }),
    // Another word (a newer nixship's) is none this version knows.
    ...(r.action === "boot" || r.action === "dry-activate" ? { action: r.action } : {}),
    ...(r.carried === true ? { carried: true as const } : {}),
    rolledBack: (r.rolledBack as boolean | null | undefined) ?? null,
    ...(log === undefined ? {} : { log }),
    startedAt: r.startedAt as string,
    updatedAt: r.updatedAt as string,
  };
}

/**
 * A record's origin, checked; or what is wrong with it. A kind this version does not know (a
 * newer nixship's) reads as none, so that a newer writer does not make the record unreadable.
 */
function readOrigin(value: unknown): RecordOrigin | string | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return "must be an object";
  }
  const o = value as Record<string, unknown>;
  switch (o.kind) {
    case "rollout":
      return typeof o.key === "string" && isRolloutKey(o.key)
        ? { kind: "rollout", key: o.key }
        : `"key" is not a rollout record's key`;
    case "release":
      if (typeof o.channel !== "string" || !NAME_PATTERN.test(o.channel)) {
        return `"channel" is not a channel name`;
      }
      if (!Number.isSafeInteger(o.seq) || (o.seq as number) < 1) {
        return `"seq" must be a whole number from 1`;
      }
      return { kind: "release", channel: o.channel, seq: o.seq as number };
    case "rollback":
      return typeof o.by === "string"
        ? { kind: "rollback", by: withoutControls(o.by).slice(0, 300) }
        : `"by" must be a string`;
    case "unknown":
      return { kind: "unknown" };
    default:
      return typeof o.kind === "string" ? undefined : `"kind" must be a string`;
  }
}

/** A record's log, checked and with control characters removed; or what is wrong with it. */
function readLog(value: unknown): HostLog | string {
  if (typeof value !== "object" || value === null) return "must be an object";
  const { from, lines } = value as Record<string, unknown>;
  if (!Number.isSafeInteger(from) || (from as number) < 0) return '"from" must be a whole number';
  if (!Array.isArray(lines) || lines.length > LOG_LINES) {
    return `"lines" must be a list of at most ${LOG_LINES} lines`;
  }
  if (!lines.every((l) => typeof l === "string" && l.length <= LOG_LINE_LENGTH)) {
    return `each line must be text of at most ${LOG_LINE_LENGTH} characters`;
  }
  return { from: from as number, lines: lines.map((l: string) => withoutControls(l)) };
}

/** A value a host wrote, as JSON cut to a length an error message can carry. */

function malformed(source: string, what: string): InputError {
  return new InputError("status-malformed", `${source}: ${what}`);
}
