// The line a summary adds about the requests a command sent to its store's server (S3): how
// many of each kind, and how many of them were retries.
import type { RequestStats } from "../store/object-store.js";

export function formatRequestStats(stats: RequestStats): string {
  const sent = Object.entries(stats.requests).filter(([, n]) => n > 0);
  const total = sent.reduce((sum, [, n]) => sum + n, 0);
  const kinds = sent.map(([kind, n]) => `${n} ${kind}`).join(", ");
  const retries = `${stats.retries} ${stats.retries === 1 ? "retry" : "retries"}`;
  return `  ${total} requests${total > 0 ? ` (${kinds})` : ""}, ${retries}`;
}
