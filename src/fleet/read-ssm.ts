// AWS SSM Run Command in the fleet file: the top-level `ssm` settings (document, region,
// timeout; defaults filled in) and the `targets` an ssm host may name instead of an instance ID.
import { SSM_DEFAULTS, type SsmSettings, type SsmTarget } from "./fleet.js";
import { FLEET_KEYS } from "./fleet-keys.js";
import { type Problems, readArray, readInteger, readObject, readString } from "./json-check.js";
import type { JsonPath } from "./json-path.js";

/** What SSM accepts as a document name. */
export const SSM_DOCUMENT_NAME_PATTERN = /^[a-zA-Z0-9_.-]{3,128}$/;
/** An AWS region such as `eu-west-1` or `us-gov-west-1`. */
export const AWS_REGION_PATTERN = /^[a-z]{2}(-[a-z]+)+-\d$/;
/** The SendCommand target keys nixship accepts. */
export const SSM_TARGET_KEY_PATTERN =
  /^(tag:[^\s]{1,128}|tag-key|resource-groups:Name|resource-groups:ResourceTypeFilters)$/;
export const SSM_COMMAND_TIMEOUT_RANGE = { min: 30, max: 172800 } as const;
/** SendCommand's limits on targets. */
export const SSM_TARGET_LIMITS = { maxTargets: 5, maxValues: 50, maxValueLength: 256 } as const;

const CONTROL_CHARACTER = /\p{Cc}/u;

/** The `ssm` section; `{}` when the file has none. */
export function readSsmSettings(value: unknown, problems: Problems): SsmSettings | undefined {
  const path = ["ssm"];
  const ssm = readObject(value, path, problems, FLEET_KEYS.ssm);
  if (ssm === undefined) return undefined;
  const documentName =
    ssm.documentName === undefined
      ? SSM_DEFAULTS.documentName
      : readString(ssm.documentName, [...path, "documentName"], problems, {
          pattern: SSM_DOCUMENT_NAME_PATTERN,
        });
  const region =
    ssm.region === undefined
      ? undefined
      : readString(ssm.region, [...path, "region"], problems, { pattern: AWS_REGION_PATTERN });
  const commandTimeout =
    ssm.commandTimeout === undefined
      ? SSM_DEFAULTS.commandTimeout
      : readInteger(
          ssm.commandTimeout,
          [...path, "commandTimeout"],
          problems,
          SSM_COMMAND_TIMEOUT_RANGE,
        );
  if (documentName === undefined || commandTimeout === undefined) return undefined;
  return { documentName, region, commandTimeout };
}

/** An ssm host's `targets`: 1 to 5 `{key, values}` objects. */
export function readSsmTargets(
  value: unknown,
  path: JsonPath,
  problems: Problems,
): SsmTarget[] | undefined {
  const items = readArray(value, path, problems, 1);
  if (items === undefined) return undefined;
  if (items.length > SSM_TARGET_LIMITS.maxTargets) {
    return problems.add(path, `must hold at most ${SSM_TARGET_LIMITS.maxTargets} items`);
  }
  const targets = items.map((item, i) => readSsmTarget(item, [...path, i], problems));
  return targets.every((t) => t !== undefined) ? targets : undefined;
}

function readSsmTarget(value: unknown, path: JsonPath, problems: Problems): SsmTarget | undefined {
  const target = readObject(value, path, problems, FLEET_KEYS.ssmTarget);
  if (target === undefined) return undefined;
  const key =
    target.key === undefined
      ? undefined
      : readString(target.key, [...path, "key"], problems, { pattern: SSM_TARGET_KEY_PATTERN });
  const values =
    target.values === undefined
      ? undefined
      : readTargetValues(target.values, [...path, "values"], problems);
  if (key === undefined || values === undefined) return undefined;
  return { key, values };
}

function readTargetValues(
  value: unknown,
  path: JsonPath,
  problems: Problems,
): string[] | undefined {
  const items = readArray(value, path, problems, 1);
  if (items === undefined) return undefined;
  if (items.length > SSM_TARGET_LIMITS.maxValues) {
    return problems.add(path, `must hold at most ${SSM_TARGET_LIMITS.maxValues} items`);
  }
  const values = items.map((item, i) => {
    const itemPath = [...path, i];
    const text = readString(item, itemPath, problems, {
      maxLength: SSM_TARGET_LIMITS.maxValueLength,
    });
    if (text !== undefined && CONTROL_CHARACTER.test(text)) {
      return problems.add(itemPath, "must not contain control characters");
    }
    return text;
  });
  return values.every((v) => v !== undefined) ? values : undefined;
}
