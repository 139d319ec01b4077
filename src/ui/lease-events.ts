// What a push, deploy or pin says while it waits for a collection of the cache, or cannot renew its
// lease.
import type { LeaseEvent } from "../cache/gc-lease.js";

export function formatLeaseEvent(event: LeaseEvent): string {
  return event.type === "waiting-for-gc"
    ? `waiting for the cache's garbage collection to finish (${event.holder.by}, since ${event.holder.since}; it lets go by ${event.until.toISOString()} at the latest)`
    : `warning: could not renew its lease on the cache (a collection may start meanwhile): ${event.message}`;
}
