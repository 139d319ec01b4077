// `cache gc` as text: what was kept and deleted (every path, by package), why (the roots by
// source, and the roots that were wrong or skipped; in a dry run, why each path goes and what
// keeps each root), and what it saves.
import type { GcEvent, GcReport } from "../cache/gc.js";
import { OBJECT_KINDS, ROOT_SOURCES, type Tallies } from "../cache/gc-plan.js";
import type { LetGo, WhyGone } from "../cache/gc-why.js";
import { formatBytes } from "./format.js";

const KIND_NAMES = {
  narinfo: "narinfos",
  nar: "NARs",
  listing: "listings",
  skip: "delta skip notes",
  bundle: "secrets bundles",
  shard: "release shards",
  leftover: "writers' temp and lock files",
} as const;

/** The kinds always said; the others only where there are any. */
const ALWAYS_SAID: ReadonlySet<string> = new Set(["narinfo", "nar", "listing"]);

function tallies(t: Tallies): string {
  return OBJECT_KINDS.filter((k) => ALWAYS_SAID.has(k) || t[k].objects > 0)
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
      `  refused release ${r.name} (nixship refuses it, so it keeps nothing; a host that applied its entry keeps its system by its record): ${r.problem}`,
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
  lines.push(...whyLines(report));
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

/** Paths a dry run's text says why it deletes, and kept roots it says what keeps (--json: all). */
export const WHY_SHOWN = 20;

/**
 * A dry run's why: for each path it would delete, why it goes (the systems and unreferenced
 * paths first, then what is in their closures), and for each kept root, what keeps it.
 */
function whyLines(report: GcReport): string[] {
  const lines: string[] = [];
  const explained = report.whyDeleted ?? [];
  if (explained.length > 0) {
    const first = [...explained].sort(
      (a, b) =>
        Number(hasVia(a.why)) - Number(hasVia(b.why)) || a.storePath.localeCompare(b.storePath),
    );
    lines.push(`  why each path goes (${explained.length}):`);
    for (const p of first.slice(0, WHY_SHOWN)) lines.push(`    ${p.storePath}: ${whyText(p.why)}`);
    if (explained.length > WHY_SHOWN)
      lines.push(`    … and ${explained.length - WHY_SHOWN} more (--json says why for each path)`);
  }
  const kept = report.keptRoots ?? [];
  if (kept.length > 0) {
    lines.push(`  what keeps each kept root (${kept.length}):`);
    for (const k of kept.slice(0, WHY_SHOWN)) {
      const more = k.byCount > k.by.length ? ` and ${k.byCount - k.by.length} more` : "";
      const by = k.by.length > 0 ? ` (${k.by.join(", ")}${more})` : "";
      lines.push(`    ${k.path}: ${k.sources.join(", ")}${by}`);
    }
    if (kept.length > WHY_SHOWN)
      lines.push(`    … and ${kept.length - WHY_SHOWN} more (--json lists them all)`);
  }
  return lines;
}

function hasVia(why: WhyGone): boolean {
  return "via" in why && why.via !== undefined;
}

/** Why a path goes, in words. */
export function whyText(why: WhyGone): string {
  switch (why.kind) {
    case "delta":
      return `a delta of ${why.target}, which goes (a delta goes with its target)`;
    case "unreferenced": {
      const what = `unreferenced: no root names it and nothing kept refers to it, pushed ${why.pushed}`;
      return why.via === undefined ? what : `only in the closure of ${why.via}, ${what}`;
    }
    case "let-go": {
      const what = letGoText(why.letGo);
      return why.via === undefined ? what : `only in the closure of ${why.via}: ${what}`;
    }
  }
}

function letGoText(letGo: LetGo): string {
  switch (letGo.rule) {
    case "keep-releases":
      return `release ${letGo.seq} of channel ${letGo.channel} named it for ${letGo.host}, and only the newest ${letGo.keep} releases of a channel are kept (--keep-releases)`;
    case "keep-generations":
      return `${letGo.host} was confirmed on it in channel ${letGo.channel}, and only each host's newest ${letGo.keep} confirmed systems are kept (--keep-generations)`;
    case "status":
      return `rollout ${letGo.rollout} (${letGo.at}) named it for ${letGo.host}, and no status record names it now (a host's record keeps its current, desired and previous systems)`;
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
  for (const kind of ["bundle", "shard", "leftover"] as const) {
    const keys = report.deletedObjects.filter((o) => o.kind === kind).map((o) => o.key);
    const all = report.deleted[kind].objects;
    if (all === 0) continue;
    const more = all > Math.min(keys.length, PATHS_SHOWN) ? ", …" : "";
    lines.push(`  ${KIND_NAMES[kind]} (${all}): ${keys.slice(0, PATHS_SHOWN).join(", ")}${more}`);
  }
  return lines;
}
