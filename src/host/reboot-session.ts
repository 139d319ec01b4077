// One host's deploy with a reboot (`deploy --reboot`), for every driver that reaches
// activate.sh from outside: the boot activation (switch-to-configuration boot) that records the
// pending boot and reboots; the wait, over new connections, until the host answers from another
// boot; `after-boot` (is it the system rebooted for? then the command checks); the deployer's
// HTTP checks; then `confirm-boot`, or `abort-boot`, which puts the previous generation back
// and (with `rollback`) reboots into it, which is waited for too. Every wait is bounded: the
// activation's deadline, the reboot timeout, the settling of each verb.
import { setTimeout as sleep } from "node:timers/promises";
import { interruptReason } from "../util/interrupt-reason.js";
import { testWait } from "../util/test-waits.js";
import {
  type ActivationResult,
  answerOf,
  type BootVerbResult,
  healthSeconds,
} from "./activation.js";
import type {
  ActivationTransport,
  DeployOutcome,
  DeployRequest,
  JudgeBootRequest,
  RebootRequest,
  SessionHooks,
  SessionPhase,
} from "./session-request.js";
import {
  abortUnanswered,
  activateDeadline,
  activateNotRun,
  activateRequest,
  failed,
  kept as keptSystem,
  notActivated,
  runHttpChecks,
  SETTLE_TIMEOUT,
  settleOverNew,
} from "./session-steps.js";

/** Seconds one status probe of a rebooting host may take (a connection that hangs ends). */
const PROBE_TIMEOUT = 15;
/** Milliseconds between two probes ($NIXSHIP_REBOOT_PROBE_MS shortens it for tests). */
const PROBE_EVERY_MS = 2000;

export async function runRebootSession(
  transport: ActivationTransport,
  request: DeployRequest,
  reboot: RebootRequest,
  hooks: SessionHooks & { readonly token: string },
  onLog: (line: string) => void,
): Promise<DeployOutcome> {
  const begun = await beginReboot(transport, request, hooks, onLog);
  if (begun.kind !== "rebooting") return begun.outcome;
  hooks.phase("reboot");
  const back = await awaitBoot(transport, begun.bootId, reboot.timeout, hooks);
  if (back.kind === "interrupted") {
    return failed(
      "reboot",
      `${back.reason} while the host rebooted into ${begun.into}; it comes back on it unconfirmed ('nixship status' shows the pending reboot)`,
      false,
    );
  }
  if (back.kind === "timed-out") {
    return failed(
      "reboot",
      back.wentDown
        ? `the host did not come back within ${reboot.timeout}s of its reboot into ${begun.into}; it boots that generation until its boot loader falls back or someone picks another`
        : `the host did not reboot within ${reboot.timeout}s (still up on its old boot); its next boot is ${begun.into}`,
      false,
    );
  }
  hooks.log(`back up, booted ${back.booted ?? "no system"}`);
  return judgeReboot(transport, request, reboot, begun, hooks, onLog, true);
}

/**
 * A boot left pending by a deploy that ended before its verdict, on a host that booted the
 * system it is to run: judged as that deploy would have (after-boot, the HTTP checks, then
 * confirm-boot or abort-boot), before anything else changes on the host.
 */
export async function judgePendingBoot(
  transport: ActivationTransport,
  request: DeployRequest,
  pending: JudgeBootRequest,
  hooks: SessionHooks,
  onLog: (line: string) => void,
): Promise<DeployOutcome> {
  const { generation, previous, token } = pending;
  // The deploy said first that the boot is judged (deploy/pending-boot.ts's pendingBootLine).
  const into = `generation ${generation ?? "?"} (${request.path})`;
  return judgeReboot(
    transport,
    request,
    pending.reboot,
    { generation, previous, into },
    { ...hooks, token },
    onLog,
    true,
  );
}

/** A boot activation that went through: the host reboots (or its caller reboots it). */
export interface RebootBegun {
  readonly kind: "rebooting";
  /** The boot it answered from: a status from another one means it rebooted. */
  readonly bootId: string;
  readonly generation: number | undefined;
  /** The system it ran before. */
  readonly previous: string | undefined;
  /** "generation N (PATH)", for messages. */
  readonly into: string;
}

/**
 * The boot activation: realise, secrets, profile, switch-to-configuration boot, the pending
 * boot recorded under the session's token; the host reboots 2 s after it answers.
 */
export async function beginReboot(
  transport: ActivationTransport,
  request: DeployRequest,
  hooks: SessionHooks & { readonly token: string },
  onLog: (line: string) => void,
): Promise<RebootBegun | { readonly kind: "failed"; readonly outcome: DeployOutcome }> {
  const { signal, token } = hooks;
  const stop = (outcome: DeployOutcome) => ({ kind: "failed" as const, outcome });
  // The command checks run after the boot (after-boot), not with the boot activation.
  const deadline = activateDeadline({ ...request, commandChecks: [] });
  const run = await activateRequest(
    transport,
    request,
    { action: "boot", token, rebootToken: token },
    { deadline, onLog, signal },
  );
  const result = run.result;
  if (result === undefined) {
    const why = signal?.aborted
      ? interruptReason(signal)
      : run.failure || `no result within ${deadline}s`;
    const steps = { httpChecks: false, confirmWindow: 0 };
    return stop(await abortUnanswered(transport, token, why, steps, request, onLog, hooks));
  }
  const answer = answerOf(result, "activate");
  if (answer === undefined) return stop(activateNotRun(result, run.failure, run.code));
  if (answer.tookOver) hooks.log(answer.tookOver);
  if (!answer.ok) return stop(notActivated(answer));
  if (answer.result !== "rebooting" || answer.bootId === undefined) {
    return stop(failed("reboot", "the host set its next boot but did not reboot", false));
  }
  const generation = answer.generation ?? undefined;
  return {
    kind: "rebooting",
    bootId: answer.bootId,
    generation,
    previous: answer.previous ?? undefined,
    into: `generation ${generation ?? "?"} (${request.path})`,
  };
}

/**
 * After the reboot: what booted and the command checks (after-boot), the HTTP checks, then
 * confirm-boot, or abort-boot; with `awaitBack`, the reboot into the previous system is waited
 * for (a driver that does not outlive the host's reboot, an agent, cannot).
 */
export async function judgeReboot(
  transport: ActivationTransport,
  request: DeployRequest,
  reboot: RebootRequest,
  begun: Pick<RebootBegun, "generation" | "previous" | "into">,
  hooks: SessionHooks & { readonly token: string },
  onLog: (line: string) => void,
  awaitBack: boolean,
): Promise<DeployOutcome> {
  const { token } = hooks;
  const { generation, previous, into } = begun;
  hooks.phase("health");
  const after = await transport.run(
    {
      verb: "after-boot",
      token,
      checks: request.commandChecks,
      rebootRollback: reboot.rollback,
    },
    {
      timeoutSeconds: healthSeconds(request.commandChecks) + SETTLE_TIMEOUT,
      fresh: true,
      onLog,
    },
  );
  const judged = bootVerb(after.result, "after-boot");
  if (judged === undefined) {
    return failed(
      "health",
      `after its reboot into ${into}, the host did not answer: ${after.failure || `exit ${after.code}`}; it runs that generation, unconfirmed`,
      false,
    );
  }
  const back = (r: BootVerbResult, why: string) =>
    wentBack(transport, r, why, previous, reboot, hooks, awaitBack);
  if (!judged.ok) return back(judged, judged.message ?? "");

  // The deployer's HTTP checks; a failure (or an interrupt) is answered by abort-boot.
  const verdict = await runHttpChecks(request, hooks);
  if (verdict !== undefined) {
    hooks.phase("rollback");
    const aborted = await settleOverNew(
      transport,
      { verb: "abort-boot", token, rebootRollback: reboot.rollback },
      onLog,
    );
    const r = bootVerb(aborted.result, "abort-boot");
    if (r === undefined) {
      return failed(
        "health",
        `${verdict}; going back failed: ${aborted.failure || `exit ${aborted.code}`}; the host runs ${into}, unconfirmed`,
        false,
      );
    }
    // The host's message starts with "aborted by the deployer": the verdict says why.
    const rest = hostPart(r.message ?? "", "aborted by the deployer");
    return back({ ...r, phase: "health", message: rest }, verdict);
  }

  hooks.phase("confirm");
  const confirmed = await settleOverNew(transport, { verb: "confirm-boot", token }, onLog);
  const confirmedBoot = bootVerb(confirmed.result, "confirm-boot");
  if (confirmedBoot === undefined || !confirmedBoot.ok) {
    const why = confirmedBoot?.message ?? (confirmed.failure || `exit ${confirmed.code}`);
    return failed("confirm", `confirming the reboot failed: ${why}`, false);
  }
  return keptSystem(transport, request, hooks, onLog, {
    generation: confirmedBoot.generation ?? generation,
    previous,
  });
}

/** The result when it is `command`'s, else undefined. */
function bootVerb(
  result: ActivationResult | undefined,
  command: BootVerbResult["command"],
): BootVerbResult | undefined {
  return answerOf(result, command) as BootVerbResult | undefined;
}

/**
 * The host went back (after-boot or abort-boot said so): where it stands, and when it reboots
 * into the previous system, the wait for that boot and what it booted.
 */
async function wentBack(
  transport: ActivationTransport,
  r: BootVerbResult,
  why: string,
  previous: string | undefined,
  reboot: RebootRequest,
  hooks: SessionHooks,
  awaitBack: boolean,
): Promise<DeployOutcome> {
  const phase: SessionPhase = r.phase === "reboot" ? "reboot" : (r.phase ?? "health");
  const host = r.message && r.message !== why ? `${why}; ${hostPart(r.message, why)}` : why;
  // Not undone: it runs what it booted (the system it was to run, or what its loader fell back to).
  if (!r.rolledBack) return failed(phase, host, false, r.booted);
  if (!r.rebooting) {
    const booted =
      r.booted === previous ? "it runs the previous system" : "the previous generation boots next";
    // Until it reboots, the host runs the system it booted.
    return failed(phase, `${host}; back on the previous generation (${booted})`, true, r.booted);
  }
  if (!awaitBack) {
    return {
      status: "failed",
      phase,
      message: `${host}; back on the previous generation, rebooting into it`,
      rolledBack: true,
      ...(r.bootId ? { rebootsFrom: r.bootId } : {}),
    };
  }
  hooks.phase("rollback");
  hooks.log("rebooting into the previous system");
  const back = await awaitBoot(transport, r.bootId ?? "", reboot.timeout, {
    ...hooks,
    // A reboot back is waited for even after an interrupt: it decides where the host stands.
    signal: undefined,
  });
  if (back.kind !== "up") {
    return failed(
      phase,
      `${host}; rebooted into the previous generation, but the host did not come back within ${reboot.timeout}s`,
      false,
    );
  }
  const onPrevious = previous !== undefined && back.booted === previous;
  return failed(
    phase,
    `${host}; rebooted into the previous system${onPrevious ? "" : `, but it booted ${back.booted ?? "no system"}`}`,
    onPrevious,
    back.booted,
  );
}

/** The host's own message without the part the deployer already says. */
function hostPart(message: string, why: string): string {
  return message.startsWith(why) ? message.slice(why.length).replace(/^; /, "") : message;
}

type BootWait =
  | { readonly kind: "up"; readonly booted: string | null }
  | { readonly kind: "timed-out"; readonly wentDown: boolean }
  | { readonly kind: "interrupted"; readonly reason: string };

/**
 * Probes the host's status over new connections until it answers from a boot other than
 * `oldBoot`, at most `timeout` seconds (each probe at most PROBE_TIMEOUT more).
 */
async function awaitBoot(
  transport: Pick<ActivationTransport, "run">,
  oldBoot: string,
  timeout: number,
  hooks: Pick<SessionHooks, "log" | "signal">,
): Promise<BootWait> {
  const { signal } = hooks;
  const end = Date.now() + timeout * 1000;
  let wentDown = false;
  for (;;) {
    if (signal?.aborted) return { kind: "interrupted", reason: interruptReason(signal) };
    const left = Math.ceil((end - Date.now()) / 1000);
    if (left <= 0) return { kind: "timed-out", wentDown };
    const probe = await transport.run(
      { verb: "status" },
      {
        timeoutSeconds: Math.min(PROBE_TIMEOUT, left),
        fresh: true,
        ...(signal ? { signal } : {}),
      },
    );
    const status = answerOf(probe.result, "status");
    if (status !== undefined) {
      if (status.boot !== undefined && status.boot.id !== oldBoot) {
        return { kind: "up", booted: status.booted };
      }
    } else if (!wentDown) {
      wentDown = true;
      hooks.log("the host went down for its reboot");
    }
    const every = testWait("NIXSHIP_REBOOT_PROBE_MS", PROBE_EVERY_MS, PROBE_EVERY_MS);
    await sleep(every, undefined, signal ? { signal } : {}).catch(() => undefined);
  }
}
