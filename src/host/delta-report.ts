// Delta reports (activate --delta-tool's `delta`) added up: the instances of one SSM host, the
// hosts of a deploy's summary.
import type { DeltaReport } from "./activation.js";

/** A report that counted: the step ran. */
type CountedReport = Exclude<DeltaReport, { readonly skipped: string }>;

/**
 * What came by delta and what whole, summed over `reports`' counted ones (`counted` of them;
 * the others said why the step did not run); a byte count is null when a report could not tell.
 */
export type DeltaTotals = CountedReport & { readonly counted: number };

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
