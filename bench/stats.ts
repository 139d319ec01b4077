// The benchmarks' shared arithmetic and layout: medians, megabytes and aligned text tables,
// and the whole machine's CPU time.
import { readFileSync } from "node:fs";

/** The median of `values` (NaN for none); the mean of the middle two for an even count. */
export function median(values: readonly number[]): number {
  const ascending = [...values].sort((x, y) => x - y);
  const mid = Math.floor(ascending.length / 2);
  const hi = ascending[mid] ?? Number.NaN;
  return ascending.length % 2 === 1 ? hi : ((ascending[mid - 1] ?? Number.NaN) + hi) / 2;
}

/** Aligned columns: the first `leftColumns` padded right, the rest (numbers) padded left. */
export function table(rows: readonly (readonly string[])[], leftColumns = 1): string {
  const widths = rows[0]?.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length))) ?? [];
  const line = (r: readonly string[]): string =>
    r
      .map((cell, c) =>
        c < leftColumns ? cell.padEnd(widths[c] ?? 0) : cell.padStart(widths[c] ?? 0),
      )
      .join("  ");
  return [
    line(rows[0] ?? []),
    widths.map((w) => "-".repeat(w)).join("  "),
    ...rows.slice(1).map(line),
  ].join("\n");
}

export function mb(bytes: number): string {
  return Number.isFinite(bytes) ? `${(bytes / 1e6).toFixed(1)} MB` : "n/a";
}

/** The least-squares line y = intercept + slope·x through `points`, with its r². */
export function linearFit(points: readonly { readonly x: number; readonly y: number }[]): {
  slope: number;
  intercept: number;
  r2: number;
} {
  const n = points.length;
  const mx = points.reduce((s, p) => s + p.x, 0) / n;
  const my = points.reduce((s, p) => s + p.y, 0) / n;
  const sxx = points.reduce((s, p) => s + (p.x - mx) ** 2, 0);
  const sxy = points.reduce((s, p) => s + (p.x - mx) * (p.y - my), 0);
  const syy = points.reduce((s, p) => s + (p.y - my) ** 2, 0);
  const slope = sxx === 0 ? Number.NaN : sxy / sxx;
  return { slope, intercept: my - slope * mx, r2: syy === 0 ? 1 : (sxy * sxy) / (sxx * syy) };
}

/** Busy and total jiffies of all CPUs so far, from /proc/stat (busy: all but idle and iowait). */
export function cpuTimes(): { busy: number; total: number } {
  const fields = (readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "")
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  const total = fields.reduce((a, b) => a + b, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { busy: total - idle, total };
}

/**
 * The whole machine's busy CPU seconds so far, all cores (/proc/stat counts USER_HZ ticks, 100 a
 * second on Linux): the difference over a span is what every process on the machine used in it.
 */
export function machineCpuSeconds(): number {
  return cpuTimes().busy / 100;
}
