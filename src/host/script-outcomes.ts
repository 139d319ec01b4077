// activate.sh's `status`, `rollback`, `prune` and `check` results as the data every mode reports:
// one reading of the script's JSON for ssh, ssm and the agent.

import { parseStorePath, type StorePath } from "../nix/store-path.js";
import { type PruneReport, readPruneReport } from "../status/prune-report.js";
import { refusedHostKey } from "../util/ssh-words.js";
import {
  type ActivationInProgress,
  type ActivationResult,
  type Answer,
  answerOf,
  type BootState,
  type FailedSystem,
  type Generation,
  type HealthCommand,
  healthSeconds,
  type PinnedTrust,
  type RebootState,
  type ScriptCommand,
} from "./activation.js";
import type { ScriptRun } from "./session-request.js";

/** A status record standing in for a host's answer (a plan that may not ask the host). */
export interface StoredAnswer {
  /** When the record was written (ISO 8601). */
  readonly at: string;
  /** Why the host was not asked, or did not answer. */
  readonly why: string;
}

export type HostStatus =
  | {
      readonly reachable: true;
      readonly current: string | undefined;
      /** The system the host booted (NixOS's /run/booted-system); undefined: none. */
      readonly booted?: string | undefined;
      /** What the system profile points at: the system the host boots next. */
      readonly profile: string | undefined;
      readonly generation: number | undefined;
      readonly generations: readonly Generation[];
      readonly pending: string | undefined;
      /** An activation holding the host's lock, if one does. */
      readonly activation?: ActivationInProgress | undefined;
      /** The system it runs failed there, and it could not go back. */
      readonly failed?: FailedSystem | undefined;
      /** What a reboot would load (kernel, initrd, modules); absent without a booted system. */
      readonly reboot?: RebootState | undefined;
      /** This boot: its id, its assessment (boot counting), a reboot awaiting its verdict. */
      readonly boot?: BootState | undefined;
      /**
       * Of the store paths the host was asked about, those its store lacks; undefined when it
       * was not asked, could not tell, or answered with a path it was not asked about.
       */
      readonly missing?: readonly StorePath[] | undefined;
      /** The sha256 of the installed secrets' manifest; undefined from an older script. */
      readonly secrets?: string | undefined;
      /**
       * The host answered through its installed nixship-activate, with the trust it pins (its
       * keys' names, its substituters); null: through the piped script, with the caller's
       * trust; undefined from an older script, or not asked (a stored record).
       */
      readonly pinned?: PinnedTrust | null | undefined;
      /** Whether the host has nixship-activate installed (/run/current-system/sw/bin). */
      readonly pinnedActivator?: boolean | undefined;
      /** false: nothing ever came from the host (an agent that has not reported yet). */
      readonly reported?: boolean;
      /** Not the host's answer: its status record, when it was written and why it stands in. */
      readonly stored?: StoredAnswer;
    }
  | {
      readonly reachable: false;
      readonly error: string;
      /** ssh refused the host's key (changed, or unknown): no outage, maybe an attack. */
      readonly hostKey?: true;
      /** The host answered, but not with a status (ScriptRun.unreadable): reached, not read. */
      readonly answerUnreadable?: true;
      /**
       * What the host last said it runs, where its mode keeps a word of it (a paused or offline
       * agent's record): what a rollout that skips it leaves it on, as far as anyone knows.
       */
      readonly lastKnown?: string;
    };

export type RollbackOutcome =
  | {
      readonly status: "rolled-back";
      /** The generation it went back to; null when the host did not say. */
      readonly generation: number | null;
      readonly path: string;
    }
  | { readonly status: "failed"; readonly message: string };

/** How a host's command checks went when run again (`check`, during a bake). */
export type CheckOutcome =
  /** `notRepeated`: the host's script cannot run them again (why), so only activation did. */
  | { readonly ok: true; readonly notRepeated?: string }
  /** `run`: the command check that failed; absent when something else did (failed units). */
  | { readonly ok: false; readonly message: string; readonly run?: string };

/**
 * The `check` command of a request's command checks, with the options its activation gives them
 * (each retried until its timeout, or run once); undefined when it has none.
 */
export function checkCommand(checks: readonly HealthCommand[]): ScriptCommand | undefined {
  return checks.length === 0 ? undefined : { verb: "check", checks };
}

/** Seconds a `check` of these options may take on the host, beyond which nobody waits. */
export function checkDeadline(command: ScriptCommand): number {
  return command.verb === "check" ? healthSeconds(command.checks) + 60 : 60;
}

/** A `check` run as its outcome; no result is a failure, saying why. */
export function checkOutcome(run: ScriptRun): CheckOutcome {
  const r = run.result;
  if (r === undefined) return { ok: false, message: run.failure || `exit ${run.code}` };
  // A host that runs its own installed activate.sh (pinned trust) from before `check`.
  if ("result" in r && r.result === "usage" && /unknown command 'check'/.test(resultMessage(r))) {
    return {
      ok: true,
      notRepeated:
        "the activate.sh this host runs (its own installed copy) has no check command: its command checks ran at activation only; update nixship on it to have them repeated",
    };
  }
  const checked = answerOf(r, "check");
  if (checked === undefined) return { ok: false, message: resultMessage(r) };
  if (checked.ok) return { ok: true };
  return {
    ok: false,
    message: checked.message ?? "the checks failed",
    ...(checked.check ? { run: checked.check } : {}),
  };
}

/** The message a result carries, or what stands in for one. */
export function resultMessage(result: ActivationResult): string {
  if ("message" in result && result.message) return result.message;
  return "result" in result ? `result ${result.result}` : "no message";
}

/**
 * A `status` run as the host's state; no status result means unreachable, and why. `asked`:
 * the paths of `status --check-paths`.
 */
export function hostStatus(run: ScriptRun, asked: readonly StorePath[] = []): HostStatus {
  const r = run.result;
  if (r === undefined) {
    return {
      reachable: false,
      error: run.failure,
      ...(refusedHostKey(run.failure) ? { hostKey: true as const } : {}),
      ...(run.unreadable ? { answerUnreadable: true as const } : {}),
    };
  }
  const status = answerOf(r, "status");
  // A result of another command than asked: it answered, not with a status.
  if (status === undefined) {
    return { reachable: false, error: resultMessage(r), answerUnreadable: true };
  }
  return statusOf(status, asked);
}

function statusOf(r: Answer<"status">, asked: readonly StorePath[]): HostStatus {
  return {
    reachable: true,
    current: r.current ?? undefined,
    ...(r.booted ? { booted: r.booted } : {}),
    profile: r.profile ?? undefined,
    generation: r.generation ?? undefined,
    generations: r.generations,
    pending: r.pending ?? undefined,
    ...(r.activation ? { activation: r.activation } : {}),
    ...(r.failed ? { failed: r.failed } : {}),
    ...(r.reboot ? { reboot: r.reboot } : {}),
    ...(r.boot ? { boot: r.boot } : {}),
    ...(asked.length > 0 ? { missing: missingPaths(r.missing, asked) } : {}),
    ...(r.secrets !== undefined ? { secrets: r.secrets } : {}),
    ...(r.pinned !== undefined ? { pinned: r.pinned } : {}),
    ...(r.pinnedActivator !== undefined ? { pinnedActivator: r.pinnedActivator } : {}),
  };
}

/** The asked paths whose hash parts the host listed; undefined for anything else it said. */
function missingPaths(hashes: unknown, asked: readonly StorePath[]): StorePath[] | undefined {
  if (!Array.isArray(hashes)) return undefined;
  const byHash = new Map(asked.map((path) => [parseStorePath(path).hashPart, path]));
  const missing = new Set<StorePath>();
  for (const hash of hashes) {
    const path = typeof hash === "string" ? byHash.get(hash) : undefined;
    if (path === undefined) return undefined;
    missing.add(path);
  }
  return [...missing];
}

/** A `rollback` run as its outcome. */
export function rollbackOutcome(run: ScriptRun): RollbackOutcome {
  const r = run.result;
  const back = answerOf(r, "rollback");
  if (back?.ok) {
    return { status: "rolled-back", generation: back.generation ?? null, path: back.path ?? "" };
  }
  return { status: "failed", message: r ? resultMessage(r) : run.failure };
}

/** A `prune` run as the host's report; no usable result is a failed prune, and why. */
export function pruneOutcome(run: ScriptRun): PruneReport {
  const r = run.result;
  if (r === undefined) return { ok: false, message: run.failure || `exit ${run.code}` };
  const pruned = answerOf(r, "prune");
  if (pruned === undefined) return { ok: false, message: resultMessage(r) };
  const report = readPruneReport(pruned);
  return typeof report === "string"
    ? { ok: false, message: `the host's prune result is malformed: ${report}` }
    : report;
}
