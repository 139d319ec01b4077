// The one seam between the rollout engine and the ways of reaching hosts (ssh, ssm, agent):
// what a host runs, deploying one wave of hosts, rolling hosts back, running a host's checks
// again, and the channel a mode keeps.

import type { ChannelHost, PublishedRelease } from "../channel/channel-keeper.js";
import type { FleetHost } from "../fleet/fleet.js";
import type { HostPhase } from "../fleet/phase.js";
import type { RollbackTarget } from "../fleet/rollback-target.js";
import type { WaveKind } from "../fleet/rollout.js";
import type { DeployOutcome, DeployRequest } from "../host/activation-session.js";
import type { HostClosure } from "../host/host-closure.js";
import type { CheckOutcome, HostStatus, RollbackOutcome } from "../host/script-outcomes.js";
import type { StorePath } from "../nix/store-path.js";
import type { SignedRelease } from "../release/release.js";
import { mapLimit } from "../util/pool.js";

export type {
  ChannelHost,
  CheckOutcome,
  DeployOutcome,
  DeployRequest,
  HostClosure,
  HostPhase,
  HostStatus,
  PublishedRelease,
  RollbackOutcome,
};

export type DeliveryEvent =
  | { readonly type: "phase"; readonly host: string; readonly phase: HostPhase }
  | { readonly type: "log"; readonly host: string; readonly line: string }
  /**
   * Hosts of the wave that have not reported yet, every few seconds while a delivery waits
   * for them (agent); `elapsed` is seconds since the wave's release was published.
   */
  | {
      readonly type: "waiting";
      readonly hosts: readonly string[];
      readonly elapsed: number;
    }
  /** One host of the wave finished; its outcome is also in deployWave's result. */
  | { readonly type: "done"; readonly host: string; readonly outcome: DeployOutcome };

export interface WaveHost {
  readonly host: FleetHost;
  readonly request: DeployRequest;
}

/** What a delivery may need to know about the wave beyond its hosts. */
export interface WaveContext {
  readonly index: number;
  readonly kind: WaveKind;
  /** Hosts of the wave that may run at once. */
  readonly parallel: number;
  /** Failures the rollout still tolerates; one more stops it. */
  readonly failureBudget: number;
  /**
   * Aborted when the rollout is interrupted (SIGINT, SIGTERM): start no new host, abort the
   * hosts in flight (each goes back to its previous system), and resolve within a bounded time.
   */
  readonly signal?: AbortSignal;
}

export interface Delivery {
  /**
   * Optional: what becomes of a host this mode leaves in flight when the deployer stops
   * following it (interrupted, no result within the grace), for a person. Absent: the host
   * rolls itself back when its confirmation window closes, unless confirmed (ssh).
   */
  settlingText?(request: DeployRequest): string;
  /**
   * What the host runs. `paths`: store paths to ask its store about, where the mode can ask
   * (ssh); the status's `missing` then lists those it lacks.
   */
  status(host: FleetHost, signal?: AbortSignal, paths?: readonly StorePath[]): Promise<HostStatus>;
  /**
   * Deploys one wave and resolves with every host's outcome, in the wave's order, emitting a
   * "done" event for each host as it finishes. A host that cannot be deployed is a "failed"
   * outcome, not a rejection; a rejection means the whole wave could not be attempted.
   */
  deployWave(
    wave: readonly WaveHost[],
    emit: (event: DeliveryEvent) => void,
    context: WaveContext,
  ): Promise<DeployOutcome[]>;
  /**
   * Rolls the hosts back (to `to`, else to the system each ran before) and resolves with every
   * host's outcome, in order; a host that cannot be rolled back is a "failed" outcome. A target
   * the mode cannot go to (a store path for ssh hosts) is a UsageError.
   */
  rollbackHosts(
    hosts: readonly FleetHost[],
    to: RollbackTarget | undefined,
    /** Seconds the switch back may run on a host (default DEFAULT_ACTIVATION_TIMEOUT). */
    activationTimeout?: number,
  ): Promise<RollbackOutcome[]>;
  /**
   * Optional (modes that run a command on the host from the deployer: ssh, ssm): each host's
   * command checks (its request's) run again on the host, by activate.sh `check`, the health
   * step of its activation, as a bake repeats them. Resolves with every host's outcome, in
   * order; a host that cannot be asked is a failed outcome. A mode without it (agent: only its
   * agent runs commands there) cannot repeat command checks, and `plan` says so.
   */
  runChecks?(hosts: readonly WaveHost[], signal?: AbortSignal): Promise<CheckOutcome[]>;
  /**
   * Optional (modes that can ask a host at once: ssh): the closure of `path` as the host's
   * store has it, for a plan's diff when neither the deployer nor the cache has that system.
   */
  closure?(host: FleetHost, path: StorePath, signal?: AbortSignal): Promise<HostClosure>;
  /**
   * Optional (modes that keep a channel: agent): the channel the hosts follow, which a deploy
   * plans before the first wave, settles after the rollout, publishes to without watching
   * (`deploy --async`) and refreshes (`release refresh`). A mode without it deploys wave by wave
   * and keeps no channel.
   */
  readonly channel?: ChannelCapability;
}

/** What a delivery that keeps a channel (agent) does with it beyond waves. */
export interface ChannelCapability {
  /**
   * Hands every host of `hosts` its new system in one release and returns without watching them
   * (`deploy --async`). A mode without a channel can only deploy wave by wave.
   */
  publishOnly(hosts: readonly WaveHost[]): Promise<PublishedRelease>;
  /**
   * Every selected host's desired system, before the first wave. Refuses a system that failed on
   * its host (unless the operator allowed it), and makes the first release name the hosts that
   * already run theirs, so the channel states what the fleet file does. Resolves with notes for
   * the operator (entries it replaced).
   */
  plan(hosts: readonly ChannelHost[]): Promise<readonly string[]>;
  /**
   * Of `hosts`, those `plan` would refuse: their system failed on them (unless the operator
   * allowed it), each with why. For the plan to say before the deploy refuses.
   */
  failedOn(
    hosts: readonly { readonly host: string; readonly path: StorePath }[],
  ): Promise<ReadonlyMap<string, string>>;
  /**
   * After a rollout that published nothing (every host already ran its system): publishes one
   * release when the channel does not yet state what `plan` planned (an entry the fleet file
   * changed, or one naming a failed system). Resolves with it, or undefined when the channel
   * already states the plan.
   */
  settle(action: DeployRequest["action"]): Promise<PublishedRelease | undefined>;
  /**
   * The releases this delivery published, in order (waves, rollbacks of failed hosts,
   * `publishOnly`).
   */
  published(): readonly { readonly channel: string; readonly seq: number }[];
  /**
   * `release refresh`: the channel's release signed again with a new expiry. Resolves with the
   * release it replaced and the new one.
   */
  refresh(): Promise<{ replaced: SignedRelease; release: SignedRelease }>;
}

/** Hosts rolled back at once for deliveries that reach each host on its own (ssh, ssm). */
const ROLLBACK_CONCURRENCY = 32;

/** rollbackHosts for deliveries that reach each host on its own: each failure kept to its host. */
export function rollbackEachHost(
  hosts: readonly FleetHost[],
  rollbackOne: (host: FleetHost) => Promise<RollbackOutcome>,
): Promise<RollbackOutcome[]> {
  return mapLimit(hosts, ROLLBACK_CONCURRENCY, (host) =>
    rollbackOne(host).catch(
      (err: unknown): RollbackOutcome => ({
        status: "failed",
        message: err instanceof Error ? err.message : String(err),
      }),
    ),
  );
}

/**
 * A wave for deliveries that reach each host on its own (ssh): every host at once, each
 * failure kept to its host.
 */
export function deployEachHost(
  wave: readonly WaveHost[],
  emit: (event: DeliveryEvent) => void,
  deployOne: (host: FleetHost, request: DeployRequest) => Promise<DeployOutcome>,
): Promise<DeployOutcome[]> {
  return Promise.all(
    wave.map(async ({ host, request }) => {
      const outcome = await deployOne(host, request).catch(
        (err: unknown): DeployOutcome => ({
          status: "failed",
          phase: "connect",
          message: err instanceof Error ? err.message : String(err),
          rolledBack: false,
        }),
      );
      emit({ type: "done", host: host.name, outcome });
      return outcome;
    }),
  );
}
