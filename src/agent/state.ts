// The agent's memory between polls and across restarts: a small JSON file, replaced atomically
// (write a temp file, fsync, rename, fsync the directory), so a crash leaves the old or the new
// state, never half of one. Pausing is a separate flag file, so `nixship agent pause` never
// races the running agent's writes.
import { rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { InputError } from "../errors.js";
import type { ReleaseHostPolicy } from "../release/release.js";
import { MAX_ERROR, parseStatusRecord, type StatusRecord } from "../status/status.js";
import { writeFileAtomically } from "../util/atomic-file.js";
import { readFileBounded } from "../util/bounded-file.js";
import { clipped, jsonErrorText } from "../util/text.js";

export interface AgentState {
  readonly version: 1;
  /** The channel object's ETag when last read: the next poll is a conditional GET on it. */
  readonly etag: string | null;
  /**
   * The keys the agent trusted when it read the channel at `etag` (trustDigest): an agent that
   * starts with other keys reads the channel afresh, so that what it refused, or took, under
   * those is judged again. Absent in state files of older agents (read afresh too).
   */
  readonly etagTrust?: string | null;
  /** The newest release this host acted on (applied, failed, or had no entry in). */
  readonly lastSeq: number | null;
  readonly lastDigest: string | null;
  /** How that release ended here. */
  readonly lastResult: "success" | "failed" | "no-entry" | null;
  /**
   * The boot in which the agent last brought its record up to date (activate.sh's boot id):
   * in another boot, its first poll writes the record again with what this boot runs.
   */
  readonly bootId?: string | null;
  /** A status record not yet stored (the store failed): written again before anything else. */
  readonly unreported: StatusRecord | null;
  /**
   * The last status record this agent stored: its next record is folded from it
   * (status/next-record.ts), so that nothing it knew of the host is dropped. Absent in state
   * files of older agents.
   */
  readonly reported?: StatusRecord | null;
  /**
   * The channel's document the agent refused last, while it is the newest the agent read: the
   * next release it acts on (applies, fails, finds no entry in, or finds to be its last again)
   * clears it. Absent in state files of older agents.
   */
  readonly refused?: RefusedDocument | null;
  /**
   * The record the first of a run of refusals replaced: stored again when the channel comes
   * back to the release it stood for (a refused document put back), so that a short-lived
   * write to the channel does not leave the host `rejected` until the next release.
   */
  readonly beforeRefusal?: StatusRecord | null;
  /**
   * Set when the agent undid a judged boot and its host reboots into the previous system: no
   * release is applied in the boot it reboots from (it would race the reboot), until the host
   * runs another boot or `timeout` seconds passed since `since`. Absent in state files of
   * older agents.
   */
  readonly rebootingBack?: RebootingBack | null;
  /**
   * An activation found interrupted at start-up (`applying` then), kept until an apply
   * concludes: the host may run its system unchecked, so whichever release names that system
   * next applies it in full, and no release older than it (nor another of its number) is taken,
   * however often the agent restarts meanwhile. Absent in state files of older agents.
   */
  readonly interrupted?: InterruptedApply | null;
  /** Set while an activation runs; found set at start-up, it was interrupted. */
  readonly applying: {
    readonly seq: number;
    readonly digest: string;
    readonly path: string;
    readonly startedAt: string;
    /** Set once the boot activation of a reboot went through: judged after the boot. */
    readonly reboot?: PendingReboot;
  } | null;
}

/** The release an interrupted activation was applying. */
export interface InterruptedApply {
  readonly seq: number;
  readonly digest: string;
  readonly path: string;
}

/** A channel document the agent refused (its status record in the store says the same). */
export interface RefusedDocument {
  /** The release it claimed to be; null when it named none the agent could read. */
  readonly seq: number | null;
  /** Why it was refused. */
  readonly reason: string;
  /** When (ISO-8601). */
  readonly at: string;
}

/** The reboot into the previous system a judged boot's undoing began. */
export interface RebootingBack {
  /** The boot the host reboots from. */
  readonly bootId: string;
  /** When the reboot began (ISO-8601). */
  readonly since: string;
  /** Seconds it may take (the release's reboot timeout). */
  readonly timeout: number;
}

/** A reboot the agent began, for the agent started after the boot to judge. */
export interface PendingReboot {
  /** The token activate.sh recorded the pending boot under. */
  readonly token: string;
  /** The boot the activation answered from: the agent judges once it runs in another. */
  readonly bootId: string;
  /** When the reboot began (ISO-8601). */
  readonly since: string;
  readonly timeout: number;
  readonly rollback: boolean;
  readonly generation: number | null;
  readonly previous: string | null;
  /** The checks to judge the boot with (the entry's own, else the release's). */
  readonly checks: ReleaseHostPolicy;
}

export const EMPTY_STATE: AgentState = {
  version: 1,
  etag: null,
  lastSeq: null,
  lastDigest: null,
  lastResult: null,
  unreported: null,
  applying: null,
};

const STATE_FILE = "state.json";
const PAUSE_FILE = "paused";

/** The largest state file read: a few status records and a pending reboot's checks. */
export const STATE_LIMIT = 4 * 1024 * 1024;

export async function loadState(stateDir: string): Promise<AgentState> {
  const file = join(stateDir, STATE_FILE);
  const bytes = await readFileBounded(file, STATE_LIMIT, (size) =>
    badState(file, `${size} bytes, larger than the ${STATE_LIMIT} an agent writes`),
  );
  if (bytes === undefined) return EMPTY_STATE;
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString("utf8"));
  } catch (err) {
    throw badState(file, `not JSON (${jsonErrorText(err)})`);
  }
  const v = value as Record<string, unknown> | null;
  if (typeof v !== "object" || v === null || Array.isArray(v) || v.version !== 1) {
    throw badState(file, "not an agent state of version 1");
  }
  healLongErrors(v);
  const wrong = wrongField(v, file);
  if (wrong !== undefined) throw badState(file, wrong);
  return { ...EMPTY_STATE, ...(v as Partial<AgentState>) };
}

/**
 * Clips, in place, the errors of the records `v` keeps to what a record may carry: an agent
 * before records were clipped (statusRecord) kept a refusal quoting a planted document whole,
 * which its reader then refused, and it could not start again. Such a state file heals.
 */
function healLongErrors(v: Record<string, unknown>): void {
  for (const key of ["unreported", "reported", "beforeRefusal"]) {
    const record = v[key];
    if (typeof record !== "object" || record === null || Array.isArray(record)) continue;
    const r = record as Record<string, unknown>;
    if (typeof r.error === "string" && r.error.length > MAX_ERROR) {
      r.error = clipped(r.error, MAX_ERROR);
    }
  }
}

/** What is wrong with a field of state `v` (read from `file`), or undefined when none is. */
function wrongField(v: Record<string, unknown>, file: string): string | undefined {
  const nullable = (key: string, ok: (x: unknown) => boolean, what: string) =>
    v[key] === undefined || v[key] === null || ok(v[key])
      ? undefined
      : `"${key}" must be ${what} or null`;
  const text = (x: unknown) => typeof x === "string";
  const count = (x: unknown) => Number.isSafeInteger(x) && (x as number) >= 0;
  const record = (key: string): string | undefined => {
    const x = v[key];
    if (x === undefined || x === null) return undefined;
    try {
      parseStatusRecord(Buffer.from(JSON.stringify(x)), `${file} "${key}"`);
      return undefined;
    } catch (err) {
      return `"${key}" is not a status record (${(err as Error).message})`;
    }
  };
  const applying = (x: unknown) => {
    const a = x as Record<string, unknown>;
    return (
      typeof a === "object" &&
      !Array.isArray(a) &&
      count(a.seq) &&
      text(a.digest) &&
      text(a.path) &&
      text(a.startedAt) &&
      (a.reboot === undefined || (typeof a.reboot === "object" && a.reboot !== null))
    );
  };
  const interrupted = (x: unknown) => {
    const a = x as Record<string, unknown>;
    return (
      typeof a === "object" && !Array.isArray(a) && count(a.seq) && text(a.digest) && text(a.path)
    );
  };
  const rebootingBack = (x: unknown) => {
    const r = x as Record<string, unknown>;
    return (
      typeof r === "object" &&
      !Array.isArray(r) &&
      text(r.bootId) &&
      text(r.since) &&
      count(r.timeout)
    );
  };
  const refused = (x: unknown) => {
    const r = x as Record<string, unknown>;
    return (
      typeof r === "object" &&
      !Array.isArray(r) &&
      (r.seq === null || count(r.seq)) &&
      text(r.reason) &&
      text(r.at)
    );
  };
  return (
    nullable("etag", text, "a string") ??
    nullable("etagTrust", text, "a string") ??
    nullable("lastSeq", count, "a whole number") ??
    nullable("lastDigest", text, "a string") ??
    nullable("lastResult", (x) => RESULTS.includes(x as string), `one of ${RESULTS.join(", ")}`) ??
    nullable("bootId", text, "a string") ??
    nullable("applying", applying, "an activation (seq, digest, path, startedAt)") ??
    nullable("interrupted", interrupted, "an interrupted activation (seq, digest, path)") ??
    nullable("rebootingBack", rebootingBack, "a reboot back (bootId, since, timeout)") ??
    nullable("refused", refused, "a refusal (seq, reason, at)") ??
    record("unreported") ??
    record("reported") ??
    record("beforeRefusal")
  );
}

const RESULTS: readonly string[] = ["success", "failed", "no-entry"];

export async function saveState(stateDir: string, state: AgentState): Promise<void> {
  await writeFileAtomically(
    join(stateDir, STATE_FILE),
    `${JSON.stringify(state, null, 2)}\n`,
    0o600,
  );
}

/** Whether the pause flag is there; a flag that cannot be looked at stops the agent. */
export async function isPaused(stateDir: string): Promise<boolean> {
  const file = join(stateDir, PAUSE_FILE);
  try {
    await stat(file);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return false;
    throw new InputError(
      "bad-agent-state",
      `${file}: cannot tell whether the agent is paused (${code ?? String(err)})`,
      { hint: `the agent's state directory ${stateDir} must be readable by the agent` },
    );
  }
}

export async function setPaused(stateDir: string, paused: boolean): Promise<void> {
  const file = join(stateDir, PAUSE_FILE);
  if (paused) await writeFile(file, `${new Date().toISOString()}\n`);
  else await rm(file, { force: true });
}

function badState(file: string, what: string): InputError {
  return new InputError("bad-agent-state", `${file}: ${what}`, {
    hint: "move the file away to start afresh: the agent then re-applies the channel's release",
  });
}
