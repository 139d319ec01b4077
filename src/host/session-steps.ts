// Steps an activation session takes in more than one flow (a switch, a reboot): the deployer's
// HTTP checks, pruning after a confirmed activation, and a failed outcome.
import type { DeltaReport } from "../status/delta-report.js";
import { describePrune, type PruneReport } from "../status/prune-report.js";
import { interruptReason } from "../util/interrupt-reason.js";
import {
  type ActivateOptions,
  type ActivationResult,
  isRefusal,
  PRUNE_TIMEOUT,
  type ScriptCommand,
} from "./activation.js";
import { httpCheck } from "./http-check.js";
import { pruneOutcome } from "./script-outcomes.js";
import type {
  ActivationSteps,
  ActivationTransport,
  DeployOutcome,
  DeployRequest,
  ScriptRun,
  SessionHooks,
  SessionPhase,
} from "./session-request.js";

/**
 * Seconds beyond the host's own bounds that the driver waits for activate.sh: connection
 * set-up, the rollback switch after a failure, and SSM's delivery.
 */
export const SESSION_MARGIN = 90;
/** Seconds a confirm, abort or rollback may take (activate.sh waits up to its SETTLE_TIME, 80 s, for its watcher). */
export const SETTLE_TIMEOUT = 90;

/** The phases of an activation from the profile's change on: an abort there rolls back. */
const SWITCHED_PHASES: ReadonlySet<string> = new Set(["profile", "switch", "reboot", "health"]);

/**
 * activate gave no answer: abort it (fresh), which rolls back an activation still running.
 * `asked`: the answer of an abort already made for this token (see `neverBegan`).
 */
export async function abortUnanswered(
  transport: ActivationTransport,
  token: string,
  why: string,
  steps: ActivationSteps,
  request: DeployRequest,
  onLog: (line: string) => void,
  hooks: SessionHooks,
  asked?: ScriptRun,
  reached?: SessionPhase,
): Promise<DeployOutcome> {
  hooks.phase("rollback");
  const back = asked ?? (await settleOverNew(transport, { verb: "abort", token }, onLog));
  const r = back.result;
  if (back.code === 0 && r && "command" in r && r.command === "abort") {
    // Stopped before its switch began: the host never left the system it ran.
    const stoppedIn = "stoppedIn" in r ? r.stoppedIn : undefined;
    if (stoppedIn === "realise" || stoppedIn === "secrets") {
      return failed(
        stoppedIn,
        `${why}; stopped in its ${stoppedIn} phase, before any switch`,
        true,
      );
    }
    // Stopped in a later phase (the host's lock names it), else (rolling back after its own
    // failure, or waiting in its confirmation window) the last phase the host said it entered.
    const phase =
      stoppedIn !== undefined && SWITCHED_PHASES.has(stoppedIn)
        ? (stoppedIn as SessionPhase)
        : reached !== undefined && SWITCHED_PHASES.has(reached)
          ? reached
          : "switch";
    const own = stoppedIn === "rollback" && "message" in r && r.message ? ` (${r.message})` : "";
    return failed(
      phase,
      own === ""
        ? `${why}; aborted: back on the previous system`
        : `${why}; it had failed already${own}: back on the previous system`,
      true,
    );
  }
  if (neverBegan(back)) {
    // The activation never began (or ended before it recorded itself): nothing to undo.
    return failed("connect", why, false);
  }
  if (
    r &&
    "command" in r &&
    r.command === "abort" &&
    r.result === "activated" &&
    request.reboot === undefined
  ) {
    // Its answer was lost (a switch that restarted the network), yet it ran to its end with
    // its own checks, and no window waited on the deployer's: the host runs the new system.
    // (A reboot's is judged after the boot, by the reboot session, not here.)
    hooks.log(`${why}; asked after, the host says: ${r.message}`);
    return kept(transport, request, hooks, onLog, {
      generation: r.generation ?? undefined,
      previous: undefined,
    });
  }
  // What ends it on the host: its activation timeout while it switches, then (once switched,
  // awaiting its deploy's word) its confirmation window.
  const switched = reached === "health" || reached === "confirm";
  const timeout = `activate.sh stops it within its ${request.activationTimeout}s activation timeout and goes back`;
  const window = `the host rolls itself back when its ${steps.confirmWindow}s confirmation window closes`;
  const settles =
    steps.confirmWindow === 0
      ? timeout
      : switched
        ? window
        : `${timeout} (once switched, ${window} unconfirmed)`;
  const reason = r && "message" in r ? r.message : back.failure;
  // The deployer stops following it here: where it ends, its own bounds decide (settling).
  return {
    status: "failed",
    phase: "switch",
    message: `${why}; could not abort (${reason}); ${settles}`,
    rolledBack: false,
    settling: true,
  };
}

/**
 * `activate` through the transport: the request's system, substituters, keys, activation
 * timeout and secrets (the bundle in the script's input), with what the flow adds (`how`).
 */
export function activateRequest(
  transport: Pick<ActivationTransport, "activate">,
  request: DeployRequest,
  how: Omit<
    ActivateOptions,
    | "path"
    | "substituters"
    | "trustedKeys"
    | "activationTimeout"
    | "secrets"
    | "deltaTool"
    | "expectCurrent"
  >,
  run: {
    readonly deadline: number;
    readonly onLog: (line: string) => void;
    readonly signal?: AbortSignal | undefined;
  },
): Promise<ScriptRun> {
  return transport.activate(
    {
      ...how,
      path: request.path,
      substituters: request.substituters,
      trustedKeys: request.trustedKeys,
      activationTimeout: request.activationTimeout,
      ...(request.deltaTool === undefined ? {} : { deltaTool: request.deltaTool }),
      ...(request.expect === undefined ? {} : { expectCurrent: request.expect }),
      ...(request.secrets === undefined
        ? {}
        : { secrets: request.secrets.age === undefined ? {} : { age: request.secrets.age } }),
    },
    {
      timeoutSeconds: run.deadline,
      onLog: run.onLog,
      ...(run.signal ? { signal: run.signal } : {}),
      ...(request.secrets === undefined ? {} : { secretsBundle: request.secrets.bundle }),
    },
  );
}

/** The host's answer to `abort`: it knows no activation by that token, so none began. */
export function neverBegan(back: ScriptRun): boolean {
  const r = back.result;
  return r !== undefined && "command" in r && r.command === "abort" && r.result === "unknown-token";
}

/**
 * A command that settles the host (confirm, abort and their boot kin), over a new connection,
 * within SETTLE_TIMEOUT.
 */
export function settleOverNew(
  transport: Pick<ActivationTransport, "run">,
  command: ScriptCommand,
  onLog: (line: string) => void,
): Promise<ScriptRun> {
  return transport.run(command, { timeoutSeconds: SETTLE_TIMEOUT, fresh: true, onLog });
}

/** The host keeps its new system: it prunes when the request says so, and the session ends. */
export async function kept(
  transport: Pick<ActivationTransport, "run">,
  request: Pick<DeployRequest, "keepGenerations">,
  hooks: Pick<SessionHooks, "phase">,
  onLog: (line: string) => void,
  system: {
    readonly generation: number | undefined;
    readonly previous: string | undefined;
    readonly delta?: DeltaReport;
  },
): Promise<DeployOutcome> {
  const pruned = request.keepGenerations
    ? await prune(transport, request.keepGenerations, onLog)
    : undefined;
  hooks.phase("done");
  return { status: "activated", ...system, ...(pruned === undefined ? {} : { pruned }) };
}

/** Runs the request's HTTP checks in turn; undefined when all pass, else why not. */
export async function runHttpChecks(
  request: Pick<DeployRequest, "httpChecks">,
  hooks: Pick<SessionHooks, "log" | "signal">,
): Promise<string | undefined> {
  const { signal } = hooks;
  for (const check of request.httpChecks) {
    const verdict = await httpCheck(check.url, check.expectStatus, check.timeout, signal, {
      retry: check.retry !== false,
    });
    if (signal?.aborted) return interruptReason(signal);
    hooks.log(verdict.message);
    if (!verdict.ok) return verdict.message;
  }
  return undefined;
}

/**
 * Once the host keeps its new system: its old generations go and its garbage is collected.
 * Not interrupted (it is bounded, and leaves the store whole either way); a failure is
 * reported, and does not undo the deploy.
 */
export async function prune(
  transport: Pick<ActivationTransport, "run">,
  keep: number,
  onLog: (line: string) => void,
): Promise<PruneReport> {
  const run = await transport.run(
    { verb: "prune", keep },
    {
      timeoutSeconds: PRUNE_TIMEOUT + SESSION_MARGIN,
      onLog,
    },
  );
  const report = pruneOutcome(run);
  onLog(describePrune(report));
  return report;
}

/** A failed outcome; `runs`: the system the host said it runs now, when the rule cannot tell. */
export function failed(
  phase: SessionPhase,
  message: string,
  rolledBack: boolean,
  runs?: string | null,
): DeployOutcome {
  return {
    status: "failed",
    phase,
    message,
    rolledBack,
    ...(typeof runs === "string" ? { runs } : {}),
  };
}

/**
 * What an activation that did not go through comes to: a host changed since the request was
 * made (`expect`) is refused, nothing done; any other, a failure in its phase.
 */
export function notActivated(
  answer: Pick<
    Extract<ActivationResult, { command: "activate"; ok: false }>,
    "result" | "phase" | "message" | "rolledBack" | "previous"
  >,
): DeployOutcome {
  if (answer.result === "changed") {
    // The system it runs is the one the script found there instead of the one expected.
    const runs = typeof answer.previous === "string" ? { runs: answer.previous } : {};
    return { status: "skipped", reason: "refused", message: answer.message, ...runs };
  }
  return {
    status: "failed",
    phase: answer.phase,
    message: answer.message,
    rolledBack: answer.rolledBack,
    ...(answer.result === "interrupted" ? { interruptedOnHost: true as const } : {}),
    ...(answer.result === "timed-out" ? { timedOutOnHost: true as const } : {}),
  };
}

/**
 * What an `activate` that did not run comes to (the script refused it, or answered another
 * verb): another activation holding the host's lock is another operator's turn there, so the
 * host is refused, nothing done, as a host changed since is; anything else fails at connect.
 * `failure`: the run's own failure, when the script said nothing.
 */
export function activateNotRun(
  result: ActivationResult,
  failure: string,
  exitCode: number | null,
): DeployOutcome {
  const said = "message" in result && result.message ? result.message : failure;
  if (isRefusal(result) && result.result === "locked") {
    return { status: "skipped", reason: "refused", message: `${said}; nothing was done` };
  }
  return failed("connect", said || `activate.sh exited with ${exitCode}`, false);
}

/** The longest the driver waits for `activate` itself. */
export function activateDeadline(request: DeployRequest): number {
  // Each command check within its own timeout; an older installed script (a pinned host's)
  // gives each the longest, which this allows for.
  const longest = Math.max(0, ...request.commandChecks.map((c) => c.timeout));
  return request.activationTimeout + request.commandChecks.length * longest + SESSION_MARGIN;
}
