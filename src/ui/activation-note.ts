// How `nixship status` tells of an activation holding a host's lock: what, since when, and
// until when (after that deadline the next deploy takes the lock over).
import type { ActivationInProgress } from "../host/activation.js";
import { formatEpochSeconds } from "./format.js";
import { storeName } from "./plan-format.js";

/** "14:02:10Z" from Unix seconds (the date too when it is not today's). */
function clock(seconds: number, now: Date): string {
  const at = formatEpochSeconds(seconds);
  const sameDay = at.slice(0, 10) === now.toISOString().slice(0, 10);
  return sameDay ? `${at.slice(11, 19)}Z` : `${at.slice(0, 19)}Z`;
}

export function activationNote(a: ActivationInProgress, now = new Date()): string {
  const what = a.path ? `activating ${storeName(a.path)}` : a.command;
  const since = a.since !== null ? ` since ${clock(a.since, now)}` : "";
  if (a.stale) {
    return `stale lock: ${what}${since} (${a.pid === null ? "holder unknown" : `pid ${a.pid}`}); the next deploy or rollback takes it over and rolls it back`;
  }
  const until = a.deadline !== null ? `, deadline ${clock(a.deadline, now)}` : "";
  return `${what}${since}${until}`;
}
