// The one seam between the rollout engine and the ways of reaching hosts (ssh, ssm, agent):
// what a host runs, deploying one wave of hosts, and rolling hosts back.
import type { Action } from "../fleet/action.js";
import type { FleetHost } from "../fleet/fleet.js";
import type { WaveKind } from "../fleet/rollout.js";
import type { Generation } from "../host/activation.js";
import { mapLimit } from "../util/pool.js";

/** Phases a host goes through, as progress reports them. */
export type HostPhase =
  | "connect"
  | "copy"
  | "realise"
  | "profile"
  | "switch"
  | "health"
  | "confirm"
  | "rollback"
  | "done";

export type DeliveryEvent =
  | { readonly type: "phase"; readonly host: string; readonly phase: HostPhase }
  | { readonly type: "log"; readonly host: string; readonly line: string }
  /** One host of the wave finished; its outcome is also in deployWave's result. */
  | { readonly type: "done"; readonly host: string; readonly outcome: DeployOutcome };

export interface HttpHealthCheck {
  /** With the host's placeholders already filled in. */
  readonly url: string;
  readonly expectStatus: number;
  readonly timeout: number;
}

export interface DeployRequest {
  readonly path: string;
  readonly action: Action;
  /** Where the host substitutes from (signatures required); none: the deployer copies. */
  readonly substituters: readonly string[];
  readonly trustedKeys: readonly string[];
  readonly commandChecks: readonly { readonly run: string; readonly timeout: number }[];
  readonly httpChecks: readonly HttpHealthCheck[];
  /** Seconds the host waits for confirmation before rolling back (0: no window). */
  readonly confirmTimeout: number;
}

export type HostStatus =
  | {
      readonly reachable: true;
      readonly current: string | undefined;
      /** What the system profile points at: the system the host boots next. */
      readonly profile: string | undefined;
      readonly generation: number | undefined;
      readonly generations: readonly Generation[];
      readonly pending: string | undefined;
    }
  | { readonly reachable: false; readonly error: string };

export type DeployOutcome =
  | {
      readonly status: "activated";
      readonly generation: number | undefined;
      readonly previous: string | undefined;
    }
  | {
      readonly status: "failed";
      readonly phase: HostPhase;
      readonly message: string;
      /** The host is back on the system it ran before (false: it had none, or that failed). */
      readonly rolledBack: boolean;
    };

export type RollbackOutcome =
  | { readonly status: "rolled-back"; readonly generation: number; readonly path: string }
  | { readonly status: "failed"; readonly message: string };

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
  ): Promise<RollbackOutcome[]>;
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
