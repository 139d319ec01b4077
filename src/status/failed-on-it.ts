// Whether a host's status record tells that the system it runs failed there and did not go back
// (a bake failed and its rollback never reached the host): every view, and the plan, judge it
// so. Pure.
import type { StatusRecord } from "./status.js";

/** A system that failed on the host, which it still runs (as the host's own answer says one). */
export interface RecordedFailure {
  readonly path: string;
  /** Unix seconds; null when the record does not say. */
  readonly since: number | null;
  readonly reason: string;
}

/**
 * The failure `record` tells of the system the host runs, `running`: its deploy failed there,
 * and did not go back (rolledBack false, or null in a record older than that word, or a
 * rollback onto that same system). Undefined otherwise.
 */
export function failedOnIt(
  record: Partial<
    Pick<StatusRecord, "state" | "rolledBack" | "desired" | "previous" | "error" | "updatedAt">
  >,
  running: string | null | undefined,
): RecordedFailure | undefined {
  const { desired, updatedAt } = record;
  // A rollback to the very system that failed is none: the host ran it already when it was
  // activated again (its failure there, or its bake, unfinished, was to be judged anew).
  const wentBack = record.rolledBack === true && record.previous !== desired;
  if (record.state !== "failed" || wentBack || !desired) return undefined;
  if (desired !== running) return undefined;
  return {
    path: desired,
    since: updatedAt === undefined ? null : Math.floor(Date.parse(updatedAt) / 1000),
    reason: record.error ?? "failed",
  };
}
