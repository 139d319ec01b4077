// From SSM's command invocations to deploy outcomes (pure): when an invocation is finished,
// what activate.sh's JSON result says, why SSM did not run it to a result, and how the
// instances of one host (tag targets) combine into the host's outcome.
import type { CommandInvocation } from "@aws-sdk/client-ssm";
import { OperationError } from "../errors.js";
import type { SsmHost, SsmSettings } from "../fleet/fleet.js";
import {
  type ActivationResult,
  answerOf,
  isRefusal,
  parseActivationResult,
} from "../host/activation.js";
import { activateNotRun, notActivated } from "../host/activation-session.js";
import { resultMessage } from "../host/script-outcomes.js";
import { combinedDeltaReport, type DeltaReport } from "../status/delta-report.js";
import { withoutControls } from "../util/text.js";
import type { DeployOutcome, HostPhase } from "./delivery.js";

export const NOT_STARTED = "not started: SSM stopped the command after MaxErrors was reached";

/** One instance's finished invocation: what SSM says, and what activate.sh printed. */
export interface FinishedInvocation {
  readonly instanceId: string;
  readonly status: string;
  readonly details: string;
  readonly stdout: string;
  readonly stderr: string;
  readonly responseCode: number | undefined;
  /**
   * Why its output could not be read before the wait ended (stdout and stderr are then empty):
   * SSM said it ended, but not what activate.sh printed.
   */
  readonly unread?: string;
}

/** A finished invocation as one instance's deploy outcome, and activate.sh's result if any. */
export interface InstanceOutcome {
  readonly instanceId: string;
  readonly outcome: DeployOutcome;
  readonly result: ActivationResult | undefined;
}

export const TERMINAL_COMMAND = new Set(["Success", "Failed", "TimedOut", "Cancelled"]);
const TERMINAL_DETAILS = new Set([
  "Success",
  "Failed",
  "Cancelled",
  "Canceled",
  "Undeliverable",
  "Terminated",
  "Delivery Timed Out",
  "Execution Timed Out",
  "Access Denied",
  "Incomplete",
  "Rate Exceeded",
  "No Instances In Tag",
]);

export function isTerminal(inv: Pick<CommandInvocation, "Status" | "StatusDetails">): boolean {
  return (
    TERMINAL_COMMAND.has(inv.Status ?? "") ||
    TERMINAL_DETAILS.has(inv.StatusDetails ?? "") ||
    // An invocation status this version does not know: only the known live ones keep waiting.
    !["Pending", "InProgress", "Delayed", "Cancelling"].includes(inv.Status ?? "Pending")
  );
}

/** An instance SSM gave no finished invocation for. */
export function missing(instanceId: string, status: string): FinishedInvocation {
  return { instanceId, status, details: status, stdout: "", stderr: "", responseCode: undefined };
}

/** An invocation SSM listed as ended whose output could not be read, and why. */
export function unread(inv: CommandInvocation, why: string): FinishedInvocation {
  return {
    instanceId: inv.InstanceId as string,
    status: inv.Status ?? "",
    details: inv.StatusDetails ?? inv.Status ?? "",
    stdout: "",
    stderr: "",
    responseCode: undefined,
    unread: why,
  };
}

/** Statuses of an invocation that never ran on its instance. */
const NEVER_RAN = new Set(["Undeliverable", "Delivery Timed Out", "Terminated"]);

export function activationResult(inv: FinishedInvocation): ActivationResult | undefined {
  return readResult(inv).result;
}

/** Why output that activate.sh left is not a result ("" when there is none, or it is one). */
function unparsedOutput(inv: FinishedInvocation): string {
  return readResult(inv).problem;
}

function readResult(inv: FinishedInvocation): { result?: ActivationResult; problem: string } {
  if (!inv.stdout.trim()) return { problem: "" };
  try {
    return { result: parseActivationResult(inv.stdout, inv.instanceId), problem: "" };
  } catch (err) {
    if (!(err instanceof OperationError)) throw err;
    // The failure line already starts with the instance.
    const named = `${inv.instanceId}: `;
    return {
      problem: err.message.startsWith(named) ? err.message.slice(named.length) : err.message,
    };
  }
}

/** Invocations that count against MaxErrors (SSM: failures and execution timeouts). */
export function countsAsError(inv: FinishedInvocation): boolean {
  return (
    inv.details === "Failed" ||
    inv.details === "Execution Timed Out" ||
    (inv.details === inv.status && (inv.status === "Failed" || inv.status === "TimedOut"))
  );
}

/** Why SSM did not run activate.sh to a result on an instance, naming the status. */
export function ssmFailure(inv: FinishedInvocation, settings: SsmSettings): string {
  const id = inv.instanceId;
  const status = inv.details && inv.details !== inv.status ? inv.details : inv.status;
  switch (status) {
    case "Undeliverable":
      return `${id}: SSM could not deliver the command (Undeliverable): the instance is stopped, gone, or its SSM agent is not registered`;
    case "Delivery Timed Out":
      return `${id}: SSM could not deliver the command within ${settings.commandTimeout}s (Delivery Timed Out): is its SSM agent online?`;
    case "Execution Timed Out":
    case "TimedOut":
      return `${id}: SSM timed out after ${settings.commandTimeout}s (${status})`;
    case "Access Denied":
      return `${id}: SSM was denied access to run the command (Access Denied)`;
    case "Terminated":
      return `${id}: ${NOT_STARTED}`;
    case "Cancelled":
    case "Canceled":
      return `${id}: SSM cancelled the command (${status})`;
    case "Unfinished":
      return `${id}: SSM reported no end for the command`;
    default: {
      if (inv.unread !== undefined) {
        return `${id}: SSM reported ${status || "no status"}, but its output could not be read: ${inv.unread}`;
      }
      // The instance's own words: no control character reaches a terminal, and at most 600.
      const tail = withoutControls(inv.stderr.trim().split("\n").slice(-3).join(" | ")).slice(-600);
      const code = inv.responseCode !== undefined && inv.responseCode >= 0 ? inv.responseCode : "?";
      const unparsed = unparsedOutput(inv);
      return `${id}: SSM reported ${status || "no status"} (exit ${code})${tail ? `: ${tail}` : ""}${unparsed ? `; ${unparsed}` : ""}`;
    }
  }
}

/** What the deployer knows of an instance's invocation beside what SSM says of it. */
export interface InstanceContext {
  /** The wave's failures passed its budget: SSM stops starting instances (MaxErrors). */
  readonly maxErrorsReached: boolean;
  /**
   * An interrupt had the command cancelled here while SSM listed it not started (Pending,
   * Delayed): the interrupt, as said ("interrupted (SIGINT)").
   */
  readonly cancelledBeforeStart?: string;
}

/** One instance's outcome, from SSM's status and activate.sh's JSON result. */
export function instanceOutcome(
  inv: FinishedInvocation,
  settings: SsmSettings,
  { maxErrorsReached, cancelledBeforeStart }: InstanceContext,
): InstanceOutcome {
  const result = activationResult(inv);
  const failed = (
    phase: HostPhase,
    message: string,
    rolledBack = false,
    runs?: string | null,
  ): InstanceOutcome => ({
    instanceId: inv.instanceId,
    result,
    outcome: {
      status: "failed",
      phase,
      message,
      rolledBack,
      ...(typeof runs === "string" ? { runs } : {}),
    },
  });
  const activatedAs = (
    generation: number | null,
    previous: string | null,
    delta?: DeltaReport,
  ): InstanceOutcome => ({
    instanceId: inv.instanceId,
    result,
    outcome: {
      status: "activated",
      generation: generation ?? undefined,
      previous: previous ?? undefined,
      ...(delta === undefined ? {} : { delta }),
    },
  });
  const activated = answerOf(result, "activate");
  if (activated !== undefined) {
    const result = activated;
    if (result.ok && result.result === "rebooting") {
      // The run before the reboot is the last SSM reported: the run after it never came.
      return failed(
        "reboot",
        `${inv.instanceId}: it set its next boot to ${result.path} and asked SSM's agent to reboot it, but no run after the reboot reported (${ssmFailure(inv, settings)})`,
      );
    }
    if (result.ok) return activatedAs(result.generation, result.previous, result.delta);
    return { instanceId: inv.instanceId, result, outcome: notActivated(result) };
  }
  const judged = answerOf(result, "after-boot");
  if (judged !== undefined) {
    const result = judged;
    // The run SSM's agent made after the reboot (exit 194): the verdict on the boot.
    if (result.ok) return activatedAs(result.generation ?? null, null);
    const back = result.rebooting ? "; it reboots into its previous system" : "";
    return failed(
      result.phase ?? "health",
      `${resultMessage(result)}${back}`,
      result.rolledBack === true,
      // Undone without a reboot, it runs the system it booted until it reboots.
      result.rolledBack === true && result.rebooting !== true ? result.booted : undefined,
    );
  }
  if (result !== undefined && isRefusal(result)) {
    // Another activation holds the lock: refused, nothing done (as over ssh).
    const outcome = activateNotRun(result, "", inv.responseCode ?? null);
    return { instanceId: inv.instanceId, result, outcome };
  }
  if (result !== undefined && !result.ok) return failed("connect", resultMessage(result));
  const status = inv.details && inv.details !== inv.status ? inv.details : inv.status;
  const stopped =
    status === "Terminated" ||
    ((status === "Cancelled" || status === "Canceled") && maxErrorsReached);
  if (stopped) return failed("connect", `${inv.instanceId}: ${NOT_STARTED}`);
  // Cancelled while it waited, and it printed nothing: SSM never started it (its agent kills a
  // shell it started, which would have said something first).
  const cancelled = status === "Cancelled" || status === "Canceled";
  if (cancelled && cancelledBeforeStart !== undefined && !inv.stdout && !inv.stderr) {
    return failed(
      "connect",
      `${inv.instanceId}: not started: ${cancelledBeforeStart} cancelled its SSM command before SSM started it; nothing changed`,
    );
  }
  // It may have run, and what it did is not known: the deployer cannot say what the host runs
  // now (never "nothing changed"), and leaves it to a later survey to ask.
  const unknown = (why: string): InstanceOutcome => ({
    instanceId: inv.instanceId,
    result,
    outcome: {
      status: "failed",
      phase: "switch",
      message: `${why}: whether it switched is not known ('nixship plan' asks it what it runs)`,
      rolledBack: false,
      settling: true,
    },
  });
  if (status === "Unfinished") return unknown(`${ssmFailure(inv, settings)}, and it may run yet`);
  // Cancelled while it ran, or not known to have waited: SSM's agent kills the shell wherever
  // it is, a switch included.
  if (cancelled) return unknown(ssmFailure(inv, settings));
  if (inv.unread !== undefined && !NEVER_RAN.has(status)) return unknown(ssmFailure(inv, settings));
  if (status === "Success") {
    return unknown(`${inv.instanceId}: the command succeeded but gave no JSON result`);
  }
  // Timed out while running: most likely in the switch (realising is bounded by the cache).
  const running = status === "Execution Timed Out" || status === "TimedOut";
  return failed(running ? "switch" : "connect", ssmFailure(inv, settings));
}

/** A host's outcome from its instances': activated only if every instance activated. */
export function combineOutcomes(
  host: SsmHost,
  outcomes: readonly InstanceOutcome[],
): DeployOutcome {
  const first = outcomes[0] as InstanceOutcome;
  if (host.targets === undefined || outcomes.length === 1) {
    const o = first.outcome;
    if (o.status === "failed" && host.targets !== undefined) {
      return { ...o, message: `1 of 1 instances failed: ${prefixed(first)}` };
    }
    return o;
  }
  const refusals = outcomes.filter((o) => o.outcome.status === "skipped");
  if (refusals.length === outcomes.length) {
    // What they run, when every instance said the same.
    const said = new Set(refusals.map((o) => ("runs" in o.outcome ? o.outcome.runs : undefined)));
    const [runs] = said;
    return {
      status: "skipped",
      reason: "refused",
      message: `${refusals.length} of ${outcomes.length} instances refused: ${refusals.map(prefixed).join("; ")}`,
      ...(said.size === 1 && runs !== undefined ? { runs } : {}),
    };
  }
  // An instance refused (changed since) beside others that did not: the host is not one thing.
  const failures = outcomes.filter((o) => o.outcome.status !== "activated");
  if (failures.length === 0) {
    const same = <T>(f: (o: InstanceOutcome) => T) => {
      const values = new Set(outcomes.map(f));
      return values.size === 1 ? (values.values().next().value as T) : undefined;
    };
    return {
      status: "activated",
      generation: same((o) =>
        o.outcome.status === "activated" ? o.outcome.generation : undefined,
      ),
      previous: same((o) => (o.outcome.status === "activated" ? o.outcome.previous : undefined)),
      ...deltaOf(outcomes),
    };
  }
  const firstFailed = failures.find((o) => o.outcome.status === "failed")?.outcome;
  // An instance whose end is not known leaves the host's unknown too.
  const unknown = failures.some((o) => o.outcome.status === "failed" && o.outcome.settling);
  return {
    status: "failed",
    phase: unknown ? "switch" : firstFailed?.status === "failed" ? firstFailed.phase : "realise",
    message: `${failures.length} of ${outcomes.length} instances failed: ${failures.map(prefixed).join("; ")}`,
    rolledBack:
      !unknown && failures.every((o) => o.outcome.status === "failed" && o.outcome.rolledBack),
    ...(unknown ? { settling: true as const } : {}),
  };
}

export function prefixed(o: InstanceOutcome): string {
  const message = o.outcome.status === "activated" ? "activated" : o.outcome.message;
  return message.startsWith(`${o.instanceId}:`) ? message : `${o.instanceId}: ${message}`;
}

/** The instances' delta reports added up, when any counted. */
function deltaOf(outcomes: readonly InstanceOutcome[]): { delta?: DeltaReport } {
  const delta = combinedDeltaReport(
    outcomes.map((o) => (o.outcome.status === "activated" ? o.outcome.delta : undefined)),
  );
  return delta === undefined ? {} : { delta };
}
