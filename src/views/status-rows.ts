// The rows of the status view, one per host: live (an ssh host's own answer) or stored (its
// status record, and for an agent host its liveness and whether it is behind the channel), each
// saying whether the host drifts and whether it is in step. Pure: the reading is status-view.ts.

import { type AgentStanding, inStep } from "../channel/standing.js";
import type { DeliveryMode, FleetHost } from "../fleet/fleet.js";
import type { HostStatus } from "../host/script-outcomes.js";
import { type Behind, behindOf, endedWithoutDeploy, recordSince } from "../status/behind.js";
import type { DeltaReport } from "../status/delta-report.js";
import { failedOnIt } from "../status/failed-on-it.js";
import type { Ask } from "../status/fleet-asks.js";
import type { StatusRecord } from "../status/status.js";
import { type UnbakedBy, unfinishedBake } from "../status/unfinished-bake.js";
import { type Drift, driftOf } from "./drift.js";
import type { ShownOrigin } from "./host-origins.js";

interface RowBase {
  readonly host: string;
  readonly mode: DeliveryMode;
  /**
   * Reachable (live), or reported success or applying and, for agents, online and not behind;
   * and in either case not drifting, and not behind the fleet's last rollout to name it.
   */
  readonly inStep: boolean;
  /** Set when the host runs a system nixship did not leave on it (drift.ts). */
  readonly drift?: Drift;
  /** Who put the system it runs there and from what (host-origins.ts); absent: not known. */
  readonly origin?: ShownOrigin;
  /** What it fetched by delta to get the system it runs (its record's); absent: not known. */
  readonly delta?: DeltaReport;
  /**
   * Set when the fleet's last rollout to name it gave it a system it does not run, and nothing
   * since says otherwise (behind.ts): which rollout, and why it did not get it.
   */
  readonly behindRollout?: Behind;
  /**
   * Set when its record tells it failed in a rollout, and went back, that a rollback has since
   * undone (behind.ts failureUndone): that rollout's id. Its failure is then history, not what
   * the fleet asks of it.
   */
  readonly failureUndone?: string;
  /**
   * Set when the system it runs came from a rollout that never finished baking it there
   * (unfinished-bake.ts): that rollout, and what became of its bake. Not in step: no bake
   * judged the system; the next deploy bakes it again.
   */
  readonly unbaked?: UnbakedBy;
}

/** What the fleet last asked of a host, and how it went: its status record, read for the view. */
export interface LastDeploy {
  /** The system the last deploy (or rollback) asked the host to run. */
  readonly wants: string | null;
  readonly state: StatusRecord["state"];
  readonly phase: StatusRecord["phase"];
  readonly error: string | null;
  readonly rolledBack: boolean | null;
  readonly at: string;
}

export type LiveRow = RowBase & {
  readonly source: "live";
  /** Its record's last deploy; absent when it has none. */
  readonly last?: LastDeploy;
  /** It runs another system than its last deploy asked of it (a failure, or a boot pending). */
  readonly behind?: true;
  /**
   * Its installed secrets are not those its last deploy gave it (its record's `secrets`): a
   * boot emptied its /run and nothing installed them again, or someone changed them there.
   */
  readonly secretsAway?: true;
} & HostStatus;

export type StoredRow = RowBase & {
  readonly source: "stored";
  readonly reported: boolean;
  /** The host's record could not be read, and why (that host's alone). */
  readonly unreadable?: string;
} & Omit<Partial<StatusRecord>, "origin"> &
  Partial<AgentStanding>;

export type StatusRow = LiveRow | StoredRow;

/**
 * Whether a host that answered is mid-deploy: an activation holds its lock (a holder alive and
 * within its deadline: `plan` calls it busy) or awaits its deploy's confirmation.
 */
export function midDeploy(status: HostStatus): boolean {
  if (!status.reachable) return false;
  return status.pending != null || (status.activation != null && !status.activation.stale);
}

/** An ssh host as it answered, judged for drift against its status record (if any). */
export function liveRow(
  host: FleetHost,
  status: HostStatus,
  record: StatusRecord | undefined,
  origin?: ShownOrigin,
  ask?: Ask,
  failureUndoneIn?: string,
): LiveRow {
  // An activation under way (its lock held by a live holder) or awaiting its deploy's
  // confirmation: the host is mid-deploy, and runs what that deploy gives it, which its record
  // names only once the deploy ends. Neither drift nor behind: applying (host-state.ts).
  const judged = status.reachable && !midDeploy(status);
  const drift = judged
    ? driftOf({
        running: status.current,
        record,
        asked: ask && { system: ask.system, startedAt: ask.rollout.startedAt },
      })
    : undefined;
  // One that does not answer is judged by what it last reported running.
  const behindRollout =
    behindOf(ask, record, status.reachable ? status.current : (record?.current ?? null)) ??
    (status.reachable && !midDeploy(status)
      ? endedWithoutDeploy(ask, record, status.current)
      : undefined);
  const last: LastDeploy | undefined =
    record === undefined
      ? undefined
      : {
          wants: record.desired,
          state: record.state,
          phase: record.phase,
          error: record.error,
          rolledBack: record.rolledBack,
          at: record.updatedAt,
        };
  // A boot deploy's success asked for the system it boots next, not one it runs now.
  const setToBoot =
    record !== undefined &&
    status.reachable &&
    bootsNextOf(record) !== undefined &&
    status.profile === record.desired;
  // A failure in a rollout since undone asks nothing while it runs what it went back to.
  const undone =
    failureUndoneIn !== undefined && status.reachable && status.current === record?.current;
  // The fleet's last rollout asked what it runs, and its record is older than that rollout
  // (its deploy was killed before it wrote it, or it ran it by hand since): the record's wish
  // is not the last word, as drift judges it too.
  const asked =
    ask !== undefined &&
    status.reachable &&
    status.current === ask.system &&
    (record === undefined || !recordSince(record, ask.rollout.startedAt));
  const behind =
    judged &&
    record !== undefined &&
    record.state !== "applying" &&
    record.desired !== null &&
    record.desired !== status.current &&
    !setToBoot &&
    !undone &&
    !asked;
  // Its last deploy failed on the system it runs and did not take it back (a bake failed and
  // the rollback never reached it), where the host keeps no failed marker of its own: failed,
  // as the record reads stored and as an agent's status gives it (delivery/agent.ts).
  const failed =
    judged && status.failed === undefined && !undone && record !== undefined
      ? failedOnIt(record, status.current)
      : undefined;
  const unbaked =
    judged && status.failed === undefined && failed === undefined
      ? unfinishedBake(ask, status.current)
      : undefined;
  const secretsAway =
    status.reachable &&
    typeof record?.secrets === "string" &&
    status.secrets !== undefined &&
    status.secrets !== record.secrets &&
    status.current === record.current;
  return {
    host: host.name,
    mode: host.delivery,
    source: "live",
    // A host that runs a system that failed there, or not the one its last deploy asked for,
    // or a boot nobody judged (docs/reboots.md), is not in step.
    inStep:
      status.reachable &&
      status.failed === undefined &&
      failed === undefined &&
      !status.boot?.pending &&
      drift === undefined &&
      !behind &&
      !secretsAway &&
      behindRollout === undefined &&
      unbaked === undefined,
    ...status,
    ...(failed === undefined ? {} : { failed }),
    ...(drift === undefined ? {} : { drift }),
    // Its record's word on who put the system there holds only while it runs that system.
    ...(origin !== undefined && status.reachable && status.current === record?.current
      ? { origin }
      : {}),
    ...(record?.delta !== undefined && status.reachable && status.current === record.current
      ? { delta: record.delta }
      : {}),
    ...(last === undefined ? {} : { last }),
    ...(behind ? { behind: true as const } : {}),
    ...(secretsAway ? { secretsAway: true as const } : {}),
    ...(behindRollout === undefined ? {} : { behindRollout }),
    ...(undone ? { failureUndone: failureUndoneIn } : {}),
    ...(unbaked === undefined ? {} : { unbaked }),
  };
}

/** What the store says of a host. */
export interface StoredFacts {
  readonly record: StatusRecord | undefined;
  /** Why its record could not be read (then `record` is undefined). */
  readonly unreadable?: string | undefined;
  /** Agent hosts: liveness and whether it is behind the channel. */
  readonly agent?: AgentStanding | undefined;
  /** Agent hosts: the system the channel's current release names for it. */
  readonly channelEntry?: string | undefined;
  /** Who put its system there and from what (host-origins.ts). */
  readonly origin?: ShownOrigin | undefined;
  /** The fleet's last ask of it (status/fleet-asks.ts). */
  readonly ask?: Ask | undefined;
  /** The rollout its record tells it failed in, since undone (behind.ts failureUndone). */
  readonly failureUndone?: string | undefined;
}

/** A host as its status record (and, for an agent host, its channel and heartbeats) shows it. */
export function storedRow(host: FleetHost, facts: StoredFacts): StoredRow {
  const base = { host: host.name, mode: host.delivery, source: "stored" } as const;
  if (facts.unreadable !== undefined) {
    return { ...base, inStep: false, reported: true, unreadable: facts.unreadable };
  }
  const { record, agent, origin } = facts;
  const drift = driftOf({ running: record?.current, record, channelEntry: facts.channelEntry });
  const behindRollout = behindOf(facts.ask, record, record?.current);
  // The record's own word on its origin is a reference; the row shows what it refers to.
  const { origin: _reference, ...fields } = record ?? {};
  const bootsNext = record !== undefined && bootsNextOf(record) !== undefined;
  const { failureUndone } = facts;
  const unbaked =
    record?.state === "success" ? unfinishedBake(facts.ask, record.current) : undefined;
  return {
    ...base,
    inStep:
      // An undone failure excuses the record's failed state, never the agent's standing.
      inStep(record, agent, failureUndone !== undefined) &&
      drift === undefined &&
      behindRollout === undefined &&
      unbaked === undefined &&
      !bootsNext,
    reported: record !== undefined,
    ...fields,
    ...(agent ?? {}),
    ...(drift === undefined ? {} : { drift }),
    ...(behindRollout === undefined ? {} : { behindRollout }),
    ...(origin === undefined ? {} : { origin }),
    ...(failureUndone === undefined ? {} : { failureUndone }),
    ...(unbaked === undefined ? {} : { unbaked }),
  };
}

/** What a row says the host runs: its live answer or its record's `current`. */
export function runningOf(row: StatusRow): string | null {
  if (row.source === "live") return row.reachable ? (row.current ?? null) : null;
  return row.current ?? null;
}

/**
 * What a boot deploy's record says the host boots next, when it is not what it runs (the
 * deploy's success, which the host is not in step with until it boots it); else undefined.
 */
export function bootsNextOf(
  record: Partial<Pick<StatusRecord, "action" | "state" | "desired" | "current">>,
): string | undefined {
  const { action, state, desired, current } = record;
  if (action !== "boot" || state !== "success" || !desired || !current) return undefined;
  return desired === current ? undefined : desired;
}

/**
 * Whether a row's `behindRollout` is the rollout its record tells it failed in (behind.ts
 * toldFailure): its state is then the record's (failed, or rolled back).
 */
export function failedInRollout(row: StatusRow): boolean {
  return row.behindRollout?.failed === true;
}
