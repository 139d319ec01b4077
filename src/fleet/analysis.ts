// The canary analysis's evaluator, pure: a query filled in for a host, one measurement judged
// against the query's condition (a threshold, or the baseline's value times a tolerance), and
// the measurements of a bake folded into the query's verdict (its failure limit, its no-data
// rule). deploy/bake-wave.ts takes the measurements; this decides what they mean.
import type { AnalysisQuery } from "./bake.js";
import type { FleetHost } from "./fleet.js";

/** The placeholders a query may hold, filled per host. */
export const QUERY_PLACEHOLDERS = ["{name}", "{address}"] as const;

/** The query for one host: `{name}` and `{address}` filled in (names and addresses need no quoting). */
export function hostQuery(query: string, host: Pick<FleetHost, "name" | "address">): string {
  return query.replaceAll("{address}", host.address ?? host.name).replaceAll("{name}", host.name);
}

/** What one round read for a host: its value, and for a baseline comparison the baseline's. */
export interface Sample {
  /** null: no value (an empty result, NaN, or Prometheus failed; `why` says which). */
  readonly value: number | null;
  readonly why?: string;
  /**
   * The baseline's value (the mean over its hosts that answered; null: none did), for a query
   * compared with its baseline; undefined when no host of the role is left unchanged.
   */
  readonly baseline?: number | null;
  readonly baselineWhy?: string;
}

export type Verdict = "pass" | "fail" | "no-data";

/** One measurement of a query during a bake, as events and the rollout record keep it. */
export interface Measurement {
  /** Seconds since the bake began. */
  readonly at: number;
  readonly value: number | null;
  /** The baseline's value, for a comparison with it (null: it had none). */
  readonly baseline?: number | null;
  readonly verdict: Verdict;
  /** Why it passed, failed or had no data, in words. */
  readonly why: string;
}

/** A query's condition in words: "at most 0.05", "at most 1.5 × the baseline". */
export function conditionText(query: Pick<AnalysisQuery, "max" | "min" | "baseline">): string {
  const parts: string[] = [];
  if (query.baseline !== undefined) {
    parts.push(`at most ${formatValue(query.baseline.tolerance)} × the baseline`);
  }
  if (query.min !== undefined) parts.push(`at least ${formatValue(query.min)}`);
  if (query.max !== undefined) parts.push(`at most ${formatValue(query.max)}`);
  return parts.join(" and ");
}

/** A measured value as people read it: four significant digits at most. */
export function formatValue(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value)) return String(value);
  return String(Number(value.toPrecision(4)));
}

/** One sample judged against the query's condition. */
export function judgeSample(
  query: AnalysisQuery,
  sample: Sample,
): { readonly verdict: Verdict; readonly why: string } {
  const { value } = sample;
  if (value === null) return { verdict: "no-data", why: `no data (${sample.why ?? "no value"})` };
  const shown = formatValue(value);
  if (query.max !== undefined && value > query.max) {
    return { verdict: "fail", why: `${shown} is above the maximum ${formatValue(query.max)}` };
  }
  if (query.min !== undefined && value < query.min) {
    return { verdict: "fail", why: `${shown} is below the minimum ${formatValue(query.min)}` };
  }
  if (query.baseline !== undefined) {
    const base = sample.baseline;
    if (base === undefined) {
      return {
        verdict: "pass",
        why: `${shown}; no host of the role is left unchanged to compare with`,
      };
    }
    if (base === null) {
      return {
        verdict: "no-data",
        why: `${shown}, but no data for the baseline (${sample.baselineWhy ?? "no value"})`,
      };
    }
    const limit = base * query.baseline.tolerance;
    const against = `${formatValue(query.baseline.tolerance)} × the baseline's ${formatValue(base)}`;
    if (value > limit) return { verdict: "fail", why: `${shown} is above ${against}` };
    return { verdict: "pass", why: `${shown} is within ${against}` };
  }
  return { verdict: "pass", why: `${shown} is ${conditionText(query)}` };
}

export type AnalysisState = "running" | "passed" | "failed";

/**
 * A query's verdict from its measurements so far: failed once its failures (no data counted as
 * one under `noData: fail`) pass its failure limit; once the bake `ended`, passed, but failed
 * under `noData: wait` when no measurement had data at all.
 */
export function analysisState(
  query: AnalysisQuery,
  measurements: readonly Measurement[],
  ended: boolean,
): { readonly state: AnalysisState; readonly why?: string } {
  const failing = measurements.filter(
    (m) => m.verdict === "fail" || (m.verdict === "no-data" && query.noData === "fail"),
  );
  if (failing.length > query.failureLimit) {
    const last = failing[failing.length - 1] as Measurement;
    const limit =
      query.failureLimit === 0
        ? ""
        : ` (${failing.length} failed measurements, more than its failure limit ${query.failureLimit})`;
    return { state: "failed", why: `${query.name}: ${last.why}${limit}` };
  }
  if (!ended) return { state: "running" };
  if (query.noData === "wait" && measurements.every((m) => m.verdict === "no-data")) {
    return {
      state: "failed",
      why: `${query.name}: no data in the whole bake (${measurements.length} measurements)`,
    };
  }
  return { state: "passed" };
}

/** The mean of the values that are numbers; null when none is. */
export function meanOf(values: readonly (number | null)[]): number | null {
  const numbers = values.filter((v): v is number => v !== null);
  if (numbers.length === 0) return null;
  return numbers.reduce((a, b) => a + b, 0) / numbers.length;
}
