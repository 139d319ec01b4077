// Fleet to JSON: write a whole fleet file, or add and replace hosts in an existing one
// without touching anything else in it (the lab merges its hosts this way).
import { InputError } from "../errors.js";
import type { AnalysisQuery } from "./bake.js";
import type { DeltaSettings, Fleet, FleetHost, SecretsSettings, SsmSettings } from "./fleet.js";
import { formatSystemSpec, POLICY_DEFAULTS, SSM_DEFAULTS } from "./fleet.js";
import { parseFleetValue } from "./fleet-file.js";
import type { PolicyOverride } from "./host-policy.js";
import { isJsonObject } from "./json-check.js";
import { parseJsonText } from "./json-text.js";
import { buildToJson } from "./read-build.js";

export type JsonObject = Record<string, unknown>;

/** A host as the fleet file writes it (its name is the key it sits under). */
export function hostToJson(host: FleetHost): JsonObject {
  return {
    ...(host.tags.length > 0 ? { tags: [...host.tags] } : {}),
    ...(host.address === undefined ? {} : { address: host.address }),
    ...(host.delivery === "ssh" && host.sshHost !== undefined ? { sshHost: host.sshHost } : {}),
    ...(host.delivery === "ssh" && host.sshUser !== undefined ? { sshUser: host.sshUser } : {}),
    ...(host.delivery === "ssh" && host.sudo !== undefined ? { sudo: host.sudo } : {}),
    delivery: host.delivery,
    ...(host.delivery === "ssm" && host.instanceId !== undefined
      ? { instanceId: host.instanceId }
      : {}),
    ...(host.delivery === "ssm" && host.targets !== undefined
      ? { targets: host.targets.map((t) => ({ key: t.key, values: [...t.values] })) }
      : {}),
    ...(host.hostKey === undefined ? {} : { hostKey: host.hostKey }),
    system: formatSystemSpec(host.system),
  };
}

/**
 * The whole fleet as a fleet-file document, defaults written out; `ssm` only when it differs
 * from the defaults (most fleets have no ssm hosts).
 */
export function fleetToJson(fleet: Fleet): JsonObject {
  const { cache, releases, ssh, ssm, policy } = fleet;
  return {
    ...(cache === undefined
      ? {}
      : {
          cache: {
            url: cache.url,
            publicKeys: [...cache.publicKeys],
            ...(cache.substituter === undefined ? {} : { substituter: cache.substituter }),
          },
        }),
    ...(releases === undefined
      ? {}
      : {
          releases: {
            channel: releases.channel,
            publicKeys: [...releases.publicKeys],
            offlineTimeout: releases.offlineTimeout,
            maxAge: releases.maxAge,
            ...(releases.signedReports ? { signedReports: true } : {}),
          },
        }),
    ssh: {
      ...(ssh.configFile === undefined ? {} : { configFile: ssh.configFile }),
      ...(ssh.knownHosts === undefined ? {} : { knownHosts: ssh.knownHosts }),
      user: ssh.user,
      ...(ssh.sudo ? { sudo: true } : {}),
      ...(ssh.maxConnections === undefined ? {} : { maxConnections: ssh.maxConnections }),
    },
    ...(isDefaultSsm(ssm)
      ? {}
      : {
          ssm: {
            documentName: ssm.documentName,
            ...(ssm.region === undefined ? {} : { region: ssm.region }),
            commandTimeout: ssm.commandTimeout,
          },
        }),
    ...(buildToJson(fleet.build) === undefined ? {} : { build: buildToJson(fleet.build) }),
    policy: {
      parallel: policy.parallel,
      maxFailures: policy.maxFailures,
      canary: policy.canary,
      confirmTimeout: policy.confirmTimeout,
      activationTimeout: policy.activationTimeout,
      ...(policy.keepGenerations === 0 ? {} : { keepGenerations: policy.keepGenerations }),
      ...(policy.reboot === POLICY_DEFAULTS.reboot ? {} : { reboot: policy.reboot }),
      ...(policy.rebootTimeout === POLICY_DEFAULTS.rebootTimeout
        ? {}
        : { rebootTimeout: policy.rebootTimeout }),
      ...(policy.rebootRollback === POLICY_DEFAULTS.rebootRollback
        ? {}
        : { rebootRollback: policy.rebootRollback }),
      ...(policy.requirePinned ? { requirePinned: true } : {}),
      ...(policy.deltas ? {} : { deltas: false }),
      ...(policy.pause === undefined
        ? {}
        : {
            pauseAfter: [...policy.pause.after],
            pauseTimeout: policy.pause.timeout,
            onPauseTimeout: policy.pause.onTimeout,
          }),
      health: {
        http: policy.health.http.map((c) => ({ ...c })),
        commands: policy.health.commands.map((c) => ({ ...c })),
      },
      ...(policy.bake === undefined ? {} : { bake: { ...policy.bake } }),
      ...(policy.analysis === undefined ? {} : { analysis: policy.analysis.map(analysisToJson) }),
    },
    ...(fleet.policies.length === 0
      ? {}
      : {
          policies: Object.fromEntries(
            fleet.policies.map((r) => [r.selector, overrideToJson(r.override)]),
          ),
        }),
    hosts: Object.fromEntries(fleet.hosts.map((h) => [h.name, hostToJson(h)])),
    ...(fleet.secrets === undefined ? {} : { secrets: secretsToJson(fleet.secrets) }),
    ...(fleet.deltas === undefined ? {} : { deltas: deltasToJson(fleet.deltas) }),
    ...(fleet.prometheus === undefined
      ? {}
      : {
          prometheus: {
            url: fleet.prometheus.url,
            ...(fleet.prometheus.bearerTokenFile === undefined
              ? {}
              : { bearerTokenFile: fleet.prometheus.bearerTokenFile }),
            timeout: fleet.prometheus.timeout,
          },
        }),
  };
}

function analysisToJson(query: AnalysisQuery): JsonObject {
  return { ...query, ...(query.baseline === undefined ? {} : { baseline: { ...query.baseline } }) };
}

function overrideToJson({ health, bake, analysis, ...numbers }: PolicyOverride): JsonObject {
  return {
    ...numbers,
    ...(bake === undefined ? {} : { bake: { ...bake } }),
    ...(analysis === undefined ? {} : { analysis: analysis.map(analysisToJson) }),
    ...(health === undefined
      ? {}
      : {
          health: {
            ...(health.http === undefined ? {} : { http: health.http.map((c) => ({ ...c })) }),
            ...(health.commands === undefined
              ? {}
              : { commands: health.commands.map((c) => ({ ...c })) }),
          },
        }),
  };
}

function secretsToJson(secrets: SecretsSettings): JsonObject {
  return {
    admins: [...secrets.admins],
    ...(secrets.age === undefined ? {} : { age: secrets.age }),
    entries: Object.fromEntries(secrets.entries.map(({ name, ...entry }) => [name, { ...entry }])),
  };
}

function isDefaultSsm(ssm: SsmSettings): boolean {
  return (
    ssm.documentName === SSM_DEFAULTS.documentName &&
    ssm.region === undefined &&
    ssm.commandTimeout === SSM_DEFAULTS.commandTimeout
  );
}

/** Fleet-file text: two-space indented JSON with a final newline. */
export function formatFleet(fleet: Fleet): string {
  return formatJson(fleetToJson(fleet));
}

export function formatJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/**
 * Returns a copy of a fleet document with `hosts` added, or replacing the hosts of the same
 * name in place; every other key and host is kept as it was, in its order. `undefined`
 * stands for no file yet.
 */
export function upsertHosts(fleetJson: unknown, hosts: readonly FleetHost[]): JsonObject {
  const doc = fleetJson === undefined ? {} : fleetJson;
  if (!isJsonObject(doc)) {
    throw new InputError("bad-fleet-file", "the fleet document must be a JSON object");
  }
  const existing = doc.hosts === undefined ? {} : doc.hosts;
  if (!isJsonObject(existing)) {
    throw new InputError("bad-fleet-file", 'the fleet document\'s "hosts" must be an object');
  }
  const replacements = new Map<string, JsonObject>();
  for (const host of hosts) {
    if (replacements.has(host.name)) {
      throw new InputError("duplicate-host", `host "${host.name}" is given twice`);
    }
    replacements.set(host.name, hostToJson(host));
  }
  const merged: JsonObject = {};
  for (const [name, value] of Object.entries(existing))
    merged[name] = replacements.get(name) ?? value;
  for (const [name, value] of replacements) merged[name] ??= value;
  return { ...doc, hosts: merged };
}

/**
 * `upsertHosts` on fleet-file text (`undefined`: no file yet). The result is validated as a
 * whole, so a merge never writes a fleet file that would not load.
 */
export function upsertHostsText(
  text: string | undefined,
  hosts: readonly FleetHost[],
  source: string,
): string {
  const doc = text === undefined ? undefined : parseJsonText(text, source);
  const merged = upsertHosts(doc, hosts);
  parseFleetValue(merged, source);
  return formatJson(merged);
}

/** `deltas` as the fleet file writes it: false, true, or the tool. */
function deltasToJson(deltas: DeltaSettings): boolean | { tool: string } {
  if (!deltas.on) return false;
  return deltas.tool === undefined ? true : { tool: deltas.tool };
}
