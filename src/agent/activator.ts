// How the agent changes its own host: the same activation session every delivery mode runs
// (host/activation-session.ts), over a local transport: activate.sh as a child process, the
// release's HTTP checks from the host itself, then confirm or abort (the same magic-rollback
// window the ssh mode uses, with the agent as the deployer). A reboot (the entry's `reboot`)
// is the same reboot session cut in two where the host goes down with the agent: the boot
// activation (`apply` answers "rebooting"), then, from the agent started after the boot,
// `judgeBoot` (host/reboot-session.ts).

import {
  activateArgs,
  answerOf,
  parseActivationResult,
  type ScriptCommand,
  SECRETS_VARIABLE,
  scriptArgs,
  scriptInput,
  statusArgs,
} from "../host/activation.js";
import {
  type ActivationTransport,
  type DeployOutcome,
  type DeployRequest,
  runActivationSession,
  type ScriptRun,
  type ScriptRunOptions,
  sessionLog,
} from "../host/activation-session.js";
import { beginReboot, judgeReboot, type RebootBegun } from "../host/reboot-session.js";
import type { RebootState } from "../status/boot.js";
import type { DeltaReport } from "../status/delta-report.js";
import type { PruneReport } from "../status/prune-report.js";
import { withDeadline } from "../util/deadline.js";
import { runStreamed } from "../util/streamed-run.js";

export type Applied =
  | {
      readonly status: "activated";
      readonly generation: number | null;
      /** What the host pruned afterwards (the release's keepGenerations). */
      readonly pruned?: PruneReport;
      /** What came by delta and what whole (the entry's deltaTool; docs/deltas.md). */
      readonly delta?: DeltaReport;
    }
  | Extract<DeployOutcome, { status: "failed" }>
  /** Another activation holds the host's lock: try again later; not the release's fault. */
  | { readonly status: "busy"; readonly message: string }
  /** The boot activation went through; the host reboots in 2 s (judgeBoot after the boot). */
  | ({ readonly status: "rebooting" } & Omit<RebootBegun, "kind">);

export interface HostSystem {
  readonly current: string | null;
  readonly profile: string | null;
  readonly generation: number | null;
  /** The digest of the secrets installed (activate.sh's manifest); null when it did not say. */
  readonly secrets?: string | null;
  /** This boot's id (changes with every boot); null when the host did not say. */
  readonly bootId?: string | null;
  /** What a reboot would load (activate.sh's status `reboot`); null without a booted system. */
  readonly reboot?: RebootState | null;
  /** The token of the boot pending judgement (activate.sh's `boot.pending`); null when none. */
  readonly pendingBoot?: string | null;
  /** The system the host holds failed (activate.sh's `failed`); null when none. */
  readonly failed?: string | null;
}

/** The seam between the agent's logic and the host (the benchmark swaps in a no-op). */
export interface Activator {
  /** `token`: the session's (a reboot's pending boot is recorded under it). */
  apply(request: DeployRequest, onLog: (line: string) => void, token?: string): Promise<Applied>;
  /** After the reboot an `apply` began: what booted, the checks, then keep it or go back. */
  judgeBoot(
    request: DeployRequest,
    token: string,
    begun: Pick<RebootBegun, "generation" | "previous" | "into">,
    onLog: (line: string) => void,
  ): Promise<Applied>;
  inspect(): Promise<HostSystem>;
}

/** Seconds a status query may take. */
const INSPECT_TIMEOUT = 60;

export class ScriptActivator implements Activator {
  async apply(
    request: DeployRequest,
    onLog: (line: string) => void,
    token?: string,
  ): Promise<Applied> {
    let locked: string | undefined;
    const transport: ActivationTransport = {
      confirms: true,
      preflight: async () => undefined,
      activate: async (activation, options) => {
        const run = await runLocal(activateArgs(activation), options);
        locked ??= lockHolder(run);
        return run;
      },
      run: runCommand,
    };
    const hooks = { phase: () => {}, log: onLog, ...(token === undefined ? {} : { token }) };
    if (request.reboot !== undefined && token !== undefined) {
      const begun = await beginReboot(transport, request, { ...hooks, token }, sessionLog(hooks));
      if (locked !== undefined) return { status: "busy", message: locked };
      if (begun.kind === "failed") return applied(begun.outcome);
      const { kind: _, ...rest } = begun;
      return { status: "rebooting", ...rest };
    }
    const outcome = await runActivationSession(transport, request, hooks);
    if (locked !== undefined) return { status: "busy", message: locked };
    return applied(outcome);
  }

  async judgeBoot(
    request: DeployRequest,
    token: string,
    begun: Pick<RebootBegun, "generation" | "previous" | "into">,
    onLog: (line: string) => void,
  ): Promise<Applied> {
    if (request.reboot === undefined) throw new Error("judgeBoot needs a request that reboots");
    let locked: string | undefined;
    const transport: ActivationTransport = {
      confirms: true,
      preflight: async () => undefined,
      activate: (activation, options) => runLocal(activateArgs(activation), options),
      // after-boot takes the host's lock: held by another activation, the boot is judged later.
      run: async (command, options) => {
        const run = await runCommand(command, options);
        if (command.verb === "after-boot") locked ??= lockHolder(run);
        return run;
      },
    };
    const hooks = { phase: () => {}, log: onLog, token };
    // The agent goes down with a reboot back: it reports first (awaitBack false).
    const outcome = await judgeReboot(
      transport,
      request,
      request.reboot,
      begun,
      hooks,
      sessionLog(hooks),
      false,
    );
    if (locked !== undefined) return { status: "busy", message: locked };
    return applied(outcome);
  }

  async inspect(): Promise<HostSystem> {
    const run = await runLocal(statusArgs(), { timeoutSeconds: INSPECT_TIMEOUT });
    const result = answerOf(run.result, "status");
    if (result === undefined) {
      throw new Error(
        `activate.sh status gave no status: ${run.failure || JSON.stringify(run.result)}`,
      );
    }
    return {
      current: result.current,
      profile: result.profile,
      generation: result.generation,
      secrets: result.secrets ?? null,
      bootId: result.boot?.id ?? null,
      reboot: result.reboot ?? null,
      ...(result.boot === undefined ? {} : { pendingBoot: result.boot.pending?.token ?? null }),
      ...(result.failed === undefined ? {} : { failed: result.failed?.path ?? null }),
    };
  }
}

/** activate.sh's words when another activation held the host's lock; undefined otherwise. */
function lockHolder(run: ScriptRun): string | undefined {
  const r = run.result;
  return r && !r.ok && "result" in r && r.result === "locked" ? r.message : undefined;
}

function applied(outcome: DeployOutcome): Applied {
  // An agent's requests expect no system (DeployRequest.expect): a refusal is a failure here.
  if (outcome.status === "skipped") {
    return { status: "failed", phase: "realise", message: outcome.message, rolledBack: false };
  }
  return outcome.status === "activated"
    ? {
        status: "activated",
        generation: outcome.generation ?? null,
        ...(outcome.pruned === undefined ? {} : { pruned: outcome.pruned }),
        ...(outcome.delta === undefined ? {} : { delta: outcome.delta }),
      }
    : outcome;
}

/** A later command of the session, as a local child. */
const runCommand = (command: ScriptCommand, options: ScriptRunOptions) =>
  runLocal(scriptArgs(command), options);

/**
 * Runs activate.sh with `args` as a child process, its stderr to onLog line by line; stopped
 * (TERM, then KILL) past the timeout or on the signal, which leaves the run without a result.
 */
export async function runLocal(
  args: readonly string[],
  options: ScriptRunOptions,
): Promise<ScriptRun> {
  const r = await withDeadline(options.timeoutSeconds * 1000, options.signal, (signal) =>
    runStreamed("sh", ["-s", "--", ...args], {
      // A process group of its own: a Ctrl-C at the agent's terminal (or a signal to the
      // agent's group) reaches the agent alone, which lets the activation in progress finish.
      detached: true,
      input: scriptInput(
        options.secretsBundle === undefined ? {} : { [SECRETS_VARIABLE]: options.secretsBundle },
      ),
      signal,
      ...(options.onLog ? { onStderrLine: options.onLog } : {}),
    }),
  );
  if (r.error !== undefined) return { code: 127, result: undefined, failure: r.error.message };
  const exit = r.code ?? 128;
  try {
    return { code: exit, result: parseActivationResult(r.stdout, "this host"), failure: "" };
  } catch (err) {
    const why = r.stopped
      ? options.signal?.aborted
        ? "interrupted"
        : `activate.sh gave no result within ${options.timeoutSeconds}s; stopped it`
      : r.killedBy
        ? `activate.sh was killed by ${r.killedBy}`
        : "";
    return { code: exit, result: undefined, failure: why || (err as Error).message };
  }
}
