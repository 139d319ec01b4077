// What an activation session is asked and how it answers, in every delivery mode: the request,
// the transport seam to activate.sh, the hooks a driver gives, and the outcome. Types only, so
// that the session, its reboot variant, its steps and the readers of results share them
// without importing each other.
import type { Action } from "../fleet/action.js";
import type { HealthChecks } from "../fleet/fleet.js";
import type { HostPhase, SessionPhase } from "../fleet/phase.js";
import type { FailureCause } from "../fleet/rollback-decision.js";

export type { SessionPhase };

import type { StorePath } from "../nix/store-path.js";
import type { DeltaReport } from "../status/delta-report.js";
import type { PruneReport } from "../status/prune-report.js";
import type { ActivateOptions, ActivationResult, ScriptCommand } from "./activation.js";

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
   * A store path holding bin/zstd (realised as the system is): the host first rebuilds what it
   * can of the system from the cache's deltas (docs/deltas.md); undefined: every path whole.
   */
  readonly deltaTool?: StorePath;
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
  /**
   * The host booted `path` in a reboot nobody judged (the deployer went away): judge that boot
   * (after-boot, the checks, confirm-boot or abort-boot) instead of activating anew.
   */
  readonly judgeBoot?: JudgeBootRequest;
  /**
   * With action boot (no reboot): the host records the new system as a boot pending, which the
   * next deploy judges once the host booted it (docs/reboots.md). The deployer's requests set
   * it; an agent, which judges only the reboots it makes, does not.
   */
  readonly recordBoot?: true;
  /**
   * The system the host must run for this request to go ahead, checked by the host under its
   * lock before anything changes (a rollback of a rollout: what that rollout left there); a host
   * that runs another was changed since and is left as it is (outcome `refused`). Undefined:
   * whatever it runs.
   */
  readonly expect?: StorePath;
}

/** A pending boot to judge: its token, and what the host goes back to if it fails. */
export interface JudgeBootRequest {
  readonly token: string;
  /** The new system's generation (undefined: the host did not say). */
  readonly generation: number | undefined;
  /** The system before it: what a rollback reboots into (undefined: the host did not say). */
  readonly previous: StorePath | undefined;
  /** How long a reboot back may take, and whether a failure reboots back at all. */
  readonly reboot: RebootRequest;
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
  readonly judgeBoot?: JudgeBootRequest | undefined;
  /** With action boot: the host records the boot as pending (DeployRequest.recordBoot). */
  readonly recordBoot?: boolean | undefined;
  /** The delta tool (bin/zstd) when the host may fetch paths as deltas; undefined: whole. */
  readonly deltaTool?: StorePath | undefined;
  /** The system the host must run for the request to go ahead (DeployRequest.expect). */
  readonly expect?: StorePath | undefined;
}

/** What one host is given of the fleet's secrets: ciphertexts only. */
export interface HostSecrets {
  /** The bundle (see host/secrets-bundle.ts); a host that gets none has the header only. */
  readonly bundle: string;
  /** Its manifest's digest, which the host's status reports once the bundle is installed. */
  readonly digest: string;
  /** A store path whose bin/age decrypts them; undefined: age from the host's PATH. */
  readonly age: StorePath | undefined;
  /**
   * The host key the bundle's secrets are encrypted to (ssh-ed25519 or age1), where the fleet
   * knows it: what an ssm host's bundle URL is sealed to. Undefined for a host that gets none.
   */
  readonly hostKey?: string;
}

/** One run of activate.sh as a transport saw it. */
export interface ScriptRun {
  readonly code: number;
  /** The script's JSON result; undefined when none came. */
  readonly result: ActivationResult | undefined;
  /** Why there is no result (e.g. "ssh: Connection refused"); empty when there is one. */
  readonly failure: string;
  /**
   * The host was reached and answered, but not with a result (output that is not activate.sh's:
   * a shell that is not POSIX, a login script's words, an answer cut short): `failure` says why.
   */
  readonly unreadable?: true;
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

/** How a host's deploy ended: the same data in every mode. */
export type DeployOutcome =
  | {
      readonly status: "activated";
      readonly generation: number | undefined;
      readonly previous: string | undefined;
      /** What the host pruned afterwards (undefined: the request asked for no pruning). */
      readonly pruned?: PruneReport;
      /** What came by delta and what whole (with a delta tool; docs/deltas.md). */
      readonly delta?: DeltaReport;
      /**
       * Seconds into its bake when an interrupt (Ctrl-C, SIGTERM) ended it: the host keeps its
       * new system, which its bake never passed.
       */
      readonly bakeInterrupted?: number;
    }
  | {
      readonly status: "failed";
      readonly phase: HostPhase;
      readonly message: string;
      /** The host is back on the system it ran before (false: it had none, or that failed). */
      readonly rolledBack: boolean;
      /**
       * The system the host runs now, where its answer said and the deployer cannot tell from
       * `rolledBack` alone: a boot judged and undone runs the system it rebooted back into, or
       * still the one it booted (the previous one boots next). Undefined: runs-after.ts's rule.
       */
      readonly runs?: string;
      /**
       * What failed, typed, where the deployer judged it: a bake (its check, its analysis), or
       * another host of its wave whose failed bake took the wave back.
       */
      readonly cause?: FailureCause;
      /**
       * The deployer stopped following the host (interrupted, and no result within the grace;
       * or its activation gave no answer and could not be aborted): it is still settling by
       * its own bounds, and what it runs is not known here.
       */
      readonly settling?: true;
      /**
       * A judged boot undone whose reboot into the previous system was not waited for (an
       * agent, which goes down with it): the boot the host reboots from. Nothing else is to
       * start on the host before it runs another boot.
       */
      readonly rebootsFrom?: string;
      /**
       * A signal on the host (INT or TERM to activate.sh: an operator's kill, the host going
       * down) stopped the activation, which went back as any failure does. An agent stopped
       * by the same signal applies the release again when it starts (agent.ts).
       */
      readonly interruptedOnHost?: true;
      /** The host stopped it at its activation timeout (activate.sh's `timed-out`). */
      readonly timedOutOnHost?: true;
    }
  | {
      /** Nothing was done: the host ran another system than the request expects (`expect`). */
      readonly status: "skipped";
      readonly reason: "refused";
      readonly message: string;
      /** What the host said it runs, when it said (the system that changed it since). */
      readonly runs?: string;
    };

/** Which steps an activation has, from its action: one decision for every mode. */
export interface ActivationSteps {
  /** The driver runs the HTTP checks after the switch. */
  readonly httpChecks: boolean;
  /** Seconds the host waits for confirm or abort (0: it finishes on its own). */
  readonly confirmWindow: number;
}

export interface SessionHooks {
  readonly phase: (phase: SessionPhase) => void;
  readonly log: (line: string) => void;
  /** Aborts the session: what is in flight is aborted and the host rolled back. */
  readonly signal?: AbortSignal;
  /** The confirmation token (default: a random one). */
  readonly token?: string;
}
