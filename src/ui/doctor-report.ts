// `nixship doctor`'s text: one line per check, grouped by area, each problem with its fix.
import type { Check } from "../doctor/check.js";
import { withoutControls } from "../util/text.js";

const MARK = { ok: "ok  ", warn: "WARN", fail: "FAIL", skip: "--  " } as const;

export function formatDoctorReport(checks: readonly Check[]): string {
  const lines: string[] = [];
  let area: string | undefined;
  for (const c of checks) {
    if (c.area !== area) {
      area = c.area;
      lines.push(`${area}:`);
    }
    // A detail quotes what hosts and builders answered: no control character of theirs shows.
    lines.push(`  ${MARK[c.status]} ${c.name}: ${withoutControls(c.detail)}`);
    if (c.fix && (c.status === "fail" || c.status === "warn")) lines.push(`       fix: ${c.fix}`);
  }
  const failed = checks.filter((c) => c.status === "fail").length;
  const warned = checks.filter((c) => c.status === "warn").length;
  lines.push(
    failed > 0
      ? `${failed} problem(s) block a deploy${warned > 0 ? `, ${warned} warning(s)` : ""}`
      : `nothing blocks a deploy${warned > 0 ? ` (${warned} warning(s))` : ""}`,
  );
  return `${lines.join("\n")}\n`;
}
