// What activate.sh answers, as types: the JSON result of each verb (a run, a refusal), the
// host's generations, boots and pending activations. Parsed by activation-result.ts.

import type { Action } from "../fleet/action.js";
import type { RebootState } from "../status/boot.js";
import type { DeltaReport } from "../status/delta-report.js";

/** The trust a host pins (nixship's NixOS module): its keys' names and its substituters. */
export interface PinnedTrust {
  readonly keys: readonly string[];
  readonly substituters: readonly string[];
}

/** An activation in progress on a host, as its lock records it. */
export interface ActivationInProgress {
  /** What holds the lock, e.g. "activate /nix/store/…" or "confirmation window TOKEN". */
  readonly command: string;
  readonly path: string | null;
  readonly pid: number | null;
  /** Unix seconds. */
  readonly since: number | null;
  /** Unix seconds after which a later activation takes the lock over. */
  readonly deadline: number | null;
  /** The holder is gone or past its deadline: the next activation takes over. */
  readonly stale: boolean;
}

export interface Generation {
  readonly generation: number;
  readonly path: string;
}

/** The boot a host runs, as `status` reports it. */
export interface BootState {
  /** Changes with every boot (the deployer waits for another after a reboot). */
  readonly id: string;
  /**
   * What systemd-bless-boot says of this boot: good, bad, indeterminate (counted, not yet
   * judged) or clean (not counted); null where the system has no systemd-bless-boot.
   */
  readonly assessment: string | null;
  /**
   * A boot that `activate --reboot-token` (or `--boot-token`) recorded and nobody confirmed or
   * undid yet.
   */
  readonly pending: PendingBoot | null;
}

/** A reboot into a new system that nobody confirmed or undid yet (the deployer went away). */
export interface PendingBoot {
  /** Names the reboot to after-boot, confirm-boot and abort-boot. */
  readonly token: string;
  /** The system it rebooted for. */
  readonly path: string | null;
  /** When the boot activation recorded it (Unix seconds). */
  readonly since: number | null;
  /** The new system's generation (absent from older scripts). */
  readonly generation?: number | null;
  /** The system of the generation before it, which abort-boot goes back to (absent: older). */
  readonly previous?: string | null;
  /** The boot it was recorded in: another `id` means the host rebooted since (absent: older). */
  readonly bootId?: string | null;
}

/** Whether the host's boot loader counts boots, from this boot's assessment. */
export function countsBoots(boot: BootState | undefined): boolean | undefined {
  if (boot === undefined || boot.assessment === null) return undefined;
  return boot.assessment !== "clean";
}

/** What after-boot, confirm-boot and abort-boot answer. */
export interface BootVerbResult {
  readonly ok: boolean;
  readonly command: "after-boot" | "confirm-boot" | "abort-boot";
  /** not-rebooted: after-boot in the boot the pending one was recorded in (nothing changed). */
  readonly result:
    | "booted"
    | "confirmed"
    | "rolled-back"
    | "rollback-failed"
    | "unknown-token"
    | "not-rebooted";
  readonly exitCode?: number;
  readonly message?: string;
  /** Failures: where (reboot: another system booted; health; confirm: the deployer aborted). */
  readonly phase?: "reboot" | "health" | "confirm";
  readonly rolledBack?: boolean;
  /** The host reboots into the previous system (abort with --reboot-rollback). */
  readonly rebooting?: boolean;
  readonly assessment?: string | null;
  readonly booted?: string | null;
  readonly bootId?: string;
  readonly generation?: number | null;
}

/** A system that failed on the host, which it still runs. */
export interface FailedSystem {
  readonly path: string;
  /** Unix seconds; null when the host could not tell. */
  readonly since: number | null;
  readonly reason: string;
}

export type ActivationResult =
  | {
      readonly ok: true;
      readonly command: "activate";
      /** rebooting: a boot activation with --reboot-token; the host reboots in 2 s. */
      readonly result: "activated" | "awaiting-confirmation" | "rebooting";
      readonly path: string;
      readonly action: Action;
      readonly previous: string | null;
      readonly previousGeneration: number | null;
      readonly generation: number | null;
      readonly token?: string;
      readonly confirmTimeout?: number;
      /** rebooting: the boot it answered from (the deployer waits for another). */
      readonly bootId?: string;
      /** Set when this activation took over a stale lock: what it found and did. */
      readonly tookOver?: string;
      /** With --delta-tool: what came by delta and what whole (docs/deltas.md). */
      readonly delta?: DeltaReport;
    }
  | {
      readonly ok: false;
      readonly command: "activate";
      /**
       * timed-out: ran past --activation-timeout (exit 10); the switch was stopped. changed: the
       * host runs another system than --expect-current (exit 14); nothing changed.
       */
      readonly result: "failed" | "timed-out" | "interrupted" | "changed";
      readonly phase: "realise" | "secrets" | "profile" | "switch" | "reboot" | "health";
      readonly exitCode: number;
      readonly message: string;
      /** What it was asked to activate, and how. */
      readonly path?: string;
      readonly action?: Action;
      readonly rolledBack: boolean;
      readonly previous: string | null;
      readonly previousGeneration?: number | null;
      readonly generation: number | null;
      readonly tookOver?: string;
    }
  | {
      readonly ok: boolean;
      readonly command: "confirm" | "abort";
      readonly result:
        | "confirmed"
        | "rolled-back"
        | "rollback-failed"
        /** An activation with no window that had ended well before it was asked. */
        | "activated"
        | "unknown"
        | "unknown-token";
      readonly exitCode: number;
      readonly message: string;
      readonly generation: number | null;
      readonly current: string | null;
      /** abort: the phase the activation was in when the abort stopped it (it was under way). */
      readonly stoppedIn?: string;
      readonly tookOver?: string;
    }
  | BootVerbResult
  | {
      readonly ok: boolean;
      readonly command: "rollback";
      readonly result: "rolled-back" | "failed" | "no-generation";
      readonly exitCode?: number;
      readonly generation: number | null;
      readonly from?: number | null;
      readonly path?: string;
      readonly message?: string;
      readonly tookOver?: string;
    }
  | {
      readonly ok: true;
      readonly command: "prune";
      readonly result: "pruned";
      readonly kept: readonly number[];
      readonly removed: readonly number[];
      readonly gc: "done" | "timed-out" | "failed";
      readonly deletedPaths: number | null;
      readonly freedMiB: number | null;
      readonly generation: number | null;
      readonly tookOver?: string;
    }
  | {
      readonly ok: false;
      readonly command: "prune";
      readonly result: "failed" | "interrupted";
      readonly exitCode: number;
      readonly message: string;
      readonly generation?: number | null;
    }
  | {
      readonly ok: true;
      readonly command: "status";
      readonly current: string | null;
      readonly booted: string | null;
      readonly profile: string | null;
      readonly generation: number | null;
      readonly generations: readonly Generation[];
      readonly pending: string | null;
      /** The activation holding the host's lock (absent from hosts with an older script). */
      readonly activation?: ActivationInProgress | null;
      /**
       * Set when the system the host runs failed and the host could not go back (a first
       * deploy, or a rollback that failed); absent from hosts with an older script.
       */
      readonly failed?: FailedSystem | null;
      /** What a reboot would load; null without a booted system; absent from older scripts. */
      readonly reboot?: RebootState | null;
      /** This boot: its id, its assessment, a reboot awaiting confirmation (absent: older). */
      readonly boot?: BootState;
      /**
       * With --check-paths: the hash parts of the paths asked about that the host's store
       * lacks; null when its store could not be asked (absent without --check-paths).
       */
      readonly missing?: readonly string[] | null;
      /**
       * The sha256 of the installed secrets' manifest (`secretsManifestDigest`; of nothing when
       * none were installed); absent from hosts with an older script.
       */
      readonly secrets?: string;
      /** The trust the host's installed script pins; null: the caller's; absent: older. */
      readonly pinned?: PinnedTrust | null;
      /** Whether the host has nixship-activate installed; absent from older scripts. */
      readonly pinnedActivator?: boolean;
    }
  | {
      readonly ok: boolean;
      readonly command: "check";
      readonly result: "passed" | "failed";
      readonly exitCode?: number;
      readonly message?: string;
      /** The command check that failed (null: another cause, e.g. failed units). */
      readonly check?: string | null;
      /** The system the host runs, which was checked. */
      readonly current: string | null;
    }
  | {
      readonly ok: true;
      readonly command: "closure";
      readonly path: string;
      /** Base64 of "PATH NARSIZE I J ..." lines (see host/host-closure.ts). */
      readonly closure: string;
    }
  | {
      readonly ok: false;
      readonly command: "closure";
      readonly result: "absent" | "too-large" | "failed";
      readonly exitCode: number;
      readonly message: string;
    }
  | Refusal;

/** activate.sh's commands. */
export const SCRIPT_VERBS = [
  "activate",
  "after-boot",
  "confirm-boot",
  "abort-boot",
  "confirm",
  "abort",
  "rollback",
  "prune",
  "check",
  "status",
  "closure",
] as const;
export type ScriptVerb = (typeof SCRIPT_VERBS)[number];

/** A command refused before it ran: bad usage, or another activation holds the lock. */
export interface Refusal {
  readonly ok: false;
  /** The command refused; null when none or an unknown one was given (or an older script). */
  readonly command: ScriptVerb | null;
  readonly result: "usage" | "locked";
  readonly exitCode: number;
  readonly message: string;
  /** locked: since when and until when the holder has the lock (Unix seconds). */
  readonly since?: number | null;
  readonly deadline?: number | null;
}

/** What `verb` answers when it ran (not a refusal). */
export type Answer<V extends ScriptVerb> = Exclude<ActivationResult, Refusal> & {
  readonly command: V;
};

/** What `verb` answered when it ran (not a refusal); undefined for anything else. */
export function answerOf<V extends ScriptVerb>(
  result: ActivationResult | undefined,
  verb: V,
): Answer<V> | undefined {
  if (result === undefined || result.command !== verb || isRefusal(result)) return undefined;
  return result as Answer<V>;
}

export function isRefusal(result: ActivationResult): result is Refusal {
  return !result.ok && (result.result === "usage" || result.result === "locked");
}
