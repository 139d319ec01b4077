// What deploy says on stderr when it is interrupted: which hosts are in flight (followed from
// its events), what the first interrupt does to them, and what becomes of them when a second
// one makes it exit at once. Pure, apart from the tracker's own state.
import type { DeployEvent } from "../deploy/events.js";
import type { Action } from "../fleet/action.js";
import type { DeliveryMode, RolloutPolicy } from "../fleet/fleet.js";
import { activationSteps } from "../host/activation-session.js";
import { plural } from "./plan-format.js";

/**
 * The hosts of the wave under way that have not finished yet, and those whose wave bakes (or is
 * being rolled back after a failed bake) once their activation ended.
 */
export class HostsInFlight {
  readonly #hosts = new Set<string>();
  readonly #baking = new Set<string>();

  readonly onEvent = (event: DeployEvent): void => {
    if (event.type === "wave-start") for (const host of event.hosts) this.#hosts.add(host);
    else if (event.type === "host-done") this.#hosts.delete(event.result.host);
    else if (event.type === "bake-start") for (const host of event.hosts) this.#baking.add(host);
    else if (event.type === "bake-done") this.#baking.delete(event.host);
  };

  get hosts(): readonly string[] {
    return [...this.#hosts];
  }

  /** Hosts confirmed, whose wave's bake (or its rollback) has not ended. */
  get baking(): readonly string[] {
    return [...this.#baking];
  }
}

/** The line the first SIGINT or SIGTERM prints: the deploy stops, and says how. */
export function formatFirstInterrupt(
  signal: string,
  inFlight: readonly string[],
  mode: DeliveryMode = "ssh",
): string {
  const again = "press Ctrl-C again to exit at once";
  if (inFlight.length === 0) {
    return `interrupted (${signal}): starting no new host and stopping; ${again}`;
  }
  const them = inFlight.length === 1 ? "it" : "them";
  const what =
    mode === "agent"
      ? `withdrawing the release for ${plural(inFlight.length, "host")} not done (${inFlight.join(", ")}): a new release names for ${them} what the channel named before`
      : `aborting ${plural(inFlight.length, "host")} in flight (${inFlight.join(", ")}), rolling ${them} back to the previous system`;
  return `interrupted (${signal}): starting no new host; ${what}; ${again}`;
}

/** What the deploy was doing, for what becomes of a host it leaves in flight. */
export interface InFlightContext {
  readonly mode: DeliveryMode;
  readonly action: Action;
  readonly policy: Pick<RolloutPolicy, "confirmTimeout" | "health" | "activationTimeout">;
}

/** What the second interrupt prints before the deployer exits at once. */
export function formatSecondInterrupt(
  signal: string,
  inFlight: readonly string[],
  context: InFlightContext,
  baking: readonly string[] = [],
): string {
  const exiting = `interrupted again (${signal}): exiting now`;
  if (inFlight.length === 0 && baking.length > 0) {
    const was = baking.length === 1 ? "was" : "were";
    return `${exiting}; ${baking.join(", ")} ${was} baking (confirmed: the new system stays), or being rolled back after a failed bake (that goes on on the host): 'nixship status' shows where each ends`;
  }
  if (inFlight.length === 0) return `${exiting}; no host was in flight`;
  const one = inFlight.length === 1;
  const hosts = `${inFlight.join(", ")} ${one ? "was" : "were"} still in flight`;
  const each = one ? "it" : "each";
  const status = "'nixship status' shows where it ends";
  switch (context.mode) {
    case "agent":
      return `${exiting}; ${hosts}: the agents carry on without the deployer (${status})`;
    case "ssm":
      return `${exiting}; ${hosts}: the SSM command goes on on the host, ending within the activation timeout, without the deployer's HTTP checks ('nixship plan' asks ${one ? "it" : "them"} what ${one ? "it runs" : "each runs"}; 'nixship status' reads what the hosts last reported)`;
    case "ssh": {
      const { policy, action } = context;
      const window = activationSteps(
        { action, httpChecks: policy.health.http, confirmTimeout: policy.confirmTimeout },
        true,
      ).confirmWindow;
      return window > 0
        ? `${exiting}; ${hosts}: unless already confirmed, ${each} rolls itself back, within its activation timeout (${policy.activationTimeout}s) if still switching, else when its confirmation window (${window}s) closes`
        : `${exiting}; ${hosts}, with no confirmation window: ${each} keeps what its activation ends with (${status})`;
    }
  }
}
