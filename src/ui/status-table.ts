// `nixship status` as a table: one line per host, live (ssh, asked over SSH) or stored (the
// host's status record, and for agent hosts its liveness and whether it is behind the channel),
// from the rows of the status view (views/status-rows.ts). A host that drifts says so first.

import { hostKeyRefused } from "../delivery/host-key-refused.js";
import type { BootState, FailedSystem, RebootState } from "../host/activation.js";
import { behindText } from "../status/behind.js";
import type { UnbakedBy } from "../status/unfinished-bake.js";
import type { Drift } from "../views/drift.js";
import { hostState } from "../views/host-state.js";
import {
  bootsNextOf,
  failedInRollout,
  type LiveRow,
  type StatusRow,
  type StoredRow,
} from "../views/status-rows.js";
import { activationNote } from "./activation-note.js";
import { formatEpochSeconds } from "./format.js";
import { shownOriginText } from "./origin-text.js";
import { formatTable, storeName, systemNamer } from "./plan-format.js";

export type { LiveRow, StatusRow, StoredRow };

export function formatStatusTable(rows: readonly StatusRow[]): string {
  const table = [
    ["HOST", "MODE", "CURRENT", "GEN", "STATE", "NOTE"],
    ...rows.map((r) => (r.source === "live" ? liveCells(r) : storedCells(r))),
  ];
  return `${formatTable(table).join("\n")}\n`;
}

function liveCells(r: LiveRow): string[] {
  if (!r.reachable) {
    const why = r.hostKey === true ? hostKeyRefused(r.error) : r.error;
    return [r.host, r.mode, "-", "-", hostState(r), why];
  }
  const note = [
    r.profile && r.profile !== r.current ? `boots next: ${storeName(r.profile)}` : "",
    r.pending ? `awaiting confirmation (${r.pending})` : "",
    r.activation ? activationNote(r.activation) : "",
  ];
  // A failure its record tells names the rollout it failed in, once (behind.ts toldFailure).
  const told = failedInRollout(r);
  if (r.behindRollout && !told) note.unshift(behindText(r.behindRollout));
  if (r.behind && r.last) {
    note.unshift(behindNote(r.last, r.current, told ? r.behindRollout?.rollout : undefined));
  }
  if (r.secretsAway) {
    note.unshift(
      "its secrets are not those its last deploy installed (a boot emptied /run, and its system installs none again; or someone changed them there): the next deploy installs them",
    );
  }
  if (r.failureUndone !== undefined) note.unshift(undoneNote(r.failureUndone));
  if (r.unbaked !== undefined) note.unshift(unbakedNote(r.unbaked));
  if (r.failed) note.unshift(failedNote(r.failed));
  if (r.drift) note.unshift(driftNote(r.drift));
  if (r.reboot?.due) note.push(rebootNote(r.reboot));
  if (r.boot?.pending) note.push(pendingBootNote(r.boot.pending));
  if (r.origin) note.push(shownOriginText(r.origin));
  return [
    r.host,
    r.mode,
    r.current ? storeName(r.current) : "(none)",
    String(r.generation ?? "-"),
    hostState(r),
    joinNote(note),
  ];
}

/** What the fleet last asked of a host that runs something else, and how that went. */
function behindNote(
  last: NonNullable<LiveRow["last"]>,
  current: string | undefined,
  rollout?: string,
): string {
  const label = systemNamer([last.wants ?? undefined, current]);
  const wants = `wants ${label(last.wants ?? "(nothing)")}`;
  if (last.state === "failed") {
    const back = last.rolledBack ? ", and it went back" : "";
    const which =
      rollout === undefined ? "its last deploy" : `its last deploy, rollout ${rollout},`;
    return `${wants}: ${which} failed${last.phase ? ` in ${last.phase}` : ""}${back} (${last.error ?? "no message"})`;
  }
  return `${wants} (${last.state} at ${last.at}): not what it runs`;
}

/** A host that failed in a rollout a rollback undid since: it runs what it ran before. */
function undoneNote(rollout: string): string {
  return `failed in rollout ${rollout} and went back; that rollout is undone, so it runs what the fleet asks`;
}

/** A reboot the host's system needs: since when, and what it would load. */
function rebootNote(reboot: RebootState): string {
  const since = reboot.since === null ? "" : ` since ${formatEpochSeconds(reboot.since)}`;
  return `reboot pending${since}: its ${reboot.changed.join(", ")} differ from the booted system's`;
}

/** A reboot into a new system that nobody confirmed or undid (the deployer went away). */
function pendingBootNote(pending: NonNullable<BootState["pending"]>): string {
  const since = pending.since === null ? "" : ` since ${formatEpochSeconds(pending.since)}`;
  const into = pending.path === null ? "" : ` into ${storeName(pending.path)}`;
  return `reboot${into} unconfirmed${since}: the next deploy or rollback decides`;
}

/**
 * What a drifting host runs and what nixship left on it: by name, with the start of the hash
 * where two of them have the same name (a configuration changed by hand keeps its name).
 */
function driftNote(drift: Drift): string {
  const label = systemNamer([drift.running, ...drift.expected]);
  const given = drift.expected.map(label).join(" or ");
  return `runs ${label(drift.running)}, not what nixship left on it (${given})`;
}

/** A system the host runs that failed there: since when, and why. */
/** A host whose system's bake never finished (status/unfinished-bake.ts). */
function unbakedNote(unbaked: UnbakedBy): string {
  return `its bake in rollout ${unbaked.rollout} never finished (${unbaked.why}): no bake judged the system it runs; the next deploy bakes it again`;
}

function failedNote(failed: FailedSystem): string {
  const since = failed.since === null ? "" : ` since ${formatEpochSeconds(failed.since)}`;
  return `its system failed${since}: ${failed.reason}`;
}

function storedCells(r: StoredRow): string[] {
  if (r.unreadable !== undefined) {
    return [r.host, r.mode, "-", "-", "unreadable", `its status record: ${r.unreadable}`];
  }
  if (!r.reported || r.state === undefined) {
    const heard = r.liveness === "paused" ? "; its agent is paused" : "";
    const behind = r.behindRollout === undefined ? "" : `; ${behindText(r.behindRollout)}`;
    return [r.host, r.mode, "-", "-", hostState(r), `never reported${heard}${behind}`];
  }
  return [
    r.host,
    r.mode,
    r.current ? storeName(r.current) : "(none)",
    String(r.generation ?? "-"),
    hostState(r),
    storedNote(r),
  ];
}

/** The NOTE column of a stored row: each part once, none empty. */
export function storedNote(r: StoredRow): string {
  const release =
    r.seq === null || r.seq === undefined
      ? ""
      : r.behind === true && r.channelSeq !== null && r.channelSeq !== undefined
        ? `release ${r.seq}, channel at ${r.channelSeq}`
        : `release ${r.seq}`;
  const what =
    r.failureUndone !== undefined
      ? undoneNote(r.failureUndone)
      : r.state === "applying"
        ? `applying${r.desired ? ` ${storeName(r.desired)}` : ""} since ${r.startedAt}`
        : r.state === "failed"
          ? `${r.error ?? "failed"}; ${r.rolledBack === true ? "rolled back" : r.rolledBack === false ? "not rolled back" : ""}`
          : (r.error ?? "");
  const heartbeat =
    r.liveness === undefined || r.liveness === "online"
      ? ""
      : r.heartbeatAt
        ? `last heartbeat ${r.heartbeatAt}${r.heartbeatAhead === undefined ? "" : `, ${r.heartbeatAhead}s ahead of this machine's clock: a clock is wrong (this machine's, the host's or the store's: check their time sync)`}`
        : "no heartbeat";
  const drift = r.drift === undefined ? "" : driftNote(r.drift);
  // A boot deploy's success: it boots next a system that no check has seen, as a live row's
  // pending boot says (pendingBootNote).
  const next = bootsNextOf(r);
  const boots =
    next === undefined
      ? ""
      : `reboot into ${systemNamer([next, r.current ?? ""])(next)} unconfirmed since ${r.updatedAt}: the next deploy or rollback decides`;
  return joinNote([
    drift,
    boots,
    r.unbaked === undefined ? "" : unbakedNote(r.unbaked),
    r.behindRollout === undefined
      ? ""
      : failedInRollout(r)
        ? `failed in rollout ${r.behindRollout.rollout}`
        : behindText(r.behindRollout),
    release,
    what,
    heartbeat,
    r.updatedAt ? `reported ${r.updatedAt}` : "",
    r.origin ? shownOriginText(r.origin) : "",
  ]);
}

function joinNote(parts: readonly string[]): string {
  return parts
    .map((p) => p.replace(/;\s*$/, "").trim())
    .filter(Boolean)
    .join("; ");
}
