// The reports of past collections, kept in the store (gc/reports/) so that an operator can see
// after the fact what a collection took: the newest GC_REPORTS_KEPT, each the `--json` report.
import { randomBytes } from "node:crypto";
import { listAll, readAll } from "../store/helpers.js";
import type { ObjectStore } from "../store/object-store.js";

export const GC_REPORTS_PREFIX = "gc/reports/";
/** How many collections' reports are kept; older ones are deleted as a new one is written. */
export const GC_REPORTS_KEPT = 20;
/** A report of 100,000 deleted paths is about 25 MB. */
const REPORT_LIMIT = 256 * 1024 * 1024;

/** Writes `report` and deletes all but the newest GC_REPORTS_KEPT; returns its key. */
export async function keepGcReport(
  store: ObjectStore,
  report: object,
  now: Date = new Date(),
): Promise<string> {
  // Keys sort by time: the name starts with the time, to the millisecond, in UTC.
  const at = now.toISOString().replace(/:/g, "-");
  const key = `${GC_REPORTS_PREFIX}${at}-${randomBytes(4).toString("hex")}.json`;
  await store.put(key, Buffer.from(`${JSON.stringify(report)}\n`), {
    contentType: "application/json",
  });
  const keys = await gcReportKeys(store);
  for (const old of keys.slice(0, Math.max(0, keys.length - GC_REPORTS_KEPT))) {
    await store.delete(old);
  }
  return key;
}

/** The kept reports' keys, oldest first. */
export async function gcReportKeys(store: ObjectStore): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of listAll(store, GC_REPORTS_PREFIX)) keys.push(o.key);
  return keys.sort();
}

/** A kept report, parsed (undefined when it is gone). */
export async function readGcReport(store: ObjectStore, key: string): Promise<unknown> {
  const bytes = await readAll(store, key, REPORT_LIMIT);
  return bytes === undefined ? undefined : JSON.parse(bytes.toString("utf8"));
}
