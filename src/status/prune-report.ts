// What a host reports after pruning (policy.keepGenerations): the generations it kept and
// removed, and how its garbage collection went. The same data in every delivery mode: read from
// activate.sh's `prune` result, and kept in an agent's status record.

export const GC_RESULTS = ["done", "timed-out", "failed"] as const;
export type GcResult = (typeof GC_RESULTS)[number];

export type PruneReport =
  | {
      readonly ok: true;
      /** Generation numbers, ascending. */
      readonly kept: readonly number[];
      readonly removed: readonly number[];
      /** timed-out: stopped at its bound (what it deleted stays deleted; the store is whole). */
      readonly gc: GcResult;
      /** As Nix counted them; null when it did not say. */
      readonly deletedPaths: number | null;
      readonly freedMiB: number | null;
    }
  | { readonly ok: false; readonly message: string };

/** The report in `value`, or why it is not one (a host's answer is checked, not trusted). */
export function readPruneReport(value: unknown): PruneReport | string {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return "not a JSON object";
  }
  const r = value as Record<string, unknown>;
  if (r.ok === false) {
    return typeof r.message === "string" ? { ok: false, message: r.message } : '"message" missing';
  }
  if (r.ok !== true) return '"ok" must be true or false';
  const numbers = (key: string): number[] | string => {
    const v = r[key];
    return Array.isArray(v) && v.length <= 100_000 && v.every((n) => Number.isSafeInteger(n))
      ? (v as number[])
      : `"${key}" must be a list of generation numbers`;
  };
  const kept = numbers("kept");
  const removed = numbers("removed");
  if (typeof kept === "string") return kept;
  if (typeof removed === "string") return removed;
  if (!(GC_RESULTS as readonly unknown[]).includes(r.gc)) {
    return `"gc" must be one of ${GC_RESULTS.join(", ")}`;
  }
  const count = (key: string, whole: boolean): number | null | string => {
    const v = r[key];
    if (v === null) return null;
    const ok =
      typeof v === "number" && v >= 0 && (whole ? Number.isSafeInteger(v) : Number.isFinite(v));
    return ok ? v : `"${key}" must be a number or null`;
  };
  const deletedPaths = count("deletedPaths", true);
  const freedMiB = count("freedMiB", false);
  if (typeof deletedPaths === "string") return deletedPaths;
  if (typeof freedMiB === "string") return freedMiB;
  return { ok: true, kept, removed, gc: r.gc as GcResult, deletedPaths, freedMiB };
}

/** One line for people: "removed generations 1, 2; kept 3, 4; garbage: 12 paths, 3.50 MiB". */
export function describePrune(report: PruneReport): string {
  if (!report.ok) return `pruning failed: ${report.message}`;
  const removed =
    report.removed.length === 0
      ? "no generation to remove"
      : `removed generation${report.removed.length === 1 ? "" : "s"} ${report.removed.join(", ")}`;
  const gc =
    report.gc === "done"
      ? `garbage collected${report.deletedPaths === null ? "" : `: ${report.deletedPaths} paths, ${report.freedMiB ?? "?"} MiB freed`}`
      : report.gc === "timed-out"
        ? "garbage collection stopped at its time limit"
        : "garbage collection failed";
  return `${removed}; kept ${report.kept.join(", ") || "none"}; ${gc}`;
}
