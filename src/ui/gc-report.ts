// `cache gc` as text: what was kept and deleted (every path, by package), why (the roots by
// source, and the roots that were wrong or skipped), and what it saves.
import type { GcEvent, GcReport } from "../cache/gc.js";
import { OBJECT_KINDS, ROOT_SOURCES, type Tallies } from "../cache/gc-plan.js";
import { formatBytes } from "./format.js";

const KIND_NAMES = {
  narinfo: "narinfos",
  nar: "NARs",
  listing: "listings",
  skip: "delta skip notes",
} as const;

/** Every kind, but skip notes only where a cache has deltas. */
function tallies(t: Tallies): string {
  return OBJECT_KINDS.filter((k) => k !== "skip" || t.skip.objects > 0)
    .map((k) => `${t[k].objects} ${KIND_NAMES[k]} (${formatBytes(t[k].bytes)})`)
    .join(", ");
}

export function formatGcReport(report: GcReport): string {
  const lines: string[] = [];
  lines.push(
    report.dryRun
      ? `cache gc of ${report.store}: dry run, nothing was deleted`
      : `cache gc of ${report.store}`,
  );
  const sources = ROOT_SOURCES.filter((s) => (report.roots.bySource[s] ?? 0) > 0)
    .map((s) => `${s} ${report.roots.bySource[s]}`)
    .join(", ");
  lines.push(`  roots:   ${report.roots.total} named (${sources || "none"})`);
  if (report.roots.missingCount > 0) {
    lines.push(
      `  ${report.roots.missingCount} roots are not in the cache (kept nothing for them):`,
    );
    for (const m of report.roots.missing) lines.push(`    ${m.path} (${m.sources.join(", ")})`);
    if (report.roots.missingCount > report.roots.missing.length) {
      lines.push(
        `    … and ${report.roots.missingCount - report.roots.missing.length} more (--json lists the first 20)`,
      );
    }
  }
  for (const m of report.malformedRoots) {
    lines.push(
      `  malformed root: ${m.path} (named by ${m.origins.join(", ") || "?"}): its narinfo describes ${m.describes}, which is kept`,
    );
  }
  for (const s of report.skippedRoots) lines.push(`  collected without ${s.name}: ${s.problem}`);
  for (const r of report.refusedReleases) {
    lines.push(
      `  refused release ${r.name} (agents refuse it too, so it keeps nothing): ${r.problem}`,
    );
  }
  for (const u of report.unreadRecords) {
    lines.push(
      `  host ${u.host}: its record does not read, so what its releases, rollouts and earlier records name is kept (${u.kept.length === 1 ? "1 path" : `${u.kept.length} paths`}): ${u.problem}`,
    );
    for (const p of u.kept.slice(0, PATHS_SHOWN)) lines.push(`    ${p}`);
    if (u.kept.length > PATHS_SHOWN)
      lines.push(`    … and ${u.kept.length - PATHS_SHOWN} more (--json lists them all)`);
  }
  lines.push(`  ${report.dryRun ? "would delete" : "deleted"}: ${tallies(report.deleted)}`);
  lines.push(...deletedLines(report));
  lines.push(`  kept:    ${tallies(report.kept)}`);
  if (report.young > 0)
    lines.push(`  ${report.young} objects are younger than the grace period (never deleted)`);
  lines.push(
    `  saves ${formatBytes(report.saved.bytes)}: USD ${report.saved.perMonth.toFixed(2)} a month at USD ${report.saved.pricePerGbMonth} per GB-month`,
  );
  const r = report.requests;
  lines.push(`  requests: ${r.list} LIST, ${r.get} GET, ${r.delete} DELETE`);
  if (report.reportKey !== null) lines.push(`  report kept in the store: ${report.reportKey}`);
  if (report.problems.length > 0) {
    lines.push(`  problems:`);
    for (const p of report.problems) lines.push(`    ${p}`);
  }
  return `${lines.join("\n")}\n`;
}

/** The progress line's text for an event. */
export function gcProgressText(event: GcEvent): string {
  switch (event.type) {
    case "waiting":
      return `gc: waiting for ${event.holders.length} push or deploy in progress to finish`;
    case "listing":
      return `gc: listing: ${event.narinfos} narinfos, ${event.nars} NARs`;
    case "marking":
      return `gc: marking: ${event.read} narinfos read`;
    case "deleting":
      return `gc: deleting ${KIND_NAMES[event.kind]}: ${event.done}/${event.total}`;
  }
}

/** Paths shown per package in text (--json lists them all). */
const PATHS_SHOWN = 5;
/** Packages shown in text. */
const PACKAGES_SHOWN = 30;

/** The deleted store paths by package, largest first, then the orphan NARs. */
function deletedLines(report: GcReport): string[] {
  const lines: string[] = [];
  const verb = report.dryRun ? "would delete" : "deleted";
  if (report.deletedPaths.length > 0)
    lines.push(`  store paths it ${verb}, by package (${report.deletedPaths.length}):`);
  for (const g of report.byPackage.slice(0, PACKAGES_SHOWN)) {
    lines.push(`    ${g.name} (${g.paths.length}, ${formatBytes(g.bytes)})`);
    for (const p of g.paths.slice(0, PATHS_SHOWN)) lines.push(`      ${p}`);
    if (g.paths.length > PATHS_SHOWN)
      lines.push(`      … and ${g.paths.length - PATHS_SHOWN} more (--json lists them all)`);
  }
  if (report.byPackage.length > PACKAGES_SHOWN)
    lines.push(
      `    … and ${report.byPackage.length - PACKAGES_SHOWN} more packages (--json lists them all)`,
    );
  if (report.deletedUnreadable.length > 0)
    lines.push(
      `  narinfos that did not parse (${report.deletedUnreadable.length}): ${report.deletedUnreadable.slice(0, PATHS_SHOWN).join(", ")}${report.deletedUnreadable.length > PATHS_SHOWN ? ", …" : ""}`,
    );
  if (report.orphanNars.length > 0)
    lines.push(
      `  orphan NARs (no narinfo named them) (${report.orphanNars.length}): ${report.orphanNars.slice(0, PATHS_SHOWN).join(", ")}${report.orphanNars.length > PATHS_SHOWN ? ", …" : ""}`,
    );
  return lines;
}
