// The deployer's side of the activation contract (activate.sh): the script itself, the
// arguments of each command, and its one-line JSON result as a typed union.
import { readFileSync } from "node:fs";
import { OperationError } from "../errors.js";
import type { Action } from "../fleet/action.js";
import { POLICY_DEFAULTS } from "../fleet/fleet.js";
import { isHostPhase, type SessionPhase } from "../fleet/phase.js";
import type { StorePath } from "../nix/store-path.js";
import { pipedShellInput } from "../util/piped-shell-input.js";
import { shellQuote } from "../util/shell-quote.js";
import { withoutControls } from "../util/text.js";
import type { ActivationResult } from "./activation-answer.js";
import { checkActivationResult } from "./activation-result.js";
import { compactScript } from "./compact-script.js";

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
  /** The host does not run the system --expect-current names: nothing changed. */
  changed: 14,
} as const;

/**
 * Seconds an activation (realise, profile, switch) gets when none is given: the fleet policy's
 * default, the one value every mode and the agent use (activate.sh's own is kept equal by a test).
 */
export const DEFAULT_ACTIVATION_TIMEOUT: number = POLICY_DEFAULTS.activationTimeout;

/**
 * The script, read once from the build: `npm run build` assembles it from src/host/activate/
 * into dist/host/activate.sh, beside this module compiled (and the one the sources' tests run),
 * named from dist/ (one level up) so that the bundled CLI in dist/cli/ finds it too.
 */
let script: string | undefined;
export function activateScript(): string {
  const file = import.meta.url.endsWith(".ts")
    ? new URL("../../dist/host/activate.sh", import.meta.url)
    : new URL("../host/activate.sh", import.meta.url);
  try {
    script ??= readFileSync(file, "utf8");
  } catch (error) {
    throw new OperationError(
      "no-activate-script",
      `cannot read the host script ${file.pathname}: ${(error as Error).message}`,
      { hint: "run `npm run build`, which assembles it from src/host/activate/", cause: error },
    );
  }
  return script;
}

export interface ActivateOptions {
  readonly path: StorePath | string;
  readonly action: Action;
  /** Substituters the host realises the path from, with signatures required. */
  readonly substituters?: readonly string[];
  readonly trustedKeys?: readonly string[];
  /** The command checks, each run as root on the host within its own timeout (healthArgs). */
  readonly healthChecks?: readonly HealthCommand[];
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
   * in the script's input variable SECRETS_VARIABLE. Absent: the host's secrets are left as they
   * are. (The SSM document has the host fetch it from a presigned URL, given on the script's
   * standard input, `--secrets-url -`: a URL in the arguments would show in `ps` and the lock.)
   */
  readonly secrets?: {
    /** A store path holding bin/age, realised as the system is; absent: age from the host's PATH. */
    readonly age?: string;
    /** The private key to decrypt with; absent: /etc/ssh/ssh_host_ed25519_key. */
    readonly hostKey?: string;
  };
  /**
   * A store path holding bin/zstd, realised as the system is: the host first rebuilds what it
   * can of the system from the cache's deltas (docs/deltas.md); absent: every path whole.
   */
  readonly deltaTool?: string;
  /**
   * The system the host must run for the activation to go ahead, checked under the host's lock
   * before anything changes; one that runs another answers `changed` (exit 14).
   */
  readonly expectCurrent?: string;
}

/** A command check as activate.sh takes it: retried until its timeout unless retry is false. */
export interface HealthCommand {
  readonly run: string;
  /** Seconds. */
  readonly timeout: number;
  readonly retry?: boolean;
}

/**
 * The command checks as activate.sh's options: each preceded by its own --health-timeout, then
 * the longest again, last: an older script (a pinned host's installed one) takes that last one
 * for every check, as it always did.
 */
export function healthArgs(checks: readonly HealthCommand[] | undefined): string[] {
  if (checks === undefined || checks.length === 0) return [];
  const args: string[] = [];
  for (const c of checks) {
    args.push("--health-timeout", String(c.timeout));
    args.push(c.retry === false ? "--health-once" : "--health-cmd", c.run);
  }
  args.push("--health-timeout", String(Math.max(...checks.map((c) => c.timeout))));
  return args;
}

/** Seconds the command checks may take at most on the host: each within its timeout. */
export function healthSeconds(checks: readonly HealthCommand[] | undefined): number {
  return (checks ?? []).reduce((sum, c) => sum + c.timeout, 0);
}

export function activateArgs(o: ActivateOptions): string[] {
  const args = ["activate", "--path", o.path, "--action", o.action];
  for (const s of o.substituters ?? []) args.push("--substituter", s);
  for (const k of o.trustedKeys ?? []) args.push("--trusted-key", k);
  args.push(...healthArgs(o.healthChecks));
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
  if (o.expectCurrent !== undefined) args.push("--expect-current", o.expectCurrent);
  if (o.secrets) {
    args.push("--secrets");
    if (o.secrets.age !== undefined) args.push("--age", o.secrets.age);
    if (o.secrets.hostKey !== undefined) args.push("--host-key", o.secrets.hostKey);
  }
  return args;
}

export const confirmArgs = (token: string) => ["confirm", "--token", token];
/** After a reboot: what booted, then the command checks (see activateArgs for their options). */
export function afterBootArgs(
  token: string,
  checks: readonly HealthCommand[],
  rebootRollback: boolean,
): string[] {
  const args = ["after-boot", "--token", token, ...healthArgs(checks)];
  if (rebootRollback) args.push("--reboot-rollback");
  return args;
}
/** `check`: the command checks (see activateArgs for their options) again, changing nothing. */
export function checkArgs(checks: readonly HealthCommand[]): string[] {
  return ["check", ...healthArgs(checks)];
}
export const confirmBootArgs = (token: string) => ["confirm-boot", "--token", token];
export const abortBootArgs = (token: string, rebootRollback: boolean) => [
  "abort-boot",
  "--token",
  token,
  ...(rebootRollback ? ["--reboot-rollback"] : []),
];
/**
 * `abort`: stops the activation under `token` and rolls it back; one that has not begun never
 * will (the host keeps the token cancelled), unless `keepToken`: for a caller that asks whether
 * anything began in order to activate again under the same token.
 */
export const abortArgs = (token: string, keepToken = false) => [
  "abort",
  "--token",
  token,
  ...(keepToken ? ["--keep-token"] : []),
];
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
  | { readonly verb: "confirm" | "confirm-boot"; readonly token: string }
  | { readonly verb: "abort"; readonly token: string; readonly keepToken?: boolean }
  | {
      readonly verb: "rollback";
      readonly generation?: number | undefined;
      readonly activationTimeout?: number | undefined;
    }
  | { readonly verb: "prune"; readonly keep: number }
  | { readonly verb: "status"; readonly checkPaths?: boolean }
  | { readonly verb: "closure"; readonly path: string }
  | {
      readonly verb: "check";
      readonly checks: readonly HealthCommand[];
    }
  | {
      readonly verb: "after-boot";
      readonly token: string;
      readonly checks: readonly HealthCommand[];
      readonly rebootRollback: boolean;
    }
  | { readonly verb: "abort-boot"; readonly token: string; readonly rebootRollback: boolean };

/** The one place a command becomes activate.sh's arguments. */
export function scriptArgs(command: ScriptCommand): string[] {
  switch (command.verb) {
    case "confirm":
      return confirmArgs(command.token);
    case "abort":
      return abortArgs(command.token, command.keepToken);
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
    case "check":
      return checkArgs(command.checks);
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
 * one argument Linux caps at 128 KiB), then the script, read at once by every shell
 * (`pipedShellInput`).
 */
export function scriptInput(variables: Readonly<Record<string, string>> = {}): string {
  const lines = Object.entries(variables).map(([name, value]) => {
    if (!/^NIXSHIP_[A-Z_]+$/.test(name)) throw new Error(`not a script variable: ${name}`);
    return `${name}=${shellQuote(value)}\n`;
  });
  return pipedShellInput(`${lines.join("")}${compactActivateScript()}\n`);
}

let compacted: string | undefined;
/**
 * activate.sh as hosts are sent it (piped, or in the SSM document): without its comments, blank
 * lines and indentation (compact-script.ts), 89 kB where the built file has 145; the same
 * program, and less for a host's shell to read and parse in each session.
 */
export function compactActivateScript(): string {
  compacted ??= compactScript(activateScript());
  return compacted;
}

/**
 * The installed activation script of a host with pinned trust (nixosModules.host): what a deploy
 * user runs through sudo, and what the SSM document runs where it exists.
 */
export const PINNED_ACTIVATOR = "/run/current-system/sw/bin/nixship-activate";

export { BOOT_PARTS, type BootPart, type RebootState } from "../status/boot.js";
export * from "./activation-answer.js";

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
