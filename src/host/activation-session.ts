// One activation on one host, written once for every delivery mode: activate.sh through a
// small transport (an SSH pipe, an SSM invocation, a local child), then the deployer's HTTP
// checks, then confirm or abort. Which of these steps apply is one decision
// (`activationSteps`), taken from the action; every step has a deadline, and an interrupt
// aborts what is in flight so the host goes back to its previous system.
import { randomBytes } from "node:crypto";
import { actionNeedsHealthCheck } from "../fleet/action.js";
import { hostHttpChecks } from "../fleet/health-url.js";
import type { SessionPhase } from "../fleet/phase.js";
import { decideRollback, type HostVerdict } from "../fleet/rollback-decision.js";
import type { DeltaReport } from "../status/delta-report.js";
import { interruptReason } from "../util/interrupt-reason.js";
import { answerOf, phaseMarker } from "./activation.js";
import { judgePendingBoot, runRebootSession } from "./reboot-session.js";
import type {
  ActivationSteps,
  ActivationTransport,
  DeployOutcome,
  DeployRequest,
  RequestParts,
  ScriptRun,
  SessionHooks,
} from "./session-request.js";
import {
  abortUnanswered,
  activateDeadline,
  activateNotRun,
  activateRequest,
  failed,
  kept,
  neverBegan,
  notActivated,
  runHttpChecks,
  SETTLE_TIMEOUT,
  settleOverNew,
} from "./session-steps.js";

/**
 * The one builder of a DeployRequest (the deployer's, for each host; an agent's, for itself).
 * A dry-activate carries no secrets: a preview changes nothing on the host, and installing a
 * bundle would replace the values the running system uses and remove the ones it lacks.
 */
export function buildDeployRequest(parts: RequestParts): DeployRequest {
  const { checks } = parts;
  const secrets = parts.action === "dry-activate" ? undefined : parts.secrets;
  return {
    ...(secrets === undefined ? {} : { secrets }),
    path: parts.path,
    action: parts.action,
    substituters: parts.substituters,
    trustedKeys: parts.trustedKeys,
    commandChecks: checks.health.commands,
    httpChecks: hostHttpChecks(checks.health.http, parts.host),
    confirmTimeout: checks.confirmTimeout,
    activationTimeout: parts.activationTimeout,
    ...(checks.keepGenerations ? { keepGenerations: checks.keepGenerations } : {}),
    ...(parts.reboot === undefined ? {} : { reboot: parts.reboot }),
    ...(parts.judgeBoot === undefined ? {} : { judgeBoot: parts.judgeBoot }),
    ...(parts.recordBoot === true && parts.action === "boot" ? { recordBoot: true as const } : {}),
    ...(parts.deltaTool === undefined ? {} : { deltaTool: parts.deltaTool }),
    ...(parts.expect === undefined ? {} : { expect: parts.expect }),
  };
}

export type { SessionPhase } from "../fleet/phase.js";

/** Seconds a confirmation window keeps beyond the HTTP checks' own time. */
const WINDOW_MARGIN = 10;

/** The longest confirmation window a host is given (POLICY_RANGES.confirmTimeout's). */
export const MAX_CONFIRM_WINDOW = 86_400;

export function activationSteps(
  request: Pick<DeployRequest, "action" | "httpChecks" | "confirmTimeout">,
  transportConfirms: boolean,
): ActivationSteps {
  const checked = actionNeedsHealthCheck(request.action);
  const httpChecks = checked && request.httpChecks.length > 0;
  if (!checked || !transportConfirms) return { httpChecks, confirmWindow: 0 };
  // The window is the driver's whole time for its verdict, as configured. With confirmation
  // off and HTTP checks to run, the window lasts as long as the checks (and a margin), so a
  // failed check is undone by `abort` in every action (a `rollback` would move the profile).
  if (request.confirmTimeout > 0 || !httpChecks) {
    return { httpChecks, confirmWindow: request.confirmTimeout };
  }
  const checksTime = request.httpChecks.reduce((sum, c) => sum + c.timeout, 0);
  // Within a day, as any window: several checks of a day each add up past it.
  return { httpChecks, confirmWindow: Math.min(checksTime + WINDOW_MARGIN, MAX_CONFIRM_WINDOW) };
}

export type {
  ActivationSteps,
  ActivationTransport,
  DeployOutcome,
  DeployRequest,
  HostSecrets,
  RebootRequest,
  RequestParts,
  ScriptRun,
  ScriptRunOptions,
  SessionHooks,
} from "./session-request.js";
export {
  activateDeadline,
  activateNotRun,
  notActivated,
  SESSION_MARGIN,
  SETTLE_TIMEOUT,
} from "./session-steps.js";

/**
 * What the session does with each line activate.sh writes on stderr: a phase marker
 * (`activate: @phase NAME`) moves the session to that phase; any other line is logged,
 * without the "activate: " prefix.
 */
export function sessionLog(
  hooks: Pick<SessionHooks, "phase" | "log">,
  seen: SessionSeen = {},
): (line: string) => void {
  return (line) => {
    const phase = phaseMarker(line);
    if (phase === undefined) {
      if (line.includes(UNSIGNED_SUBSTITUTE)) seen.unsigned = true;
      hooks.log(line.replace(/^activate: /, ""));
    } else if (phase !== null) {
      // `seen.reached`: the last phase it entered, but a rollback (what an abort names).
      if (phase !== "rollback") seen.reached = phase;
      hooks.phase(phase);
    }
  };
}

/** What the session saw in the host's log. */
interface SessionSeen {
  /** The last phase it entered, but a rollback (what an abort names). */
  reached?: SessionPhase;
  /** Nix passed over a substitute that no trusted key signed (UNSIGNED_SUBSTITUTE). */
  unsigned?: true;
}

/** What Nix (2.8 and 2.26 alike) says of a path no trusted key signed, which it passes over. */
const UNSIGNED_SUBSTITUTE = "not signed by any of the keys in 'trusted-public-keys'";

/**
 * A realise that failed after Nix passed over a substitute no trusted key signed: its message
 * names what mends that (a path the cache holds that someone pushed with another key).
 */
function withUnsignedHint<T extends { readonly phase: string; readonly message: string }>(
  answer: T,
  seen: SessionSeen,
): T {
  if (answer.phase !== "realise" || seen.unsigned !== true) return answer;
  return {
    ...answer,
    message: `${answer.message}; the cache holds a path that no key the host trusts signed (pushed with another key?): 'nixship verify' names it, and 'nixship push PATH --fleet FILE --key KEY --resign' adds the fleet's key to what the cache holds`,
  };
}

/** Runs one activation to its end; every failure is an outcome, never a rejection. */
export async function runActivationSession(
  transport: ActivationTransport,
  request: DeployRequest,
  hooks: SessionHooks,
): Promise<DeployOutcome> {
  const { signal } = hooks;
  const steps = activationSteps(request, transport.confirms);
  const token = hooks.token ?? `s${Date.now().toString(36)}${randomBytes(6).toString("hex")}`;
  const seen: SessionSeen = {};
  const onLog = sessionLog(hooks, seen);
  const interrupted = () => interruptReason(signal);

  hooks.phase("connect");
  if (signal?.aborted) return failed("connect", `${interrupted()} before it started`, false);
  const unreachable = await transport.preflight(signal);
  if (unreachable !== undefined) return failed("connect", unreachable, false);
  if (signal?.aborted) return failed("connect", `${interrupted()} before it started`, false);
  if (request.judgeBoot !== undefined) {
    return judgePendingBoot(transport, request, request.judgeBoot, hooks, onLog);
  }
  if (request.reboot !== undefined) {
    return runRebootSession(transport, request, request.reboot, { ...hooks, token }, onLog);
  }

  const deadline = activateDeadline(request);
  const started = performance.now();
  const activate = (seconds: number) =>
    activateRequest(
      transport,
      request,
      {
        action: request.action,
        healthChecks: request.commandChecks,
        confirmTimeout: steps.confirmWindow,
        token,
        ...(request.recordBoot ? { bootToken: token } : {}),
      },
      { deadline: seconds, onLog, signal },
    );
  let run = await activate(deadline);
  let asked: ScriptRun | undefined;
  if (run.result === undefined && run.code === 0 && !signal?.aborted) {
    // The command ended well yet no answer was read: the host printed none, or its answer was
    // lost on the way (as a loaded deployer once lost them, util/streamed-run.ts). When the
    // host confirms that no activation began under this token, it is asked once more, within
    // what is left of the activation's deadline (so the abort leaves the token usable: the
    // command ended, so nothing under it can begin later).
    asked = await settleOverNew(transport, { verb: "abort", token, keepToken: true }, onLog);
    const left = deadline - Math.ceil((performance.now() - started) / 1000);
    if (neverBegan(asked) && left > 0 && !signal?.aborted) {
      hooks.log(`${run.failure}, and nothing began on the host: activating it once more`);
      run = await activate(left);
      asked = undefined;
    }
  }
  const result = run.result;
  if (result === undefined) {
    // No answer: the host may still be activating. Abort it over a new connection (it goes
    // back to its previous system); where it cannot be reached, its own bounds end it.
    const why = signal?.aborted ? interrupted() : run.failure || `no result within ${deadline}s`;
    return abortUnanswered(
      transport,
      token,
      why,
      steps,
      request,
      onLog,
      hooks,
      asked,
      seen.reached,
    );
  }
  const answer = answerOf(result, "activate");
  if (answer === undefined) return activateNotRun(result, run.failure, run.code);
  if (answer.tookOver) hooks.log(answer.tookOver);
  // A timed-out activation's message names the timeout ("… ran past the activation timeout
  // of 5s; stopped it").
  if (!answer.ok) return notActivated(withUnsignedHint(answer, seen));
  return finishActivation(
    transport,
    request,
    {
      generation: answer.generation ?? undefined,
      previous: answer.previous ?? undefined,
      previousGeneration: answer.previousGeneration ?? undefined,
      awaitingToken: answer.result === "awaiting-confirmation" ? token : undefined,
      delta: answer.delta,
    },
    hooks,
  );
}

/** A host that activated, as the rest of the session needs it. */
export interface Activated {
  readonly generation: number | undefined;
  readonly previous: string | undefined;
  /** The generation to roll back to without a confirmation window (undefined: the previous). */
  readonly previousGeneration: number | undefined;
  /** The host waits for `confirm` or `abort` with this token (undefined: no window). */
  readonly awaitingToken: string | undefined;
  /** What came by delta and what whole (with a delta tool; docs/deltas.md). */
  readonly delta?: DeltaReport | undefined;
}

/**
 * The session after a successful activate: the HTTP checks, then confirm or abort (or, with no
 * window, `rollback` after a failed check). A transport that activates a whole wave at once
 * (SSM) enters here with each host's result.
 */
export async function finishActivation(
  transport: Pick<ActivationTransport, "run">,
  request: DeployRequest,
  activated: Activated,
  hooks: SessionHooks,
): Promise<DeployOutcome> {
  const { signal } = hooks;
  const token = activated.awaitingToken;
  const window = token === undefined ? 0 : activationSteps(request, true).confirmWindow;
  const checks = activationSteps(request, token !== undefined).httpChecks;
  const interrupted = () => interruptReason(signal);
  const onLog = sessionLog(hooks);
  const undo = async (phase: SessionPhase, message: string): Promise<DeployOutcome> => {
    hooks.phase("rollback");
    const back =
      token !== undefined
        ? await settleOverNew(transport, { verb: "abort", token }, onLog)
        : await transport.run(
            {
              verb: "rollback",
              generation: activated.previousGeneration,
              activationTimeout: request.activationTimeout,
            },
            {
              timeoutSeconds: SETTLE_TIMEOUT,
              onLog,
            },
          );
    if (back.code === 0) return failed(phase, message, true);
    const why = back.result && "message" in back.result ? back.result.message : back.failure;
    // The host answered the abort: it ended the window, and its message says where it stands
    // (no earlier system to go back to, or a rollback that failed). Only an abort that did
    // not reach it leaves the window to close by itself.
    const answered =
      back.result !== undefined && "command" in back.result && back.result.command === "abort";
    if (answered) return failed(phase, `${message}; ${why}`, false);
    const settles =
      token !== undefined
        ? `; the host rolls itself back when its ${window}s confirmation window closes`
        : "";
    return failed(phase, `${message}; rolling back failed: ${why}${settles}`, false);
  };

  // Whether a host judged here goes back is decided in one place (fleet/rollback-decision.ts).
  const judged = (phase: SessionPhase, verdict: HostVerdict) => {
    const decision = decideRollback(verdict);
    return decision.rollBack ? undo(phase, decision.why) : failed(phase, decision.why, false);
  };
  if (checks) {
    hooks.phase("health");
    const verdict = await runHttpChecks(request, hooks);
    if (verdict !== undefined) return judged("health", { kind: "health-failed", message: verdict });
  }
  // Interrupted once its activation ended: a host in flight goes back (with a window, by abort;
  // without, as SSM's, by a rollback), as the interrupt said.
  if (signal?.aborted) {
    return judged(token !== undefined ? "confirm" : "health", {
      kind: "interrupted",
      message: interrupted(),
    });
  }
  if (token !== undefined) {
    hooks.phase("confirm");
    // A new connection: the new system must still let the driver in. Not interrupted: a
    // confirmation under way is bounded and decides the host's state either way.
    const confirm = await settleOverNew(transport, { verb: "confirm", token }, onLog);
    if (confirm.code !== 0) {
      const r = confirm.result;
      if (r && "command" in r && (r.command === "confirm" || r.command === "abort")) {
        return failed("confirm", `confirmation failed: ${r.message}`, r.result === "rolled-back");
      }
      return failed(
        "confirm",
        `confirmation failed: ${confirm.failure || `exit ${confirm.code}`}; the host rolls itself back when its ${window}s confirmation window closes`,
        false,
      );
    }
  }
  return kept(transport, request, hooks, onLog, {
    generation: activated.generation,
    previous: activated.previous,
    ...(activated.delta === undefined ? {} : { delta: activated.delta }),
  });
}
