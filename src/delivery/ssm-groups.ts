// How one wave becomes SendCommand calls: hosts with the same request share one command
// (by instance ID, at most 50 per command); a host given by tag targets gets its own.
import type { FleetHost, SsmHost, SsmTarget } from "../fleet/fleet.js";
import type { DeployRequest, WaveHost } from "./delivery.js";

/** SendCommand takes at most this many instance IDs. */
const MAX_INSTANCE_IDS = 50;

export interface Member {
  readonly index: number;
  readonly host: SsmHost;
  /**
   * The host's own request: the group's but for what the command does not carry and the
   * deployer does for each host (its HTTP checks, with its own {address} and {name}).
   */
  readonly request: DeployRequest;
}

/** Hosts that share one SendCommand: by instance ID, or one targets host alone. */
export interface Group {
  /** What the command carries: its first member's request (the others differ only in what it does not). */
  readonly request: DeployRequest;
  readonly members: readonly Member[];
  readonly instanceIds: string[];
  readonly targets: readonly SsmTarget[] | undefined;
}

/** One group per distinct request (targets hosts alone), at most 50 instance IDs each. */
export function groupWave(wave: readonly WaveHost[]): Group[] {
  const groups: Group[] = [];
  const open = new Map<string, Group>();
  for (const [index, { host, request }] of wave.entries()) {
    const h = ssmHost(host);
    if (h.instanceId === undefined) {
      groups.push({
        request,
        members: [{ index, host: h, request }],
        instanceIds: [],
        targets: h.targets,
      });
      continue;
    }
    const key = JSON.stringify([
      request.path,
      request.action,
      request.substituters,
      request.trustedKeys,
      request.commandChecks.map((c) => [c.run, c.timeout, c.retry !== false]),
      // Roles may differ in these (policy per role): a command carries one of each.
      request.activationTimeout,
      request.keepGenerations ?? 0,
      request.reboot === undefined ? null : [request.reboot.timeout, request.reboot.rollback],
      // A pending boot is judged under its own token (hosts that share one can share a command).
      request.judgeBoot === undefined
        ? null
        : [request.judgeBoot.token, request.judgeBoot.reboot.rollback],
      request.recordBoot === true,
      // Each host's own zstd (the one its running system has), and what it must run now.
      request.deltaTool ?? null,
      request.expect ?? null,
      // Hosts given the same secrets (the same bundle) can share one command and one URL.
      request.secrets === undefined ? null : [request.secrets.bundle, request.secrets.age],
    ]);
    let group = open.get(key);
    const full =
      group !== undefined &&
      !group.instanceIds.includes(h.instanceId) &&
      group.instanceIds.length >= MAX_INSTANCE_IDS;
    if (group === undefined || full) {
      group = { request, members: [], instanceIds: [], targets: undefined };
      groups.push(group);
      open.set(key, group);
    }
    (group.members as Member[]).push({ index, host: h, request });
    if (!group.instanceIds.includes(h.instanceId)) group.instanceIds.push(h.instanceId);
  }
  return groups;
}

export function ssmHost(host: FleetHost): SsmHost {
  if (host.delivery !== "ssm") {
    throw new Error(`${host.name} is delivered by ${host.delivery}, not ssm`);
  }
  return host;
}

export function describeTargets(targets: readonly SsmTarget[] | undefined): string {
  return (targets ?? []).map((t) => `${t.key}=${t.values.join(",")}`).join(" and ") || "nothing";
}
