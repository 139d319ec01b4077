// What each SendCommand of the ssm mode carries: the document's Parameters for each verb (status,
// an activation, a pending boot's judgement and the verdict after a reboot, the bake's checks, a
// prune, a rollback), each bounded by the fleet's command timeout, and whom it is sent to. Pure:
// ssm.ts sends them.
import type { SsmHost, SsmTarget } from "../fleet/fleet.js";
import { PRUNE_TIMEOUT } from "../host/activation.js";
import { activateDeadline, SETTLE_TIMEOUT } from "../host/activation-session.js";
import { checkCommand, checkDeadline } from "../host/script-outcomes.js";
import type { DeployRequest } from "./delivery.js";
import { encodeHealthChecks } from "./ssm-document.js";

/** The document's parameters: each value a one-element list, as SendCommand takes them. */
export type SsmParameters = Record<string, string[]>;

/** Seconds a status command may wait for delivery, and then run. */
export const STATUS_TIMEOUT = 60;
/** Seconds past those for SSM to report a status command's end, before it counts as no answer. */
export const STATUS_REPORT_SLACK = 30;

/** The Parameters for `status`. */
export function statusParameters(): SsmParameters {
  return { Command: ["status"], ExecutionTimeout: [String(STATUS_TIMEOUT)] };
}

/** The Parameters for the bake's `check` of a request's command checks; none when it has none. */
export function checkParameters(
  commandChecks: DeployRequest["commandChecks"],
): SsmParameters | undefined {
  const command = checkCommand(commandChecks);
  if (command === undefined) return undefined;
  return {
    Command: ["check"],
    HealthChecks: [encodeHealthChecks(commandChecks)],
    ExecutionTimeout: [String(checkDeadline(command))],
  };
}

/** The Parameters for the verdict after a reboot (confirm-boot or abort-boot) under its token. */
export function bootVerdictParameters(
  commandTimeout: number,
  verb: string,
  token: string,
  rollback: boolean,
): SsmParameters {
  return {
    Command: [verb],
    RebootToken: [token],
    RebootRollback: [String(rollback)],
    ExecutionTimeout: [String(Math.min(commandTimeout, SETTLE_TIMEOUT))],
  };
}

/** The Parameters for `prune` to the newest `keep` generations. */
export function pruneParameters(commandTimeout: number, keep: number): SsmParameters {
  return {
    Command: ["prune"],
    KeepGenerations: [String(keep)],
    ExecutionTimeout: [String(Math.min(commandTimeout, PRUNE_TIMEOUT))],
  };
}

/**
 * A group's secrets bundle as its instances get it, and its digest: `age:` and base64 of a
 * presigned URL sealed to the host's key (only the host reads it: SSM's record of the command
 * holds nothing that fetches the bundle), or `none` for the empty bundle (nothing to fetch).
 */
export interface SecretsUrl {
  readonly url: string;
  readonly sha256: string;
}

/** The SecretsUrl of the empty bundle, which the host makes itself. */
export const EMPTY_BUNDLE_URL = "none";

/** SendCommand's Targets for tag targets. */
export function sendTargets(targets: readonly SsmTarget[]): { Key: string; Values: string[] }[] {
  return targets.map((t) => ({ Key: t.key, Values: [...t.values] }));
}

/** Whom a command for one host goes to: its instance, or every instance its targets match. */
export function hostRecipients(
  h: Pick<SsmHost, "instanceId" | "targets">,
): { InstanceIds: string[] } | { Targets: { Key: string; Values: string[] }[] } {
  return h.instanceId !== undefined
    ? { InstanceIds: [h.instanceId] }
    : { Targets: sendTargets(h.targets ?? []) };
}

/**
 * The Parameters for an activation (with `bootToken`, a reboot into the system: the boot
 * activation, SSM's reboot, and the verdict after it; or a boot set for later, recorded under
 * it), or for the judgement of a pending boot (after-boot with the checks); empty values are
 * left to the document's defaults. No run outlasts `commandTimeout` (seconds).
 */
export function activateParameters(
  commandTimeout: number,
  request: DeployRequest,
  secrets?: SecretsUrl,
  bootToken?: string,
): SsmParameters {
  const judged = request.judgeBoot;
  if (judged !== undefined) {
    const longest = Math.max(1, ...request.commandChecks.map((c) => c.timeout));
    return {
      Command: ["after-boot"],
      RebootToken: [judged.token],
      RebootRollback: [String(judged.reboot.rollback)],
      ...(request.commandChecks.length === 0
        ? {}
        : { HealthChecks: [encodeHealthChecks(request.commandChecks)] }),
      ExecutionTimeout: [
        String(Math.min(commandTimeout, request.commandChecks.length * longest + SETTLE_TIMEOUT)),
      ],
    };
  }
  const rebootToken = request.reboot === undefined ? undefined : bootToken;
  const values: Record<string, string> = {
    Command: "activate",
    StorePath: request.path,
    Action: request.action,
    Substituters: request.substituters.join(" "),
    TrustedPublicKeys: request.trustedKeys.join(" "),
    HealthChecks: encodeHealthChecks(request.commandChecks),
    ActivationTimeout: String(request.activationTimeout),
    SecretsUrl: secrets?.url ?? "",
    SecretsSha256: secrets?.sha256 ?? "",
    AgePath: (secrets && request.secrets?.age) ?? "",
    DeltaTool: request.deltaTool ?? "",
    // Only when set: a document older than this parameter still takes every other request.
    ExpectCurrent: request.expect ?? "",
    // activate.sh ends by itself within its own bounds; SSM stops it no later than that.
    ExecutionTimeout: String(Math.min(commandTimeout, activateDeadline(request))),
    ...(rebootToken === undefined || request.reboot === undefined
      ? {}
      : {
          Action: "boot",
          RebootToken: rebootToken,
          RebootRollback: String(request.reboot.rollback),
        }),
    ...(rebootToken === undefined && request.recordBoot && bootToken !== undefined
      ? { BootToken: bootToken }
      : {}),
  };
  return Object.fromEntries(
    Object.entries(values)
      .filter(([, v]) => v !== "")
      .map(([k, v]) => [k, [v]]),
  );
}

/** The Parameters for a rollback: to `generation`, or the one before the current. */
export function rollbackParameters(
  commandTimeout: number,
  generation: number | undefined,
  activationTimeout: number,
): SsmParameters {
  return {
    Command: ["rollback"],
    ActivationTimeout: [String(activationTimeout)],
    ExecutionTimeout: [String(commandTimeout)],
    ...(generation === undefined ? {} : { Generation: [String(generation)] }),
  };
}
