// The canary analysis's evaluator, pure: a query filled in for a host, one measurement judged
// against the query's condition (a threshold, or the baseline's value times a tolerance), and
// the measurements of a bake folded into the query's verdict (its failure limit, its no-data
// rule). deploy/bake-wave.ts takes the measurements; this decides what they mean.
import type { AnalysisQuery, HostBake } from "./bake.js";
import type { FleetHost } from "./fleet.js";

/** The placeholders a query may hold, filled per host. */
export const QUERY_PLACEHOLDERS = ["{name}", "{address}"] as const;

/** The query for one host: `{name}` and `{address}` filled in (names and addresses need no quoting). */
export function hostQuery(query: string, host: Pick<FleetHost, "name" | "address">): string {
  // Functions, so that nothing in a value is read as a replacement pattern ($&).
  return query
    .replaceAll("{address}", () => host.address ?? host.name)
    .replaceAll("{name}", () => host.name);
}

/** The `{word}` placeholders of `query` that are none of QUERY_PLACEHOLDERS (a typo). */
export function unknownPlaceholders(query: string): string[] {
  const found = [...query.matchAll(/\{[A-Za-z_][A-Za-z0-9_]*\}/g)].map((m) => m[0]);
  return [...new Set(found)].filter((p) => !(QUERY_PLACEHOLDERS as readonly string[]).includes(p));
}

/** What one round read for a host: its value, and for a baseline comparison the baseline's. */
export interface Sample {
  /** null: no value (an empty result, NaN, or Prometheus failed; `why` says which). */
  readonly value: number | null;
  readonly why?: string;
  /**
   * The baseline's value (the median of its hosts that answered; null: none did), for a query
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
  /**
   * No data because the deployer itself did not ask (its bound on queries in flight, within
   * the round's timeout): never counted as a failure, whatever `noData` says; the host did
   * nothing wrong.
   */
  readonly notAsked?: true;
}

/** PromQL's duration units, in seconds. */
const UNIT_SECONDS: Readonly<Record<string, number>> = {
  ms: 0.001,
  s: 1,
  m: 60,
  h: 3600,
  d: 86_400,
  w: 604_800,
  y: 31_536_000,
};

/** Seconds of a PromQL duration ("4s", "1h30m", or a number of seconds); undefined if not one. */
export function durationSeconds(text: string): number | undefined {
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text);
  const parts = [...text.matchAll(/(\d+)(ms|s|m|h|d|w|y)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join("") !== text) return undefined;
  return parts.reduce((sum, p) => sum + Number(p[1]) * (UNIT_SECONDS[p[2] as string] ?? 0), 0);
}

/**
 * How far before the moment it is asked a query reads, in seconds: its longest range (`[4s]`,
 * a subquery's `[30m:1m]`) and its longest `offset`, added; 0 for a query of instants. Text in
 * quotes (label values) is not read.
 */
export function queryReach(query: string): number {
  const { range, offset } = queryReachParts(query);
  return range + offset;
}

/** How far back an analysis query reads: its text's reach, or its `reach` when longer. */
export function analysisReach(query: Pick<AnalysisQuery, "query" | "reach">): number {
  return Math.max(queryReach(query.query), query.reach ?? 0);
}

/**
 * The recording rules a query names (metric names with a ':', the convention Prometheus
 * reserves for them): their range is in the rule, which the query's text does not show.
 */
export function recordingRulesIn(query: string): string[] {
  const code = query
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\[[^\]]*\]|\{[^}]*\}/g, " ");
  return [...new Set(code.match(/[A-Za-z_:][A-Za-z0-9_:]*:[A-Za-z0-9_:]*/g) ?? [])];
}

/** queryReach's two parts: the longest range, and the longest `offset` back. */
export function queryReachParts(query: string): {
  readonly range: number;
  readonly offset: number;
} {
  const code = query.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""');
  let range = 0;
  for (const m of code.matchAll(/\[\s*([0-9a-z.]+)\s*(?::[^\]]*)?\]/gi)) {
    range = Math.max(range, durationSeconds(m[1] as string) ?? 0);
  }
  let offset = 0;
  // A negative offset reads later, not earlier.
  for (const m of code.matchAll(/\boffset\s+(-?)\s*([0-9a-z.]+)/gi)) {
    if (m[1] === "") offset = Math.max(offset, durationSeconds(m[2] as string) ?? 0);
  }
  return { range, offset };
}

/**
 * Whether a query's first measurements in a bake may still read the host's previous system:
 * measurement k comes min(k × `interval`, `seconds`) after the host is confirmed (the last at
 * the bake's end), so a query that reads further back than the (failure limit + 1)-th
 * measurement's time can fail a healthy host on what it ran before
 * (docs/progressive-delivery.md). What would keep them out, when they may.
 */
export function previousSystemReach(
  query: Pick<AnalysisQuery, "query" | "failureLimit" | "reach">,
  bake: Pick<HostBake, "seconds" | "interval">,
):
  | {
      readonly reach: number;
      readonly rangeAtMost: number;
      readonly offset?: number;
      readonly failureLimit?: number;
    }
  | undefined {
  const parts = queryReachParts(query.query);
  const offset = parts.offset;
  // A `reach` longer than the text's is a range the text does not show (a recording rule's).
  const range = Math.max(parts.range, (query.reach ?? 0) - offset);
  const reach = range + offset;
  const rangeAtMost = Math.min(bake.interval * (query.failureLimit + 1), bake.seconds);
  if (reach <= rangeAtMost) return undefined;
  // The least limit that keeps them out; none when the bake ends before it could.
  const rounds = Math.ceil(bake.seconds / bake.interval);
  const limit = Math.ceil(reach / bake.interval) - 1;
  return {
    reach,
    rangeAtMost,
    // The offset reads back whatever the range: the range may be at most what is left of it.
    ...(offset > 0 ? { offset } : {}),
    ...(limit < rounds && reach <= bake.seconds ? { failureLimit: limit } : {}),
  };
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

/** A measured value as people read it: four significant digits at most; infinities as PromQL's. */
export function formatValue(value: number): string {
  if (value === Number.POSITIVE_INFINITY) return "+Inf";
  if (value === Number.NEGATIVE_INFINITY) return "-Inf";
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value)) return String(value);
  return String(Number(value.toPrecision(4)));
}

/** The share of a baseline's limit a value may pass it by: its floating-point rounding. */
const LIMIT_ROUNDING = 1e-9;

/** One sample judged against the query's condition. */
export function judgeSample(
  query: AnalysisQuery,
  sample: Sample,
): { readonly verdict: Verdict; readonly why: string } {
  const { value } = sample;
  if (value === null) return { verdict: "no-data", why: sample.why ?? "no value" };
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
        why: `${shown}; no host of its role changes in a later wave of this rollout, to compare with`,
      };
    }
    if (base === null) {
      return {
        verdict: "no-data",
        why: `${shown}, but no data for the baseline (${sample.baselineWhy ?? "no value"})`,
      };
    }
    // +Inf and -Inf the middle two of the baseline's values: their median is none.
    if (Number.isNaN(base)) {
      return {
        verdict: "no-data",
        why: `${shown}, but no data for the baseline (its middle hosts answered +Inf and -Inf: no median)`,
      };
    }
    // The tolerance widens the baseline by its own size, so that a canary at the baseline's
    // value passes whatever its sign (a negative baseline times 1.5 would be below it); an
    // infinite baseline is its own limit.
    const { tolerance } = query.baseline;
    const limit = Number.isFinite(base) ? base + Math.abs(base) * (tolerance - 1) : base;
    const against =
      base >= 0
        ? `${formatValue(query.baseline.tolerance)} × the baseline's ${formatValue(base)}`
        : `the baseline's ${formatValue(base)} with a tolerance of ${formatValue(query.baseline.tolerance)} (at most ${formatValue(limit)})`;
    // A canary at exactly the limit passes, as the docs say, though the limit's floating-point
    // rounding falls below it (0.3 × 1.5 is 0.44999999999999996): a billionth of it is let go.
    const above = Number.isFinite(limit)
      ? value - limit > Math.abs(limit) * LIMIT_ROUNDING
      : value > limit;
    if (above) {
      return { verdict: "fail", why: `${shown} is above ${against}` };
    }
    return { verdict: "pass", why: `${shown} is within ${against}` };
  }
  return { verdict: "pass", why: `${shown} is ${conditionText(query)}` };
}

export type AnalysisState = "running" | "passed" | "failed";

/**
 * A query's verdict from its measurements so far: failed once its failures (no data counted as
 * one under `noData: fail`) pass its failure limit; once the bake `ended`, passed, but failed
 * under either rule when no measurement had data at all (a failure limit as long as the bake
 * never lets a bake with no data pass), or none from the query's reach on (queryReach: before
 * it, a range may hold the previous system's samples).
 */
export function analysisState(
  query: AnalysisQuery,
  measurements: readonly Measurement[],
  ended: boolean,
): { readonly state: AnalysisState; readonly why?: string } {
  const failing = measurements.filter(
    (m) =>
      m.verdict === "fail" ||
      (m.verdict === "no-data" && query.noData === "fail" && m.notAsked !== true),
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
  const noData = (m: Measurement) => m.verdict === "no-data";
  if (measurements.every(noData)) {
    // The host's own values, with none of the baseline's: the comparison never had data.
    const baselineOnly = query.baseline !== undefined && measurements.some((m) => m.value !== null);
    return {
      state: "failed",
      why: baselineOnly
        ? `${query.name}: no data for the baseline in the whole bake (${measurements.length} measurements): the role's unchanged hosts never answered a value (a metric their system lacks? compare with a \`max\` instead)`
        : `${query.name}: no data in the whole bake (${measurements.length} measurements)`,
    };
  }
  // A value only in the first measurements, whose range may still hold the previous system's
  // samples, says nothing of the new one: a metric it no longer serves (renamed, or drained to
  // 0/0) would pass on what the old system served. From the query's reach on, one must have
  // data. A bake that ended before its reach (the fleet file refuses a query that reads back
  // further than its bake lasts) measured the new system alone never.
  const reach = analysisReach(query);
  const alone = measurements.filter((m) => m.at >= reach);
  if (alone.length === 0) {
    return {
      state: "failed",
      why: `${query.name}: no measurement read the new system alone: the query reads ${formatValue(reach)}s back, and the bake measured until ${formatValue(measurements.at(-1)?.at ?? 0)}s`,
    };
  }
  if (alone.every(noData)) {
    return {
      state: "failed",
      why: `${query.name}: no data from ${formatValue(reach)}s into the bake on: only earlier measurements had a value, and the query (reading ${formatValue(reach)}s back) may have read the previous system's samples there`,
    };
  }
  return { state: "passed" };
}

/**
 * The median of the values that are numbers (of an even count, the mean of the middle two);
 * null when none is. Not the mean: one broken host of the baseline (at 100% errors, or +Inf)
 * must not lift its value so far that any canary passes.
 */
export function medianOf(values: readonly (number | null)[]): number | null {
  const numbers = values.filter((v): v is number => v !== null).sort((a, b) => a - b);
  if (numbers.length === 0) return null;
  const middle = Math.floor(numbers.length / 2);
  const upper = numbers[middle] as number;
  return numbers.length % 2 === 1 ? upper : ((numbers[middle - 1] as number) + upper) / 2;
}

/** A query of a plan's bakes whose first measurements may read what its hosts ran before. */
export interface BakeReachNote {
  /** The hosts whose bake has it, in the plan's order. */
  readonly hosts: readonly string[];
  /** The query's name. */
  readonly query: string;
  /** Seconds back it reads (queryReach). */
  readonly reach: number;
  /** The longest reach that keeps the previous system out: interval × (failureLimit + 1). */
  readonly rangeAtMost: number;
  /** Seconds its `offset` reads back, when it has one: a range keeps at most what is left. */
  readonly offset?: number;
  /** The least failure limit that keeps it out, when the bake measures often enough for one. */
  readonly failureLimit?: number;
}

/**
 * The notes of a plan's bakes (previousSystemReach for each query of each host's bake), hosts
 * that share a query and its note listed together: what `plan` prints under a query and
 * `--json` carries as `bakeNotes`.
 */
export function bakeReachNotes(
  hosts: readonly { readonly host: string; readonly bake?: HostBake }[],
): BakeReachNote[] {
  const notes = new Map<string, { hosts: string[]; note: Omit<BakeReachNote, "hosts"> }>();
  for (const { host, bake } of hosts) {
    if (bake === undefined) continue;
    for (const query of bake.analysis) {
      const reach = previousSystemReach(query, bake);
      if (reach === undefined) continue;
      const note = { query: query.name, ...reach };
      const key = JSON.stringify(note);
      const entry = notes.get(key) ?? { hosts: [], note };
      entry.hosts.push(host);
      notes.set(key, entry);
    }
  }
  return [...notes.values()].map(({ hosts, note }) => ({ hosts, ...note }));
}
