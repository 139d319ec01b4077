// Bake time and canary analysis as the fleet states them (a role's `bake` and `analysis`), and
// the pure rules around them: which deploys bake, and which hosts are a canary's baseline.
// The evaluator of measurements is analysis.ts; the loop that bakes a wave is deploy/bake-wave.ts.
import type { Action } from "./action.js";

/** How long a wave's hosts bake once confirmed, and how often they are measured meanwhile. */
export interface BakePolicy {
  /** Seconds the rollout holds after the wave's hosts are confirmed (0: no bake). */
  readonly seconds: number;
  /** Seconds between two rounds of checks and queries. */
  readonly interval: number;
}

export const BAKE_DEFAULTS = { interval: 10 } as const satisfies Pick<BakePolicy, "interval">;
/** The longest bake a role may set: a day. */
export const MAX_BAKE_SECONDS = 86_400;
/** Rounds of one bake at most (seconds / interval): bounds what a record keeps per query. */
export const MAX_BAKE_ROUNDS = 360;

/** Queries one role's analysis may hold. */
export const MAX_ANALYSIS_QUERIES = 20;

/** What a query that answers no value counts as: a failure, or nothing (wait for data). */
export const NO_DATA_RULES = ["fail", "wait"] as const;
export type NoDataRule = (typeof NO_DATA_RULES)[number];

/** One PromQL query of a role's analysis and the condition its value must meet. */
export interface AnalysisQuery {
  /** Names it in messages, events and the record. */
  readonly name: string;
  /** PromQL; `{name}` and `{address}` are filled with the host's. */
  readonly query: string;
  /** The value must be at most this… */
  readonly max?: number;
  /** …and at least this. */
  readonly min?: number;
  /**
   * The canary against its baseline: the same query over the role's hosts that have not changed
   * yet (their mean); the host's value must be at most the baseline's times `tolerance`.
   */
  readonly baseline?: { readonly tolerance: number };
  /**
   * Seconds the query reads back where its text does not say (a recording rule's range):
   * taken when longer than what its text reads (analysisReach).
   */
  readonly reach?: number;
  /** Failed measurements tolerated; one more fails the host. */
  readonly failureLimit: number;
  /** A measurement with no value: a failure, or not counted (`wait`). */
  readonly noData: NoDataRule;
}

export const ANALYSIS_DEFAULTS = { failureLimit: 0, noData: "fail" } as const satisfies Pick<
  AnalysisQuery,
  "failureLimit" | "noData"
>;

/** What one planned host bakes with: its role's bake and analysis. */
export interface HostBake extends BakePolicy {
  readonly analysis: readonly AnalysisQuery[];
}

/** Baseline hosts asked at most, per query and round (their values are averaged). */
export const MAX_BASELINE_HOSTS = 10;

/**
 * Whether a deploy of `action` bakes: only a switch, whose new system runs now and is the
 * profile's newest generation, so that a failed bake can roll the host back to what it ran.
 */
export function actionBakes(action: Action): boolean {
  return action === "switch";
}

/** The bake a host of a deploy of `action` gets from its policy; undefined: none. */
export function hostBake(
  action: Action,
  policy: { readonly bake?: BakePolicy; readonly analysis?: readonly AnalysisQuery[] },
): HostBake | undefined {
  const bake = policy.bake;
  if (!actionBakes(action) || bake === undefined || bake.seconds <= 0) return undefined;
  return { ...bake, analysis: policy.analysis ?? [] };
}

/**
 * A canary's baseline: the hosts of its role (same `role`) that the plan changes in a later wave
 * than `wave` (from 1), so that at its bake they still run what they ran; at most
 * MAX_BASELINE_HOSTS, in the plan's order.
 */
export function baselineHosts(
  plan: {
    readonly waves: readonly { readonly wave: number; readonly hosts: readonly string[] }[];
    readonly hosts: readonly { readonly host: string; readonly role?: string }[];
  },
  host: string,
  wave: number,
): string[] {
  const roles = new Map(plan.hosts.map((h) => [h.host, h.role ?? ""]));
  const role = roles.get(host);
  if (role === undefined) return [];
  return plan.waves
    .filter((w) => w.wave > wave)
    .flatMap((w) => w.hosts)
    .filter((h) => h !== host && roles.get(h) === role)
    .slice(0, MAX_BASELINE_HOSTS);
}
