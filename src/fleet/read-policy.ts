// The `policy` section of the fleet file: rollout numbers and health checks, defaults filled in.
import {
  COMMAND_CHECK_DEFAULTS,
  type CommandCheck,
  type HealthChecks,
  HTTP_CHECK_DEFAULTS,
  type HttpCheck,
  POLICY_DEFAULTS,
  type RolloutPolicy,
} from "./fleet.js";
import { FLEET_KEYS } from "./fleet-keys.js";
import { healthUrlProblem } from "./health-url.js";
import {
  got,
  type KeyShape,
  type Problems,
  readArray,
  readInteger,
  readObject,
  readString,
} from "./json-check.js";
import type { JsonPath } from "./json-path.js";

export function readPolicy(value: unknown, problems: Problems): RolloutPolicy | undefined {
  const path = ["policy"];
  const policy = readObject(value, path, problems, FLEET_KEYS.policy);
  if (policy === undefined) return undefined;
  const count = (key: keyof typeof POLICY_DEFAULTS, min: number) =>
    policy[key] === undefined
      ? POLICY_DEFAULTS[key]
      : (readInteger(policy[key], [...path, key], problems, { min }) ?? POLICY_DEFAULTS[key]);
  const health = readHealth(
    policy.health === undefined ? {} : policy.health,
    [...path, "health"],
    problems,
    FLEET_HEALTH,
  );
  return {
    parallel: count("parallel", 1),
    maxFailures: count("maxFailures", 0),
    canary: count("canary", 0),
    confirmTimeout: count("confirmTimeout", 0),
    activationTimeout: count("activationTimeout", 1),
    keepGenerations: count("keepGenerations", 0),
    health: health ?? { http: [], commands: [] },
  };
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
  if (urlProblem !== undefined) problems.add([...path, "url"], `${urlProblem} (${got(url)})`);
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
      : readInteger(check.timeout, [...path, "timeout"], problems, { min: 1 });
  if (url === undefined || expectStatus === undefined || timeout === undefined) return undefined;
  return { url, expectStatus, timeout };
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
      : readInteger(check.timeout, [...path, "timeout"], problems, { min: 1 });
  if (run === undefined || timeout === undefined) return undefined;
  return { run, timeout };
}
