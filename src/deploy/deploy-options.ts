// What a deploy is asked (the command's options, the fleet, the policy laid over it) and what it
// answers: the plan, each host's result, the releases it published.
import type { NixOptions } from "../cache/local-nix.js";
import type { Action } from "../fleet/action.js";
import type { DeliveryMode, Fleet, RolloutPolicy } from "../fleet/fleet.js";
import type { PolicyOverride } from "../fleet/host-policy.js";
import type { DeployPlan } from "../fleet/plan.js";
import type { MetricsSource } from "../metrics/prometheus.js";
import type { SecretKey } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import type { PauseAnswer } from "../status/pause-answer.js";
import type { DeployEvent, HostResult } from "./events.js";
import type { RolloutRecorderOptions } from "./rollout-recorder.js";

export interface DeployOptions {
  readonly fleet: Fleet;
  /** The fleet file's directory: relative flake references are resolved against it. */
  readonly fleetDir: string;
  /**
   * The fleet as the deploy's `--fleet` named it, for the commands it prints (`nixship rollout
   * resume ID --fleet F`); absent: found where it is looked for (./nixship.json, …).
   */
  readonly fleetArg?: string | undefined;
  readonly selector: string | undefined;
  readonly action: Action;
  /** The fleet's policy with the flags laid over it: the rollout's own numbers. */
  readonly policy: RolloutPolicy;
  /** The policy flags given: they win over every role's policy too (host-policy.ts). */
  readonly policyFlags: PolicyOverride;
  /** Signs what is pushed into the fleet's cache; without it nothing is pushed. */
  readonly key: SecretKey | undefined;
  /** Serve the fleet's cache on this host:port for the hosts while deploying. */
  readonly serveCache: { readonly host: string; readonly port: number } | undefined;
  readonly emit: (event: DeployEvent) => void;
  readonly nix?: NixOptions;
  /** `--build-host`: build the systems in this host's store (over `build.host`). */
  readonly buildHost?: string | undefined;
  /** `--via`: the delivery mode the selected hosts must have (default: theirs). */
  readonly via?: DeliveryMode | undefined;
  /** Signs the release (agent hosts). */
  readonly releaseKey?: SecretKey | undefined;
  /**
   * Publish one release for every selected host and return without watching; only for modes
   * whose delivery can (`Delivery.channel.publishOnly`: agent).
   */
  readonly async?: boolean;
  /** Milliseconds between the deployer's reads of agent status. */
  readonly agentPollInterval?: number;
  /** `--skip-unreachable`: hosts that cannot be reached are listed, not counted as failed. */
  readonly skipUnreachable?: boolean;
  /** `--allow-failed` (agent): a release may name a system that failed on its host. */
  readonly allowFailed?: boolean;
  /**
   * `--wait-reachable S`: seconds the survey waits for hosts that cannot be reached yet (ssh:
   * sshd, ssm: the instance's registration, agent: its first report), asking again every few
   * seconds; 0 or undefined: hosts are asked once.
   */
  readonly waitReachable?: number;
  /**
   * A rollback of a rollout: its record names the rollout it undoes and the hosts it leaves;
   * `expect`, what each host sent back must still run (what that rollout left there), checked
   * by the host under its lock, or by the channel's release for agent hosts: one that runs
   * another is refused, left as it is (absent: `--force`, whatever it runs).
   */
  readonly rollback?: RolloutRecorderOptions["rollback"] & {
    readonly expect?: ReadonlyMap<string, StorePath>;
  };
  /**
   * Aborted on an interrupt. Before the rollout the deploy ends with an InterruptedError (no
   * host changed); during it, no new wave starts, the wave in flight is aborted and waited
   * for a bounded time, and the deploy ends with its summary.
   */
  readonly signal?: AbortSignal;
  /** The fleet's Prometheus, which a bake's analysis asks (opened with its token). */
  readonly metrics?: MetricsSource;
}

export interface DeployReport {
  readonly plan: DeployPlan;
  readonly results: readonly HostResult[];
  readonly ok: boolean;
  /** Agent hosts: the releases the deploy published (sequence numbers, in order). */
  readonly releases: readonly number[];
  /**
   * Agent hosts: channel entries the deploy replaced because they named a system that failed
   * on their host (one line each, for the operator).
   */
  readonly channelNotes: readonly string[];
  /** The id of the rollout record the deploy wrote (none without a cache, or with `async`). */
  readonly rollout?: string;
  /**
   * Set when a pause was answered with abort (or its deadline's default was abort): the answer.
   * The hosts the rollout changed are still on their new systems: the caller rolls them back.
   */
  readonly aborted?: PauseAnswer;
}
