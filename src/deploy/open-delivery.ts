// Picks and opens the delivery mode for a set of selected hosts: the mode the fleet file gives
// them (all must share one), or the one `--via` names (which they must have).
import { AgentDelivery } from "../delivery/agent.js";
import type { Delivery } from "../delivery/delivery.js";
import { agentReportKeys } from "../delivery/host-keys.js";
import { SshDelivery } from "../delivery/ssh.js";
import { InputError } from "../errors.js";
import type { DeliveryMode, Fleet, FleetHost, RolloutPolicy } from "../fleet/fleet.js";
import type { SecretKey } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import type { ReleaseHostPolicy } from "../release/release.js";
import type { Origin } from "../release/release-origin.js";
import { readPins } from "../secrets/host-key-pins.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { deployedBy } from "./deploy-origin.js";

export interface DeliveryChoice {
  /**
   * The fleet file's directory: the host key pins beside it (secrets/host-key-pins.ts) name
   * the keys agent hosts sign their reports with, where the fleet gives no `hostKey`.
   */
  readonly fleetDir: string;
  /** `--via`: the mode the caller expects every selected host to have. */
  readonly via?: DeliveryMode | undefined;
  /** Signs releases (agent mode deploys). */
  readonly releaseKey?: SecretKey | undefined;
  /** What agent releases carry: the health checks and the confirmation window. */
  readonly policy?: Pick<RolloutPolicy, "health" | "confirmTimeout" | "keepGenerations">;
  /**
   * A plan (nothing changes): an ssm host that cannot be asked is shown from its status record
   * (a pull request's plan role may not send SSM commands).
   */
  readonly storedStatus?: boolean;
  /** Each host's own policy (the fleet's policy per role, and the flags); default: `policy`. */
  readonly policyOf?: (host: FleetHost, path: StorePath) => RolloutPolicy;
  /** Milliseconds between the deployer's reads of agent status (default 1000). */
  readonly agentPollInterval?: number;
  /** `--allow-failed` (agent): releases may name a system that failed on its host. */
  readonly allowFailed?: boolean;
  /** Agent hosts to leave on what they run (ChannelKeeperOptions.leave). */
  readonly leave?: ReadonlyMap<string, string>;
  /**
   * Who publishes agent releases and from what, written beside each (release-origin.ts);
   * default: whoever runs this (deployedBy), from no source (a rollback, a refresh).
   */
  readonly origin?: Origin;
}

export interface OpenDelivery {
  readonly mode: DeliveryMode;
  readonly delivery: Delivery;
  /** The fleet's cache store when the mode uses it (agent; ssm with secrets), else undefined. */
  readonly store: ObjectStore | undefined;
  close(): Promise<void>;
}

/** The one delivery mode of `hosts`; throws naming the hosts that do not fit. */
export function deliveryMode(
  hosts: readonly FleetHost[],
  via: DeliveryMode | undefined,
): DeliveryMode {
  if (via !== undefined) {
    const other = hosts.filter((h) => h.delivery !== via);
    if (other.length > 0) {
      throw new InputError(
        "delivery-mismatch",
        `--via ${via}, but ${describeHosts(other)} ${other.length === 1 ? "is" : "are"} delivered by ${other[0]?.delivery} in the fleet file`,
        { hint: `select the ${via} hosts with --on, or change their "delivery"` },
      );
    }
    return via;
  }
  const byMode = new Map<DeliveryMode, string[]>();
  for (const h of hosts) byMode.set(h.delivery, [...(byMode.get(h.delivery) ?? []), h.name]);
  if (byMode.size > 1) {
    const list = [...byMode].map(([mode, names]) => `${mode}: ${names.join(", ")}`).join("; ");
    throw new InputError(
      "delivery-mixed",
      `the selected hosts use more than one delivery mode (${list})`,
      { hint: "deploy each mode on its own: --on with the hosts of one mode, or --via MODE" },
    );
  }
  return hosts[0]?.delivery ?? via ?? "ssh";
}

export async function openDelivery(
  fleet: Fleet,
  hosts: readonly FleetHost[],
  choice: DeliveryChoice,
): Promise<OpenDelivery> {
  const mode = deliveryMode(hosts, choice.via);
  switch (mode) {
    case "ssh":
      return {
        mode,
        delivery: new SshDelivery(fleet.ssh),
        store: undefined,
        close: async () => {},
      };
    case "ssm": {
      // Hosts' secrets travel through the fleet's store (a presigned URL per bundle), and a
      // plan shows a host it may not ask from its status record there.
      const storedStatus = choice.storedStatus === true;
      const store =
        (fleet.secrets !== undefined || storedStatus) && fleet.cache !== undefined
          ? await openStore(fleet.cache.url)
          : undefined;
      // Loaded only here: the AWS SDK costs every other command a third of its start-up.
      const { SsmDelivery } = await import("../delivery/ssm.js");
      return {
        mode,
        delivery: new SsmDelivery({
          settings: fleet.ssm,
          ...(store ? { store } : {}),
          storedStatus,
        }),
        store,
        close: async () => {
          await store?.close();
        },
      };
    }
    case "agent": {
      if (fleet.releases === undefined || fleet.cache === undefined) {
        throw new InputError(
          "agent-needs-releases",
          'agent hosts need "cache" and "releases" in the fleet file',
        );
      }
      const store = await openStore(fleet.cache.url);
      const policy = choice.policy ?? fleet.policy;
      // Every agent host of the fleet: the channel keeper judges the whole channel's history.
      const keys = agentReportKeys(fleet.hosts, await readPins(choice.fleetDir));
      const delivery = new AgentDelivery({
        store,
        ...(fleet.releases.signedReports
          ? { reportKeys: keys }
          : keys.size > 0
            ? { notes: [unsignedReportsNote(keys.size)] }
            : {}),
        releases: fleet.releases,
        key: choice.releaseKey,
        health: policy.health,
        confirmTimeout: policy.confirmTimeout,
        keepGenerations: policy.keepGenerations,
        ...(choice.policyOf === undefined
          ? {}
          : { policyOf: agentPolicyOf(hosts, choice.policyOf) }),
        ...(choice.agentPollInterval !== undefined
          ? { pollInterval: choice.agentPollInterval }
          : {}),
        allowFailed: choice.allowFailed === true,
        ...(choice.leave === undefined ? {} : { leave: choice.leave }),
        origin: choice.origin ?? { by: deployedBy(), sources: [] },
      });
      return { mode, delivery, store, close: () => store.close() };
    }
  }
}

/** The checks an agent host's release entry carries, by host name. */
function agentPolicyOf(
  hosts: readonly FleetHost[],
  policyOf: (host: FleetHost, path: StorePath) => RolloutPolicy,
): (name: string, path: StorePath) => ReleaseHostPolicy | undefined {
  const byName = new Map(hosts.map((h) => [h.name, h]));
  return (name, path) => {
    const host = byName.get(name);
    if (host === undefined) return undefined;
    const { health, confirmTimeout, keepGenerations } = policyOf(host, path);
    return { health, confirmTimeout, ...(keepGenerations ? { keepGenerations } : {}) };
  };
}

function describeHosts(hosts: readonly FleetHost[]): string {
  const names = hosts.slice(0, 5).map((h) => h.name);
  return hosts.length > 5 ? `${names.join(", ")} and ${hosts.length - 5} more` : names.join(", ");
}

/** What a deploy says of agent hosts whose key the fleet knows, while reports may go unsigned. */
function unsignedReportsNote(keyed: number): string {
  const hosts = keyed === 1 ? "1 agent host whose key" : `${keyed} agent hosts whose keys`;
  return `${hosts} the fleet knows ${keyed === 1 ? "is" : "are"} believed on unsigned reports: anyone who can write the store can report for ${keyed === 1 ? "it" : "them"}; once every agent runs a nixship that signs its reports, set releases.signedReports to true (docs/agent.md, "Signed reports")`;
}
