// One activation on one host, written once for every delivery mode: activate.sh through a
// small transport (an SSH pipe, an SSM invocation, a local child), then the deployer's HTTP
// checks, then confirm or abort. Which of these steps apply is one decision
// (`activationSteps`), taken from the action; every step has a deadline, and an interrupt
// aborts what is in flight so the host goes back to its previous system.
import { randomBytes } from "node:crypto";
import { type Action, actionNeedsHealthCheck } from "../fleet/action.js";
import type { HealthChecks } from "../fleet/fleet.js";
import { hostHttpChecks } from "../fleet/health-url.js";
import type { HostPhase, SessionPhase } from "../fleet/phase.js";
import type { StorePath } from "../nix/store-path.js";
import type { PruneReport } from "../status/prune-report.js";
import { interruptReason } from "../util/interrupt-reason.js";
import {
  type ActivateOptions,
  type ActivationResult,
  answerOf,
  PRUNE_TIMEOUT,
  phaseMarker,
  type ScriptCommand,
} from "./activation.js";
import { runRebootSession } from "./reboot-session.js";
import {
  abortUnanswered,
  activateRequest,
  failed,
  kept,
  runHttpChecks,
  SESSION_MARGIN,
  SETTLE_TIMEOUT,
  settleOverNew,
} from "./session-steps.js";

/**
 * What one host is to run, and how: the same request in every delivery mode (the rollout
 * builds it, the agent builds it from a release).
 */
export interface DeployRequest {
  readonly path: StorePath;
  readonly action: Action;
  /** Where the host substitutes from (signatures required); none: the path must be there. */
  readonly substituters: readonly string[];
  readonly trustedKeys: readonly string[];
  readonly commandChecks: readonly {
    readonly run: string;
    readonly timeout: number;
    /** false: run once, not retried until the timeout. */
    readonly retry?: boolean;
  }[];
  /** Run by whoever drives the session (the deployer, or the agent on the host itself). */
  readonly httpChecks: readonly {
    /** With the host's placeholders already filled in. */
    readonly url: string;
    readonly expectStatus: number;
    readonly timeout: number;
    /** false: the first failure is final. */
    readonly retry?: boolean;
  }[];
  /** Seconds the host waits for confirmation before rolling back (0: no window). */
  readonly confirmTimeout: number;
  /**
   * Seconds from the start of the activation to the end of switch-to-configuration; past it
   * the host stops the switch and goes back to its previous system (`timed-out`).
   */
  readonly activationTimeout: number;
  /** The host's secrets, installed before the switch; undefined: its secrets are left alone. */
  readonly secrets?: HostSecrets;
  /**
   * After a confirmed activation, the host keeps this many of its newest generations (and the
   * rollback target) and collects garbage; undefined or 0: it keeps everything.
   */
  readonly keepGenerations?: number;
  /**
   * Reboot into the new system (`switch-to-configuration boot`, then a reboot), and judge it
   * after the boot; undefined: a switch, no reboot.
   */
  readonly reboot?: RebootRequest;
}

export interface RebootRequest {
  /** Seconds the host has to come back on its new system (and again after a reboot back). */
  readonly timeout: number;
  /** A host that fails after the reboot is rebooted into the previous system too. */
  readonly rollback: boolean;
}

/** What a request is made of, in every mode: the system, where from, and the host's checks. */
export interface RequestParts {
  readonly path: StorePath;
  readonly action: Action;
  readonly substituters: readonly string[];
  readonly trustedKeys: readonly string[];
  /** The host's checks (its policy, or its release entry's), URLs not yet filled in. */
  readonly checks: {
    readonly health: HealthChecks;
    readonly confirmTimeout: number;
    readonly keepGenerations?: number;
  };
  /** Where `{address}` and `{name}` in the checks' URLs point. */
  readonly host: { readonly name: string; readonly address: string | undefined };
  readonly activationTimeout: number;
  readonly secrets?: HostSecrets | undefined;
  readonly reboot?: RebootRequest | undefined;
}

/** The one builder of a DeployRequest (the deployer's, for each host; an agent's, for itself). */
export function buildDeployRequest(parts: RequestParts): DeployRequest {
  const { checks, secrets } = parts;
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
  };
}

/** What one host is given of the fleet's secrets: ciphertexts only. */
export interface HostSecrets {
  /** The bundle (see host/secrets-bundle.ts); a host that gets none has the header only. */
  readonly bundle: string;
  /** Its manifest's digest, which the host's status reports once the bundle is installed. */
  readonly digest: string;
  /** A store path whose bin/age decrypts them; undefined: age from the host's PATH. */
  readonly age: StorePath | undefined;
}

/** One run of activate.sh as a transport saw it. */
export interface ScriptRun {
  readonly code: number;
  /** The script's JSON result; undefined when none came. */
  readonly result: ActivationResult | undefined;
  /** Why there is no result (e.g. "ssh: Connection refused"); empty when there is one. */
  readonly failure: string;
}

export interface ScriptRunOptions {
  /**
   * Seconds after which the transport stops waiting for this run (it then resolves with no
   * result, and stops its own side of the run: the ssh client, the local child).
   */
  readonly timeoutSeconds: number;
  /** Over a new connection, where that means something (ssh): the host must let us in anew. */
  readonly fresh?: boolean;
  readonly onLog?: (line: string) => void;
  /** Stops waiting at once (the transport resolves with no result). */
  readonly signal?: AbortSignal;
  /**
   * `activate` with --secrets: the bundle, which the transport hands to activate.sh (ssh and a
   * local child: in the script's input, as SECRETS_VARIABLE).
   */
  readonly secretsBundle?: string;
}

/** How a session reaches activate.sh on one host. */
export interface ActivationTransport {
  /**
   * Whether the host can hold a confirmation window: the driver can come back (afresh) to
   * confirm or abort. Without it, a failed HTTP check is answered by `rollback`.
   */
  readonly confirms: boolean;
  /**
   * Before anything changes: whether the host can be reached the way the confirmation will
   * need (ssh: a new connection); a message when it cannot.
   */
  preflight(signal?: AbortSignal): Promise<string | undefined>;
  /**
   * `activate.sh activate` with these options. A transport that runs a wave's activations
   * together (SSM) answers with this host's part of that run.
   */
  activate(activation: ActivateOptions, options: ScriptRunOptions): Promise<ScriptRun>;
  /** Any later command (confirm, abort, rollback, prune, status, the boot verbs). */
  run(command: ScriptCommand, options: ScriptRunOptions): Promise<ScriptRun>;
}

export type { SessionPhase } from "../fleet/phase.js";

/** How a host's deploy ended: the same data in every mode. */
export type DeployOutcome =
  | {
      readonly status: "activated";
      readonly generation: number | undefined;
      readonly previous: string | undefined;
      /** What the host pruned afterwards (undefined: the request asked for no pruning). */
      readonly pruned?: PruneReport;
    }
  | {
      readonly status: "failed";
      readonly phase: HostPhase;
      readonly message: string;
      /** The host is back on the system it ran before (false: it had none, or that failed). */
      readonly rolledBack: boolean;
    };

/** Which steps an activation has, from its action: one decision for every mode. */
export interface ActivationSteps {
  /** The driver runs the HTTP checks after the switch. */
  readonly httpChecks: boolean;
  /** Seconds the host waits for confirm or abort (0: it finishes on its own). */
  readonly confirmWindow: number;
}

/** Seconds a confirmation window keeps beyond the HTTP checks' own time. */
const WINDOW_MARGIN = 10;

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
  return { httpChecks, confirmWindow: checksTime + WINDOW_MARGIN };
}

export { SESSION_MARGIN, SETTLE_TIMEOUT } from "./session-steps.js";

/** The longest the driver waits for `activate` itself. */
export function activateDeadline(request: DeployRequest): number {
  // activate.sh gives each command check the longest of their timeouts.
  const longest = Math.max(0, ...request.commandChecks.map((c) => c.timeout));
  return request.activationTimeout + request.commandChecks.length * longest + SESSION_MARGIN;
}

/**
 * The longest a whole session may take: activation, health checks, the confirmation window
 * and its settling. A driver never waits on a host longer than this.
 */
export function sessionDeadline(request: DeployRequest, transportConfirms: boolean): number {
  const steps = activationSteps(request, transportConfirms);
  const httpTime = steps.httpChecks ? request.httpChecks.reduce((s, c) => s + c.timeout, 0) : 0;
  const pruneTime = request.keepGenerations ? PRUNE_TIMEOUT + SESSION_MARGIN : 0;
  return activateDeadline(request) + httpTime + SETTLE_TIMEOUT + pruneTime;
}

/**
 * What the session does with each line activate.sh writes on stderr: a phase marker
 * (`activate: @phase NAME`) moves the session to that phase; any other line is logged,
 * without the "activate: " prefix.
 */
export function sessionLog(hooks: Pick<SessionHooks, "phase" | "log">): (line: string) => void {
  return (line) => {
    const phase = phaseMarker(line);
    if (phase === undefined) hooks.log(line.replace(/^activate: /, ""));
    else if (phase !== null) hooks.phase(phase);
  };
}

export interface SessionHooks {
  readonly phase: (phase: SessionPhase) => void;
  readonly log: (line: string) => void;
  /** Aborts the session: what is in flight is aborted and the host rolled back. */
  readonly signal?: AbortSignal;
  /** The confirmation token (default: a random one). */
  readonly token?: string;
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
  const onLog = sessionLog(hooks);
  const interrupted = () => interruptReason(signal);

  hooks.phase("connect");
  if (signal?.aborted) return failed("connect", `${interrupted()} before it started`, false);
  const unreachable = await transport.preflight(signal);
  if (unreachable !== undefined) return failed("connect", unreachable, false);
  if (signal?.aborted) return failed("connect", `${interrupted()} before it started`, false);
  if (request.reboot !== undefined) {
    return runRebootSession(transport, request, request.reboot, { ...hooks, token }, onLog);
  }

  const deadline = activateDeadline(request);
  const run = await activateRequest(
    transport,
    request,
    {
      action: request.action,
      healthCommands: request.commandChecks.map((c) => c.run),
      healthOnce: request.commandChecks.filter((c) => c.retry === false).map((c) => c.run),
      healthTimeout: Math.max(1, ...request.commandChecks.map((c) => c.timeout)),
      confirmTimeout: steps.confirmWindow,
      token,
    },
    { deadline, onLog, signal },
  );
  const result = run.result;
  if (result === undefined) {
    // No answer: the host may still be activating. Abort it over a new connection (it goes
    // back to its previous system); where it cannot be reached, its own bounds end it.
    const why = signal?.aborted ? interrupted() : run.failure || `no result within ${deadline}s`;
    return abortUnanswered(transport, token, why, steps, request, onLog, hooks);
  }
  const answer = answerOf(result, "activate");
  if (answer === undefined) {
    const message = "message" in result && result.message ? result.message : run.failure;
    return failed("connect", message || `activate.sh exited with ${run.code}`, false);
  }
  if (answer.tookOver) hooks.log(answer.tookOver);
  // A timed-out activation's message names the timeout ("… ran past the activation timeout
  // of 5s; stopped it").
  if (!answer.ok) return failed(answer.phase, answer.message, answer.rolledBack);
  return finishActivation(
    transport,
    request,
    {
      generation: answer.generation ?? undefined,
      previous: answer.previous ?? undefined,
      previousGeneration: answer.previousGeneration ?? undefined,
      awaitingToken: answer.result === "awaiting-confirmation" ? token : undefined,
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

  if (checks) {
    hooks.phase("health");
    const verdict = await runHttpChecks(request, hooks);
    if (verdict !== undefined) return undo("health", verdict);
  }
  if (token !== undefined) {
    if (signal?.aborted) return undo("confirm", interrupted());
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
  });
}
