// The one seam between the rollout engine and the ways of reaching hosts (ssh now; ssm and
// agent later): what a host runs, deploying one host, and rolling one back.
import type { Action } from "../fleet/action.js";
import type { FleetHost } from "../fleet/fleet.js";
import type { Generation } from "../host/activation.js";

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
  | { readonly type: "log"; readonly host: string; readonly line: string };

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

export interface Delivery {
  status(host: FleetHost, signal?: AbortSignal): Promise<HostStatus>;
  deploy(
    host: FleetHost,
    request: DeployRequest,
    emit: (event: DeliveryEvent) => void,
    signal?: AbortSignal,
  ): Promise<DeployOutcome>;
  rollback(host: FleetHost, generation: number | undefined): Promise<RollbackOutcome>;
}
