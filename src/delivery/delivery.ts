// The one seam between the rollout engine and the ways of reaching hosts (ssh, ssm, agent):
// what a host runs, deploying one wave of hosts, and rolling hosts back.
import type { FleetHost } from "../fleet/fleet.js";
import type { HostPhase } from "../fleet/phase.js";
import type { WaveKind } from "../fleet/rollout.js";
import type { DeployOutcome, DeployRequest } from "../host/activation-session.js";
import type { HostStatus, RollbackOutcome } from "../host/script-outcomes.js";
import { mapLimit } from "../util/pool.js";

export type { DeployOutcome, DeployRequest, HostPhase, HostStatus, RollbackOutcome };

export type DeliveryEvent =
  | { readonly type: "phase"; readonly host: string; readonly phase: HostPhase }
  | { readonly type: "log"; readonly host: string; readonly line: string }
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
  status(host: FleetHost, signal?: AbortSignal): Promise<HostStatus>;
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
   * Rolls the hosts back (to `generation` where the mode has generations, else to the system
   * each ran before) and resolves with every host's outcome, in order; a host that cannot be
   * rolled back is a "failed" outcome.
   */
  rollbackHosts(
    hosts: readonly FleetHost[],
    generation: number | undefined,
    /** Seconds the switch back may run on a host (default DEFAULT_ACTIVATION_TIMEOUT). */
    activationTimeout?: number,
  ): Promise<RollbackOutcome[]>;
  /**
   * Optional (modes whose hosts act on their own: agent): hands every host of `hosts` its new
   * system in one release and returns without watching them (`deploy --async`). A mode without
   * it can only deploy wave by wave.
   */
  publishOnly?(
    hosts: readonly WaveHost[],
  ): Promise<{ readonly channel: string; readonly seq: number }>;
  /**
   * Optional (modes that publish releases: agent): the releases this delivery published, in
   * order (waves, rollbacks of failed hosts, `publishOnly`).
   */
  publishedReleases?(): readonly { readonly channel: string; readonly seq: number }[];
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
