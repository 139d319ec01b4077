// Where a host stands against its channel, from what the store holds: its status record, its
// agent's newest heartbeat, and the channel's current release. Pure; the status view reads the
// store (views/status-view.ts) and asks this.
import { HEARTBEAT_AHEAD, type Heartbeat, type Liveness, livenessOf } from "../status/heartbeat.js";
import type { StatusRecord } from "../status/status.js";

/** The channel's current release, as far as standing needs it. */
export interface ChannelHead {
  readonly seq: number;
  /** When it expires (ISO 8601): past it, an agent that starts afresh refuses it. */
  readonly expires?: string;
  /** The hosts it names. */
  readonly hosts: ReadonlySet<string>;
  /**
   * It is a dry run (`--action dry-activate`): it asks nothing of the hosts it names, whose
   * agents report on it on its markers alone (agent/agent-records.ts dryRun).
   */
  readonly dryRun?: true;
}

export interface AgentStanding {
  readonly liveness: Liveness;
  /** When its agent last wrote a heartbeat (null: never). */
  readonly heartbeatAt: string | null;
  /**
   * Seconds that heartbeat is dated ahead of this machine's clock, past what clocks may differ:
   * a clock is wrong, and the agent reads as offline.
   */
  readonly heartbeatAhead?: number;
  /**
   * The channel's current release names the host, and its last report is of an older one. A
   * dry run asks nothing: no host is behind it (nor, while it is the channel's, is one told
   * behind the release before it, which is not read).
   */
  readonly behind: boolean;
  /** The channel's current release (null: no release, or none that verifies). */
  readonly channelSeq: number | null;
}

export function agentStanding(
  host: string,
  record: StatusRecord | undefined,
  heartbeat: Heartbeat | undefined,
  channel: ChannelHead | undefined,
  now: Date,
): AgentStanding {
  const behind =
    channel !== undefined &&
    channel.dryRun !== true &&
    channel.hosts.has(host) &&
    (record?.seq ?? 0) < channel.seq;
  const ahead = heartbeat === undefined ? 0 : (heartbeat.at.getTime() - now.getTime()) / 1000;
  return {
    liveness: livenessOf(heartbeat, now),
    heartbeatAt: heartbeat?.at.toISOString() ?? null,
    ...(ahead > HEARTBEAT_AHEAD ? { heartbeatAhead: Math.round(ahead) } : {}),
    behind,
    channelSeq: channel?.seq ?? null,
  };
}

/**
 * Whether a host read from the store is in step: it reported success (or is applying), and for
 * an agent host, its agent is online and not behind the channel.
 */
export function inStep(
  record: StatusRecord | undefined,
  agent: AgentStanding | undefined,
  /** A failure the record tells that a rollback has since undone (behind.ts failureUndone). */
  failureUndone = false,
) {
  if (record === undefined) return false;
  const settled = record.state === "success" || record.state === "applying";
  if (!settled && !(failureUndone && record.state === "failed")) return false;
  return agent === undefined || (agent.liveness === "online" && !agent.behind);
}
