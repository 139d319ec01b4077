// What a host fetched by delta in one apply (activate --delta-tool's `delta`, docs/deltas.md):
// read from the host's answer, kept in its status record, added up for a summary, the instances
// of an SSM host and the dashboard. The same data in every delivery mode.
import { withoutControls } from "../util/text.js";

/**
 * The delta step's report: the paths rebuilt from deltas, the bytes of the deltas fetched
 * (their NAR sizes) and of the NARs they rebuilt, the paths fetched whole and their NAR bytes,
 * and the deltas fetched that did not apply (those paths came whole). Sizes are null when the
 * store could not be asked in time. Or only why the step did not run ("skipped").
 */
export type DeltaReport = CountedDeltaReport | { readonly skipped: string };

/** A report of a step that ran. */
export interface CountedDeltaReport {
  readonly paths: number;
  readonly bytes: number | null;
  readonly narBytes: number | null;
  readonly wholePaths: number;
  readonly wholeNarBytes: number | null;
  readonly failed: number;
}

/** The longest `skipped` reason kept. */
const MAX_REASON = 500;

/** The report in `value`, or why it is not one (a host's answer is checked, not trusted). */
export function readDeltaReport(value: unknown): DeltaReport | string {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return "not a JSON object";
  }
  const r = value as Record<string, unknown>;
  if (r.skipped !== undefined) {
    return typeof r.skipped === "string"
      ? { skipped: withoutControls(r.skipped.slice(0, MAX_REASON)) }
      : '"skipped" must be a string';
  }
  const counts: Record<string, number | null> = {};
  for (const key of ["paths", "wholePaths", "failed", "bytes", "narBytes", "wholeNarBytes"]) {
    const v = r[key];
    const nullable = key.endsWith("ytes");
    if (v === null && nullable) counts[key] = null;
    else if (Number.isSafeInteger(v) && (v as number) >= 0) counts[key] = v as number;
    else return `"${key}" must be a whole number${nullable ? " or null" : ""}`;
  }
  return {
    paths: counts.paths as number,
    bytes: counts.bytes ?? null,
    narBytes: counts.narBytes ?? null,
    wholePaths: counts.wholePaths as number,
    wholeNarBytes: counts.wholeNarBytes ?? null,
    failed: counts.failed as number,
  };
}

/**
 * What came by delta and what whole, summed over `reports`' counted ones (`counted` of them;
 * the others said why the step did not run); a byte count is null when a report could not tell.
 */
export type DeltaTotals = CountedDeltaReport & { readonly counted: number };

export function sumDeltaReports(reports: readonly (DeltaReport | undefined)[]): DeltaTotals {
  const sum = (a: number | null, b: number | null) => (a === null || b === null ? null : a + b);
  let totals: DeltaTotals = {
    counted: 0,
    paths: 0,
    bytes: 0,
    narBytes: 0,
    wholePaths: 0,
    wholeNarBytes: 0,
    failed: 0,
  };
  for (const r of reports) {
    if (r === undefined || "skipped" in r) continue;
    totals = {
      counted: totals.counted + 1,
      paths: totals.paths + r.paths,
      bytes: sum(totals.bytes, r.bytes),
      narBytes: sum(totals.narBytes, r.narBytes),
      wholePaths: totals.wholePaths + r.wholePaths,
      wholeNarBytes: sum(totals.wholeNarBytes, r.wholeNarBytes),
      failed: totals.failed + r.failed,
    };
  }
  return totals;
}

/** The totals as one report (an SSM host of several instances), or undefined when none counted. */
export function combinedDeltaReport(
  reports: readonly (DeltaReport | undefined)[],
): DeltaReport | undefined {
  const { counted, ...report } = sumDeltaReports(reports);
  return counted === 0 ? undefined : report;
}
