// What the fleet commands (build, plan, deploy, rollback, status) share: the fleet file and
// selection flags, rollout overrides, and the renderer for their events.
import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { flakeFleetSource } from "../deploy/flake-fleet-source.js";
import { InputError, NixshipError, UsageError } from "../errors.js";
import { type Action, parseAction } from "../fleet/action.js";
import {
  DEFAULT_MAX_CONNECTIONS,
  FLAKE_INSTALLABLE_PATTERN,
  type Fleet,
  MAX_CONNECTIONS_LIMIT,
  POLICY_DEFAULTS,
  REBOOT_MODES,
  type RebootMode,
  type RolloutPolicy,
} from "../fleet/fleet.js";
import { applyOverride, type PolicyOverride } from "../fleet/host-policy.js";
import { DEFAULT_FLEET_OUTPUT, loadFlakeFleet } from "../fleet/load-flake-fleet.js";
import { DEFAULT_FLEET_FILE, loadFleet } from "../fleet/load-fleet.js";
import { POLICY_RANGES } from "../fleet/read-policy.js";
import { PRUNE_GC_TIMEOUT } from "../host/activation.js";
import { type ListenAddress, parseListen } from "../util/listen-address.js";
import { PACKAGE_ROOT } from "../util/package-root.js";
import type { CliIO } from "./command.js";
import { parseIntFlag } from "./command.js";
import type { FlagValues } from "./usage.js";

export const FLEET_FLAGS = {
  fleet: { type: "string" },
  on: { type: "string" },
  json: { type: "boolean" },
  "max-connections": { type: "string" },
} as const;

export const FLEET_VALUES: FlagValues<typeof FLEET_FLAGS> = {
  fleet: "FILE",
  on: "SELECTOR",
  "max-connections": "N",
};

/** For a command that reads the fleet but selects no host and reaches none. */
export const FLEET_FILE_FLAGS = {
  fleet: { type: "string" },
  json: { type: "boolean" },
} as const;

const FLEET_FILE_LINES = `  --fleet FILE       the fleet file, or a flake's fleet output (.#${DEFAULT_FLEET_OUTPUT},
                     path:DIR#${DEFAULT_FLEET_OUTPUT}) (default: $NIXSHIP_FLEET, else ./${DEFAULT_FLEET_FILE},
                     else the ${DEFAULT_FLEET_OUTPUT} output of the flake in this directory)`;

export const FLEET_FILE_HELP = `${FLEET_FILE_LINES}
  --json             machine-readable output on stdout`;

/** The fleet flags' help, `on` saying what --on selects (and what its absence means). */
export function fleetHelp(
  on = "hosts by name or tag: web1,@web,@db-* (default: every host)",
): string {
  return `${FLEET_FILE_LINES}
  --on SELECTOR      ${on}
  --json             machine-readable output on stdout
  --max-connections N  the most ssh connections held at once (fleet's ssh.maxConnections,
                     else ${DEFAULT_MAX_CONNECTIONS}); hosts beyond it connect again for their wave`;
}

export const FLEET_HELP = fleetHelp();

export interface FleetInput {
  readonly fleet: Fleet;
  /** The fleet file, or the flake's fleet (`/dir#nixship`), as messages name it. */
  readonly fleetFile: string;
  /** Where its relative paths and flake installables are resolved. */
  readonly fleetDir: string;
}

/** The fleet the flags name, with --max-connections (checked first); `command` names errors. */
export async function readFleetInput(
  values: { fleet?: string | undefined; "max-connections"?: string | undefined },
  io: CliIO,
  command?: string,
): Promise<FleetInput> {
  // `--fleet "$FLEET"` with FLEET unset must not deploy the fleet that happens to be here.
  if (values.fleet !== undefined && values.fleet.trim() === "") {
    throw new UsageError(
      `${command === undefined ? "" : `${command}: `}--fleet is empty`,
      `name a fleet file or a flake's fleet output (.#${DEFAULT_FLEET_OUTPUT}); without --fleet, $NIXSHIP_FLEET, else ./${DEFAULT_FLEET_FILE}, else the flake here`,
    );
  }
  const text = values["max-connections"];
  const bound = text === undefined ? undefined : connectionBound(text, command ?? "nixship");
  const fromEnv = values.fleet === undefined && Boolean(io.env.NIXSHIP_FLEET);
  const {
    fleet: loaded,
    fleetFile,
    fleetDir,
  } = await loadNamedFleet(values.fleet ?? io.env.NIXSHIP_FLEET).catch((err: unknown) => {
    // A fleet the user did not name on this command line: say where its name came from.
    if (fromEnv && err instanceof NixshipError) {
      err.message = `the fleet $NIXSHIP_FLEET names: ${err.message}`;
    }
    throw err;
  });
  const fleet =
    bound === undefined ? loaded : { ...loaded, ssh: { ...loaded.ssh, maxConnections: bound } };
  return { fleet, fleetFile, fleetDir };
}

/**
 * The fleet `named` names: a fleet file, or a flake's output (FLAKE#ATTR that is no file).
 * Unnamed: ./nixship.json, else (no such file) the `nixship` output of the flake in this
 * directory, when there is one.
 */
async function loadNamedFleet(named: string | undefined): Promise<FleetInput> {
  // An empty $NIXSHIP_FLEET names nothing.
  const name = (named || undefined) ?? fleetHere() ?? DEFAULT_FLEET_FILE;
  if (!(FLAKE_INSTALLABLE_PATTERN.test(name) && !existsSync(name))) {
    const fleetFile = resolve(name);
    return { fleet: await loadFleet(fleetFile), fleetFile, fleetDir: dirname(fleetFile) };
  }
  const source = await flakeFleetSource(
    name,
    process.cwd(),
    named ? undefined : `the fleet here (${name}: no --fleet, and no ./${DEFAULT_FLEET_FILE})`,
  );
  const fleet = await loadFlakeFleet(source).catch((err: unknown) => {
    // Looked for, not named: say where else a fleet could have been.
    if (named || !(err instanceof InputError) || err.code !== "fleet-output-missing") throw err;
    throw new InputError(
      err.code,
      `no fleet here: no ./${DEFAULT_FLEET_FILE}, and the flake here has no output "${DEFAULT_FLEET_OUTPUT}"`,
      {
        hint: `write ./${DEFAULT_FLEET_FILE} or the flake's ${DEFAULT_FLEET_OUTPUT} output (docs/fleet.md), or name the fleet with --fleet`,
      },
    );
  });
  return { fleet, fleetFile: source.name, fleetDir: source.baseDir };
}

/**
 * The fleet in this directory when none is named: ./nixship.json, else the `nixship` output of
 * the flake here, unless that flake is nixship's own (its checkout, where the README's alias
 * runs it: evaluating it would fetch nixpkgs). Undefined: neither.
 */
export function fleetHere(cwd: string = process.cwd()): string | undefined {
  if (existsSync(resolve(cwd, DEFAULT_FLEET_FILE))) return DEFAULT_FLEET_FILE;
  if (!existsSync(resolve(cwd, "flake.nix")) || resolve(cwd) === PACKAGE_ROOT) return undefined;
  return `.#${DEFAULT_FLEET_OUTPUT}`;
}

/** `--max-connections N`: a whole number from 1 to MAX_CONNECTIONS_LIMIT, else a usage error. */
function connectionBound(text: string, command: string): number {
  const n = parseIntFlag(text, "--max-connections", command) ?? 1;
  if (n > MAX_CONNECTIONS_LIMIT) {
    throw new UsageError(
      `${command}: --max-connections takes at most ${MAX_CONNECTIONS_LIMIT}, got '${text}'`,
    );
  }
  return n;
}

export const ROLLOUT_FLAGS = {
  action: { type: "string" },
  parallel: { type: "string" },
  "max-failures": { type: "string" },
  canary: { type: "string" },
  "confirm-timeout": { type: "string" },
  "activation-timeout": { type: "string" },
  "keep-generations": { type: "string" },
  reboot: { type: "string" },
  "reboot-timeout": { type: "string" },
  "reboot-rollback": { type: "boolean" },
  "no-reboot-rollback": { type: "boolean" },
  "require-pinned": { type: "boolean" },
  "no-delta": { type: "boolean" },
} as const;

export const ROLLOUT_VALUES: FlagValues<typeof ROLLOUT_FLAGS> = {
  action: "A",
  parallel: "N",
  "max-failures": "N",
  canary: "N",
  "confirm-timeout": "S",
  "activation-timeout": "S",
  "keep-generations": "N",
  reboot: "never|auto|always",
  "reboot-timeout": "S",
};

export const ROLLOUT_HELP = `  --action A             switch (default), boot, test or dry-activate
  --parallel N           hosts per wave (fleet policy, else 10)
  --max-failures N       failures tolerated before no new wave starts (else 0)
  --canary N             hosts deployed alone first (else 1; 0: none)
  --confirm-timeout S    seconds a host waits for the deployer's verdict (its HTTP checks,
                         then the confirmation over a new connection) before it rolls itself
                         back (magic rollback; else 30; 0: off, but with HTTP checks a
                         window as long as the checks take, plus 10 s)
  --activation-timeout S seconds an activation (realise, profile, switch) may run on a host;
                         past it the host stops the switch and goes back to its previous
                         system (fleet policy, else ${POLICY_DEFAULTS.activationTimeout})
  --keep-generations N   after a confirmed activation, each host keeps its newest N system
                         generations (and the one a rollback goes to), removes the rest and
                         collects garbage, within ${PRUNE_GC_TIMEOUT} s (fleet policy, else 0: keep all)
  --reboot MODE          never (the default), auto or always: with auto, a host whose new
                         system's kernel, initrd or kernel modules differ from those it booted
                         gets switch-to-configuration boot, then a reboot; the deployer waits
                         for it to come back on the new system, runs the health checks and
                         confirms, or puts the previous generation back (always: every host
                         that changes is rebooted)
  --reboot-timeout S     seconds a rebooted host has to come back (fleet policy, else ${POLICY_DEFAULTS.rebootTimeout})
  --[no-]reboot-rollback whether a host that fails after its reboot is rebooted into the
                         previous system too (else it boots it at its next reboot; default on)
  --require-pinned       refuse to change a host not reached through its installed, pinned
                         nixship-activate (ssh with sudo; agent hosts are pinned by their
                         agent's keys); fleet policy requirePinned, else off
  --no-delta             hosts fetch every path whole, no delta against a path they have
                         (docs/deltas.md; fleet policy deltas, else on unless the fleet file
                         says "deltas": false)`;

type StringFlag = {
  [K in keyof typeof ROLLOUT_FLAGS]: (typeof ROLLOUT_FLAGS)[K]["type"] extends "string" ? K : never;
}[keyof typeof ROLLOUT_FLAGS];

function parseRebootFlag(value: string | undefined, command: string): RebootMode | undefined {
  if (value === undefined) return undefined;
  if ((REBOOT_MODES as readonly string[]).includes(value)) return value as RebootMode;
  throw new UsageError(
    `${command}: --reboot takes ${REBOOT_MODES.join(", ")}; got '${value}'`,
    "auto reboots the hosts whose kernel, initrd or modules change",
  );
}

export function readRollout(
  values: Partial<Record<keyof typeof ROLLOUT_FLAGS, string | boolean | undefined>> & {
    readonly [K in StringFlag]?: string | undefined;
  } & {
    readonly "reboot-rollback"?: boolean;
    readonly "no-reboot-rollback"?: boolean;
    readonly "require-pinned"?: boolean;
    readonly "no-delta"?: boolean;
  },
  fleet: Fleet,
  command: string,
): { policy: RolloutPolicy; policyFlags: PolicyOverride; action: Action } {
  const given = {
    parallel: rangedFlag(values.parallel, "--parallel", command, POLICY_RANGES.parallel),
    canary: rangedFlag(values.canary, "--canary", command, POLICY_RANGES.canary),
    confirmTimeout: rangedFlag(
      values["confirm-timeout"],
      "--confirm-timeout",
      command,
      POLICY_RANGES.confirmTimeout,
    ),
    activationTimeout: rangedFlag(
      values["activation-timeout"],
      "--activation-timeout",
      command,
      POLICY_RANGES.activationTimeout,
    ),
    keepGenerations: rangedFlag(
      values["keep-generations"],
      "--keep-generations",
      command,
      POLICY_RANGES.keepGenerations,
    ),
    reboot: parseRebootFlag(values.reboot, command),
    rebootTimeout: rangedFlag(
      values["reboot-timeout"],
      "--reboot-timeout",
      command,
      POLICY_RANGES.rebootTimeout,
    ),
    rebootRollback: values["no-reboot-rollback"]
      ? false
      : values["reboot-rollback"]
        ? true
        : undefined,
    requirePinned: values["require-pinned"] ? true : undefined,
    deltas: values["no-delta"] ? false : undefined,
  };
  if (values["no-reboot-rollback"] && values["reboot-rollback"]) {
    throw new UsageError(`${command}: give --reboot-rollback or --no-reboot-rollback, not both`);
  }
  // The flags win over the fleet's policy and over every role's (policies).
  const policyFlags: PolicyOverride = Object.fromEntries(
    Object.entries(given).filter(([, v]) => v !== undefined),
  );
  const policy: RolloutPolicy = {
    ...applyOverride(fleet.policy, policyFlags),
    maxFailures:
      parseIntFlag(values["max-failures"], "--max-failures", command, 0) ??
      fleet.policy.maxFailures,
  };
  return { policy, policyFlags, action: parseAction(values.action ?? "switch") };
}

/** A policy's number given as a flag, held to the range the fleet file's key has. */
export function rangedFlag(
  value: string | undefined,
  flag: string,
  command: string,
  range: { readonly min: number; readonly max?: number },
): number | undefined {
  return parseIntFlag(value, flag, command, range.min, range.max);
}

/** --serve-cache's address, which needs a cache to serve. */
export function readServeCache(
  given: string | undefined,
  fleet: { readonly cache: unknown },
  command: string,
): ListenAddress | undefined {
  if (given === undefined) return undefined;
  if (fleet.cache === undefined) {
    throw new UsageError(`${command}: --serve-cache needs a cache in the fleet file`);
  }
  return parseListen(given, `${command}: --serve-cache`);
}
