// `cache stats` as text.
import type { CacheStats } from "../cache/stats.js";
import { formatBytes } from "./format.js";

export function formatCacheStats(s: CacheStats): string {
  const lines: string[] = [`cache ${s.store}`];
  lines.push(
    `  ${s.paths} paths, ${formatBytes(s.narBytes)} NAR, ${formatBytes(s.fileBytes)} stored`,
  );
  for (const [compression, c] of Object.entries(s.byCompression)) {
    const ratio = c.fileBytes > 0 ? (c.narBytes / c.fileBytes).toFixed(2) : "-";
    lines.push(
      `    ${compression.padEnd(5)} ${String(c.paths).padStart(7)} paths  ${formatBytes(c.narBytes).padStart(9)} NAR  ${formatBytes(c.fileBytes).padStart(9)} stored  (${ratio}x)`,
    );
  }
  if (s.largestClosures.length > 0) {
    lines.push("  largest closures:");
    for (const c of s.largestClosures) {
      lines.push(
        `    ${formatBytes(c.narBytes).padStart(9)}  ${String(c.paths).padStart(6)} paths  ${c.path}`,
      );
    }
  }
  const d = s.deltas;
  if (d.paths > 0 || d.skipNotes.objects > 0) {
    const share = d.targetBytes > 0 ? ` (${((100 * d.bytes) / d.targetBytes).toFixed(1)}%)` : "";
    lines.push(
      `  deltas: ${d.paths} paths, ${formatBytes(d.bytes)} for ${formatBytes(d.targetBytes)} of their targets${share}; ${d.skipNotes.objects} pairs not worth one`,
    );
  }
  lines.push(
    `  orphan NARs: ${s.orphans.nars.objects} (${formatBytes(s.orphans.nars.bytes)}; 'cache gc' deletes them)`,
  );
  lines.push(`  narinfos whose NAR is missing: ${s.orphans.narinfosCount}`);
  listed(lines, s.orphans.narinfos, s.orphans.narinfosCount, "the first 50 and counts them all");
  if (s.untrusted === undefined)
    lines.push("  signatures: not checked (no trusted keys: --trusted-key or --fleet)");
  else {
    lines.push(`  narinfos signed by no trusted key: ${s.untrusted.length}`);
    listed(lines, s.untrusted, s.untrusted.length, "them all");
  }
  if (s.unreadable.length > 0) {
    lines.push(`  narinfos that do not parse: ${s.unreadable.length}`);
    listed(lines, s.unreadable, s.unreadable.length, "them all");
  }
  lines.push(`  requests: ${s.requests.list} LIST, ${s.requests.get} GET`);
  return `${lines.join("\n")}\n`;
}

/** The first 50 of `items` (of `count`), then how many more, and what --json lists. */
function listed(lines: string[], items: readonly string[], count: number, json: string): void {
  for (const item of items.slice(0, 50)) lines.push(`    ${item}`);
  if (count > 50) lines.push(`    … and ${count - 50} more (--json lists ${json})`);
}
