// A host's delta report in words, the same on a deploy's host line and on the dashboard's host
// page: "12 paths by delta (1.2 MB for 40 MB of NARs), 3 whole".
import type { DeltaReport } from "../status/delta-report.js";
import { formatBytes } from "./format.js";
import { plural } from "./plan-format.js";

/** The report in words; undefined when the step did not run or had nothing to fetch. */
export function deltaText(delta: DeltaReport | undefined): string | undefined {
  if (delta === undefined || "skipped" in delta || delta.paths + delta.wholePaths === 0) {
    return undefined;
  }
  const bytes =
    delta.bytes === null || delta.narBytes === null
      ? ""
      : ` (${formatBytes(delta.bytes)} for ${formatBytes(delta.narBytes)} of NARs)`;
  const failed = delta.failed > 0 ? `; ${plural(delta.failed, "delta")} did not apply` : "";
  return `${plural(delta.paths, "path")} by delta${bytes}, ${delta.wholePaths} whole${failed}`;
}
