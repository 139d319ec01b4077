// The report of `nixship init --from`: what each option of the other tool became, carried over,
// mapped or left behind (and why), as lines for people; --json prints the entries themselves.
import type { Outcome, ReportEntry } from "../fleet/foreign-fleet.js";
import { namesShown } from "../util/names-shown.js";

const HEADINGS: Record<Outcome, string> = {
  carried: "carried over (the same meaning in nixship):",
  mapped: "mapped (another shape in nixship):",
  left: "left behind (no counterpart), and why:",
};

/** The entries under three headings, each `option (nodes): counterpart or why`. */
export function conversionReportLines(entries: readonly ReportEntry[]): string[] {
  const lines: string[] = [];
  for (const outcome of ["carried", "mapped", "left"] as const) {
    const these = entries.filter((e) => e.outcome === outcome);
    if (these.length === 0) continue;
    lines.push(HEADINGS[outcome]);
    for (const e of these) {
      const nodes = e.nodes.length === 0 ? "" : ` (${namesShown(e.nodes, 8)})`;
      // A text of several lines (an ssh_config block to paste) goes on, indented under it.
      const [first, ...rest] = e.text.split("\n");
      lines.push(`  ${e.option}${nodes}: ${first}`, ...rest.map((l) => `      ${l}`));
    }
  }
  return lines;
}
