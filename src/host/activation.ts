// The deployer's side of the activation contract (activate.sh): the script itself, the
// arguments of each command, and its one-line JSON result as a typed union.
import { readFileSync } from "node:fs";
import { OperationError } from "../errors.js";
import type { Action } from "../fleet/action.js";
import { POLICY_DEFAULTS } from "../fleet/fleet.js";
import { isHostPhase, type SessionPhase } from "../fleet/phase.js";
import type { StorePath } from "../nix/store-path.js";
import type { RebootState } from "../status/boot.js";
import type { DeltaReport } from "../status/delta-report.js";
import { shellQuote } from "../util/shell-quote.js";
import { withoutControls } from "../util/text.js";
import { checkActivationResult } from "./activation-result.js";

/** activate.sh's exit codes. */
export const ACTIVATE_EXIT = {
  ok: 0,
  usage: 2,
  realise: 3,
  switch: 4,
  health: 5,
  unconfirmed: 6,
  rollbackFailed: 7,
  locked: 8,
  noGeneration: 9,
  timedOut: 10,
  /** The secrets could not be installed (a malformed bundle: usage); nothing else changed. */
  secrets: 11,
  /** prune: the generations could not be removed. */
  prune: 12,
} as const;

/**
 * Seconds an activation (realise, profile, switch) gets when none is given: the fleet policy's
 * default, the one value every mode and the agent use (activate.sh's own is kept equal by a test).
 */
export const DEFAULT_ACTIVATION_TIMEOUT: number = POLICY_DEFAULTS.activationTimeout;

/** The script, read once from the package (src/host/activate.sh sits beside this module). */
let script: string | undefined;
export function activateScript(): string {
  script ??= readFileSync(
    import.meta.url.endsWith(".ts")
      ? new URL("./activate.sh", import.meta.url)
      : new URL("../../src/host/activate.sh", import.meta.url),
    "utf8",
  );
  return script;
}

export interface ActivateOptions {
  readonly path: StorePath | string;
  readonly action: Action;
  /** Substituters the host realises the path from, with signatures required. */
  readonly substituters?: readonly string[];
  readonly trustedKeys?: readonly string[];
  readonly healthCommands?: readonly string[];
  /** Of healthCommands, those run once: their first failure is final. */
  readonly healthOnce?: readonly string[];
  readonly healthTimeout?: number;
  /** Seconds the host waits for `confirm` before rolling itself back (0: no window). */
  readonly confirmTimeout?: number;
  readonly token?: string;
  /** With action boot: the host records the pending boot under this token, then reboots. */
  readonly rebootToken?: string;
  /**
   * With action boot and no reboot: the host records the pending boot under this token, judged
   * once the host booted it (after-boot, confirm-boot, abort-boot).
   */
  readonly bootToken?: string;
  /**
   * Seconds from the start of the activation to the end of switch-to-configuration; past it the
   * switch is stopped, the host goes back to its previous system, and the result is `timed-out`.
   */
  readonly activationTimeout?: number;
  /**
   * Install the host's secrets before the profile is set: the bundle (see secrets-bundle.ts) is
   * in the script's input variable SECRETS_VARIABLE, or fetched from `url` (checked against its
   * sha256). Absent: the host's secrets are left as they are.
   */
  readonly secrets?: {
    /** A store path holding bin/age, realised as the system is; absent: age from the host's PATH. */
    readonly age?: string;
    /** The private key to decrypt with; absent: /etc/ssh/ssh_host_ed25519_key. */
    readonly hostKey?: string;
    readonly url?: { readonly url: string; readonly sha256: string };
  };
  /**
   * A store path holding bin/zstd, realised as the system is: the host first rebuilds what it
   * can of the system from the cache's deltas (docs/deltas.md); absent: every path whole.
   */
  readonly deltaTool?: string;
}

export function activateArgs(o: ActivateOptions): string[] {
  const args = ["activate", "--path", o.path, "--action", o.action];
  for (const s of o.substituters ?? []) args.push("--substituter", s);
  for (const k of o.trustedKeys ?? []) args.push("--trusted-key", k);
  const once = new Set(o.healthOnce ?? []);
  for (const c of o.healthCommands ?? [])
    args.push(once.has(c) ? "--health-once" : "--health-cmd", c);
  if (o.healthTimeout !== undefined) args.push("--health-timeout", String(o.healthTimeout));
  if (o.activationTimeout !== undefined) {
    args.push("--activation-timeout", String(o.activationTimeout));
  }
  if (o.confirmTimeout) {
    if (!o.token) throw new Error("a confirmation window needs a token");
    args.push("--confirm-timeout", String(o.confirmTimeout));
  }
  // With a token, `abort --token` reaches the activation even while it still switches.
  if (o.token) args.push("--token", o.token);
  if (o.rebootToken) args.push("--reboot-token", o.rebootToken);
  else if (o.bootToken) args.push("--boot-token", o.bootToken);
  if (o.deltaTool !== undefined) args.push("--delta-tool", o.deltaTool);
  if (o.secrets) {
    args.push("--secrets");
    if (o.secrets.age !== undefined) args.push("--age", o.secrets.age);
    if (o.secrets.hostKey !== undefined) args.push("--host-key", o.secrets.hostKey);
    if (o.secrets.url !== undefined) {
      args.push("--secrets-url", o.secrets.url.url, "--secrets-sha256", o.secrets.url.sha256);
    }
  }
  return args;
}

export const confirmArgs = (token: string) => ["confirm", "--token", token];
/** After a reboot: what booted, then the command checks (see activateArgs for their options). */
export function afterBootArgs(
  token: string,
  checks: Pick<ActivateOptions, "healthCommands" | "healthOnce" | "healthTimeout">,
  rebootRollback: boolean,
): string[] {
  const args = ["after-boot", "--token", token];
  const once = new Set(checks.healthOnce ?? []);
  for (const c of checks.healthCommands ?? [])
    args.push(once.has(c) ? "--health-once" : "--health-cmd", c);
  if (checks.healthTimeout !== undefined)
    args.push("--health-timeout", String(checks.healthTimeout));
  if (rebootRollback) args.push("--reboot-rollback");
  return args;
}
export const confirmBootArgs = (token: string) => ["confirm-boot", "--token", token];
export const abortBootArgs = (token: string, rebootRollback: boolean) => [
  "abort-boot",
  "--token",
  token,
  ...(rebootRollback ? ["--reboot-rollback"] : []),
];
export const abortArgs = (token: string) => ["abort", "--token", token];
export const rollbackArgs = (generation?: number, activationTimeout?: number) => [
  "rollback",
  ...(generation === undefined ? [] : ["--to", String(generation)]),
  ...(activationTimeout === undefined ? [] : ["--activation-timeout", String(activationTimeout)]),
];
/** Seconds `prune` gives the garbage collector: activate.sh's default --gc-timeout. */
export const PRUNE_GC_TIMEOUT = 300;
/** Seconds a whole `prune` may take: removing generations, rooting systems, and the GC. */
export const PRUNE_TIMEOUT = PRUNE_GC_TIMEOUT + 120;
/** `prune`: keep the newest `keep` generations (and the rollback target), then collect garbage. */
export const pruneArgs = (keep: number) => ["prune", "--keep", String(keep)];
/**
 * `status`; with `checkPaths`, also which of the store paths in the script's input variable
 * CHECK_PATHS_VARIABLE the host's store lacks (see `scriptInput`).
 */
export const statusArgs = (checkPaths = false) =>
  checkPaths ? ["status", "--check-paths"] : ["status"];

/** A command of activate.sh as a transport is asked to run it: the verb, and what it takes. */
export type ScriptCommand =
  | { readonly verb: "confirm" | "abort" | "confirm-boot"; readonly token: string }
  | {
      readonly verb: "rollback";
      readonly generation?: number | undefined;
      readonly activationTimeout?: number | undefined;
    }
  | { readonly verb: "prune"; readonly keep: number }
  | { readonly verb: "status"; readonly checkPaths?: boolean }
  | { readonly verb: "closure"; readonly path: string }
  | {
      readonly verb: "after-boot";
      readonly token: string;
      readonly checks: Pick<ActivateOptions, "healthCommands" | "healthOnce" | "healthTimeout">;
      readonly rebootRollback: boolean;
    }
  | { readonly verb: "abort-boot"; readonly token: string; readonly rebootRollback: boolean };

/** The one place a command becomes activate.sh's arguments. */
export function scriptArgs(command: ScriptCommand): string[] {
  switch (command.verb) {
    case "confirm":
      return confirmArgs(command.token);
    case "abort":
      return abortArgs(command.token);
    case "confirm-boot":
      return confirmBootArgs(command.token);
    case "rollback":
      return rollbackArgs(command.generation, command.activationTimeout);
    case "prune":
      return pruneArgs(command.keep);
    case "status":
      return statusArgs(command.checkPaths);
    case "closure":
      return ["closure", "--path", command.path];
    case "after-boot":
      return afterBootArgs(command.token, command.checks, command.rebootRollback);
    case "abort-boot":
      return abortBootArgs(command.token, command.rebootRollback);
  }
}

const PHASE_MARKER = /^(?:activate: )?@phase ([a-z]+)$/;

/**
 * The phase a line of activate.sh's stderr marks (`activate: @phase NAME`); null for a marker
 * naming a phase this nixship does not know (a newer script's); undefined for any other line.
 */
export function phaseMarker(line: string): SessionPhase | null | undefined {
  const m = PHASE_MARKER.exec(line);
  if (m === null) return undefined;
  const name = m[1] as string;
  return isHostPhase(name) && name !== "copy" ? name : null;
}

/** The variable of the script's input that holds the paths `status --check-paths` asks about. */
export const CHECK_PATHS_VARIABLE = "NIXSHIP_CHECK_PATHS";

/** The variable of the script's input that holds the secrets bundle of `activate --secrets`. */
export const SECRETS_VARIABLE = "NIXSHIP_SECRETS";

/**
 * What is piped to `sh -s`: assignments of `variables` (data too long for a command line, whose
 * one argument Linux caps at 128 KiB), then the script.
 */
export function scriptInput(variables: Readonly<Record<string, string>> = {}): string {
  const lines = Object.entries(variables).map(([name, value]) => {
    if (!/^NIXSHIP_[A-Z_]+$/.test(name)) throw new Error(`not a script variable: ${name}`);
    return `${name}=${shellQuote(value)}\n`;
  });
  return lines.join("") + activateScript();
}

/**
 * The installed activation script of a host with pinned trust (nixosModules.host): what a deploy
 * user runs through sudo, and what the SSM document runs where it exists.
 */
export const PINNED_ACTIVATOR = "/run/current-system/sw/bin/nixship-activate";

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

export { BOOT_PARTS, type BootPart, type RebootState } from "../status/boot.js";

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
      /** timed-out: ran past --activation-timeout (exit 10); the switch was stopped. */
      readonly result: "failed" | "timed-out";
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
        | "unknown"
        | "unknown-token";
      readonly exitCode: number;
      readonly message: string;
      readonly generation: number | null;
      readonly current: string | null;
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

/** The JSON result on the last line of activate.sh's stdout. */
export function parseActivationResult(stdout: string, host: string): ActivationResult {
  const last = stdout.trim().split("\n").at(-1) ?? "";
  let value: unknown;
  try {
    value = JSON.parse(last);
  } catch {
    value = undefined;
  }
  if (typeof value !== "object" || value === null) {
    throw new OperationError(
      "activation-no-result",
      `${host}: the activation script gave no JSON result${last ? `; its last line: ${withoutControls(last.slice(0, 200))}` : ""}`,
      { hint: "the connection may have dropped, or sh on the host is not POSIX" },
    );
  }
  const checked = checkActivationResult(value);
  if ("problem" in checked) {
    throw new OperationError(
      "activation-bad-result",
      `${host}: the activation script's result is malformed: ${checked.problem}`,
      {
        hint: "the host runs another activate.sh than this nixship's, or something answers for it",
      },
    );
  }
  return checked;
}
