// The `policy` section of the fleet file: rollout numbers and health checks, defaults filled in.

import { shownUrl } from "../util/url-credentials.js";
import { likelyTypo } from "./closest.js";
import {
  COMMAND_CHECK_DEFAULTS,
  type CommandCheck,
  type FleetHost,
  type HealthChecks,
  HTTP_CHECK_DEFAULTS,
  type HttpCheck,
  POLICY_DEFAULTS,
  REBOOT_MODES,
  type RebootMode,
  type RolloutPolicy,
} from "./fleet.js";
import { FLEET_KEYS } from "./fleet-keys.js";
import { healthUrlProblem } from "./health-url.js";
import type { PolicyOverride, PolicyRule } from "./host-policy.js";
import {
  got,
  inputProblem,
  isJsonObject,
  type KeyShape,
  type Problems,
  readArray,
  readInteger,
  readObject,
  readString,
} from "./json-check.js";
import type { JsonPath } from "./json-path.js";
import { readPausePolicy } from "./pause-policy.js";
import { readBakeKeys } from "./read-bake.js";
import { parseSelector, type SelectorTerm, termMatcher } from "./select.js";

/**
 * The range of each number a policy (or a `policies` entry, or a flag) sets. The timeouts end
 * within a day: what a host may take to activate, confirm or reboot, as an agent's
 * activationTimeout (and past about 24 days no timer could wait for it).
 */
export const POLICY_RANGES = {
  parallel: { min: 1 },
  maxFailures: { min: 0 },
  canary: { min: 0 },
  confirmTimeout: { min: 0, max: 86_400 },
  activationTimeout: { min: 1, max: 86_400 },
  keepGenerations: { min: 0 },
  rebootTimeout: { min: 1, max: 86_400 },
} as const satisfies Record<string, { readonly min: number; readonly max?: number }>;

/**
 * The range of a health check's timeout: within a day, as the policy's own timeouts (and the
 * confirmation window the HTTP checks set, which is their sum: activationSteps).
 */
export const CHECK_TIMEOUT_RANGE = { min: 1, max: 86_400 } as const;

export function readPolicy(value: unknown, problems: Problems): RolloutPolicy | undefined {
  const path = ["policy"];
  const policy = readObject(value, path, problems, FLEET_KEYS.policy);
  if (policy === undefined) return undefined;
  const count = (key: NumericPolicyKey & keyof typeof POLICY_RANGES) =>
    policy[key] === undefined
      ? POLICY_DEFAULTS[key]
      : (readInteger(policy[key], [...path, key], problems, POLICY_RANGES[key]) ??
        POLICY_DEFAULTS[key]);
  const reboot = readReboot(policy, path, problems);
  const health = readHealth(
    policy.health === undefined ? {} : policy.health,
    [...path, "health"],
    problems,
    FLEET_HEALTH,
  );
  const pause = readPausePolicy(policy, path, problems);
  return {
    parallel: count("parallel"),
    maxFailures: count("maxFailures"),
    canary: count("canary"),
    confirmTimeout: count("confirmTimeout"),
    activationTimeout: count("activationTimeout"),
    keepGenerations: count("keepGenerations"),
    rebootTimeout: count("rebootTimeout"),
    reboot: reboot.reboot ?? POLICY_DEFAULTS.reboot,
    rebootRollback: reboot.rebootRollback ?? POLICY_DEFAULTS.rebootRollback,
    requirePinned: reboot.requirePinned ?? POLICY_DEFAULTS.requirePinned,
    deltas: reboot.deltas ?? POLICY_DEFAULTS.deltas,
    health: health ?? { http: [], commands: [] },
    ...(pause === undefined ? {} : { pause }),
    ...readBakeKeys(policy, path, problems),
  };
}

type NumericPolicyKey = {
  [K in keyof typeof POLICY_DEFAULTS]: (typeof POLICY_DEFAULTS)[K] extends number ? K : never;
}[keyof typeof POLICY_DEFAULTS];

/** `reboot` (never, auto, always), and the switches `rebootRollback`, `requirePinned`, `deltas`. */
function readReboot(
  entry: Record<string, unknown>,
  path: JsonPath,
  problems: Problems,
): Pick<PolicyOverride, "reboot" | "rebootRollback" | "requirePinned" | "deltas"> {
  const out: {
    -readonly [K in "reboot" | "rebootRollback" | "requirePinned" | "deltas"]?: PolicyOverride[K];
  } = {};
  const mode = entry.reboot;
  if (mode !== undefined) {
    if (typeof mode === "string" && (REBOOT_MODES as readonly string[]).includes(mode)) {
      out.reboot = mode as RebootMode;
    } else {
      problems.add([...path, "reboot"], `must be one of ${REBOOT_MODES.join(", ")} (${got(mode)})`);
    }
  }
  for (const key of ["rebootRollback", "requirePinned", "deltas"] as const) {
    const value = entry[key];
    if (value === undefined) continue;
    if (typeof value === "boolean") out[key] = value;
    else problems.add([...path, key], `must be true or false (${got(value)})`);
  }
  return out;
}

/**
 * The `policies` section: one entry per selector term (`@tag` or a host name, globs allowed),
 * each setting some policy keys. A key that matches no host is a problem: a typo must not
 * leave a role without its checks.
 */
export function readPolicies(
  value: unknown,
  hosts: readonly Pick<FleetHost, "name" | "tags">[] | undefined,
  problems: Problems,
): PolicyRule[] | undefined {
  const path = ["policies"];
  if (!isJsonObject(value)) return problems.add(path, `must be an object (${got(value)})`);
  const rules: PolicyRule[] = [];
  for (const [selector, entry] of Object.entries(value)) {
    const at = [...path, selector];
    const term = selectorTerm(selector);
    if (typeof term === "string") {
      problems.add(at, term);
      continue;
    }
    if (hosts !== undefined && !hosts.some(termMatcher(term))) {
      const known = term.kind === "tag" ? hosts.flatMap((h) => h.tags) : hosts.map((h) => h.name);
      const typo = likelyTypo(term.pattern, known);
      const mean =
        typo === undefined ? "" : ` (did you mean "${term.kind === "tag" ? "@" : ""}${typo}"?)`;
      problems.add(
        at,
        `matches no host: ${term.kind === "tag" ? "no host has tag" : "no host is named"} "${term.pattern}"${mean}`,
      );
    }
    const override = readOverride(entry, at, problems);
    if (override !== undefined) rules.push({ selector, override });
  }
  return rules;
}

/** The one selector term a `policies` key is, or what is wrong with it. */
function selectorTerm(key: string): SelectorTerm | string {
  const problem = inputProblem(() => parseSelector(key));
  if (problem !== undefined) return `is not a host name or @tag: ${problem}`;
  const terms = parseSelector(key);
  if (terms.length !== 1) return "names one host or @tag (one entry each)";
  return terms[0] as SelectorTerm;
}

function readOverride(
  value: unknown,
  path: JsonPath,
  problems: Problems,
): PolicyOverride | undefined {
  const entry = readObject(value, path, problems, FLEET_KEYS.policyOverride);
  if (entry === undefined) return undefined;
  const override: Record<string, unknown> = {};
  // Every number but maxFailures, which is the rollout's alone.
  const { maxFailures: _, ...ranges } = POLICY_RANGES;
  for (const [key, range] of Object.entries(ranges)) {
    if (entry[key] === undefined) continue;
    const n = readInteger(entry[key], [...path, key], problems, range);
    if (n !== undefined) override[key] = n;
  }
  Object.assign(override, readReboot(entry, path, problems), readBakeKeys(entry, path, problems));
  if (entry.health !== undefined) {
    const health = readHealth(entry.health, [...path, "health"], problems, FLEET_HEALTH);
    if (health !== undefined && isJsonObject(entry.health)) {
      const raw = entry.health;
      override.health = {
        ...(raw.http === undefined ? {} : { http: health.http }),
        ...(raw.commands === undefined ? {} : { commands: health.commands }),
      };
    }
  }
  return override as PolicyOverride;
}

/** Which keys health checks take, and the values of optional ones left out. */
export interface HealthShape {
  readonly keys: {
    readonly health: KeyShape;
    readonly httpCheck: KeyShape;
    readonly commandCheck: KeyShape;
  };
  /** None: every key is required (a signed release states everything). */
  readonly defaults?: {
    readonly http: typeof HTTP_CHECK_DEFAULTS;
    readonly command: typeof COMMAND_CHECK_DEFAULTS;
  };
}

/** The fleet file's health checks: optional keys, filled with defaults. */
export const FLEET_HEALTH: HealthShape = {
  keys: FLEET_KEYS,
  defaults: { http: HTTP_CHECK_DEFAULTS, command: COMMAND_CHECK_DEFAULTS },
};

export function readHealth(
  value: unknown,
  path: JsonPath,
  problems: Problems,
  shape: HealthShape,
): HealthChecks | undefined {
  const health = readObject(value, path, problems, shape.keys.health);
  if (health === undefined) return undefined;
  const list = <T>(key: string, read: (item: unknown, path: JsonPath) => T | undefined): T[] => {
    const items = health[key] === undefined ? [] : readArray(health[key], [...path, key], problems);
    return (items ?? []).flatMap((item, i) => read(item, [...path, key, i]) ?? []);
  };
  return {
    http: list("http", (item, itemPath) => readHttpCheck(item, itemPath, problems, shape)),
    commands: list("commands", (item, itemPath) =>
      readCommandCheck(item, itemPath, problems, shape),
    ),
  };
}

function readHttpCheck(
  value: unknown,
  path: JsonPath,
  problems: Problems,
  shape: HealthShape,
): HttpCheck | undefined {
  const check = readObject(value, path, problems, shape.keys.httpCheck);
  if (check === undefined) return undefined;
  const url =
    check.url === undefined ? undefined : readString(check.url, [...path, "url"], problems);
  const urlProblem = url === undefined ? undefined : healthUrlProblem(url);
  if (url !== undefined && urlProblem !== undefined)
    problems.add([...path, "url"], `${urlProblem} (${got(shownUrl(url))})`);
  const expectStatus =
    check.expectStatus === undefined
      ? shape.defaults?.http.expectStatus
      : readInteger(check.expectStatus, [...path, "expectStatus"], problems, {
          min: 100,
          max: 599,
        });
  const timeout =
    check.timeout === undefined
      ? shape.defaults?.http.timeout
      : readInteger(check.timeout, [...path, "timeout"], problems, CHECK_TIMEOUT_RANGE);
  if (url === undefined || expectStatus === undefined || timeout === undefined) return undefined;
  return { url, expectStatus, timeout, ...readRetry(check, path, problems) };
}

function readCommandCheck(
  value: unknown,
  path: JsonPath,
  problems: Problems,
  shape: HealthShape,
): CommandCheck | undefined {
  const check = readObject(value, path, problems, shape.keys.commandCheck);
  if (check === undefined) return undefined;
  const run =
    check.run === undefined ? undefined : readString(check.run, [...path, "run"], problems);
  const timeout =
    check.timeout === undefined
      ? shape.defaults?.command.timeout
      : readInteger(check.timeout, [...path, "timeout"], problems, CHECK_TIMEOUT_RANGE);
  if (run === undefined || timeout === undefined) return undefined;
  return { run, timeout, ...readRetry(check, path, problems) };
}

/** A check's `retry`, kept only when false (absent means true, in files and releases alike). */
function readRetry(
  check: Record<string, unknown>,
  path: JsonPath,
  problems: Problems,
): { retry?: false } {
  if (check.retry === undefined || check.retry === true) return {};
  if (check.retry === false) return { retry: false };
  problems.add([...path, "retry"], `must be true or false (${got(check.retry)})`);
  return {};
}
