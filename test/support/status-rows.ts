// Status rows for unit tests, made as the status view makes them (views/status-rows.ts): hosts
// of each delivery mode, stored rows over a record, agent rows on a channel, and one row for
// each state a host can be in.
import type { AgentStanding } from "../../src/channel/standing.js";
import type { FleetHost } from "../../src/fleet/fleet.js";
import type { StatusRecord } from "../../src/status/status.js";
import type { HostState } from "../../src/views/host-state.js";
import { liveRow, type StatusRow, storedRow } from "../../src/views/status-rows.js";
import { HAND, liveAnswer, sshRecord, V1, V2 } from "./status-records.js";

export const sshHost = (name: string) =>
  ({ name, delivery: "ssh", tags: [] }) as unknown as FleetHost;
export const agentHost = (name: string) =>
  ({ name, delivery: "agent", tags: [] }) as unknown as FleetHost;
export const ssmHost = (name: string) =>
  ({ name, delivery: "ssm", tags: [] }) as unknown as FleetHost;

/** An agent's standing: online, heard at 10:01, on the channel's release 4; `over` on top. */
export const standing = (over: Partial<AgentStanding> = {}): AgentStanding => ({
  liveness: "online",
  heartbeatAt: "2026-11-25T10:01:00.000Z",
  behind: false,
  channelSeq: 4,
  ...over,
});

/** A stored row for `host`, its record (of that host, in its mode) changed by `over`. */
export const storedOver = (
  host: FleetHost,
  over: Partial<StatusRecord> = {},
  agentOf?: AgentStanding,
) =>
  storedRow(host, {
    record: sshRecord({ host: host.name, mode: host.delivery, ...over }),
    ...(agentOf === undefined ? {} : { agent: agentOf }),
  });

/** An agent host's stored row: its record of release 4 of "prod", and its standing. */
export const onChannel = (name: string, over: Partial<StatusRecord> = {}, agentOf = standing()) =>
  storedOver(agentHost(name), { channel: "prod", seq: 4, ...over }, agentOf);

/** One row for each state but `unconfirmed`, made as the status view makes them. */
export const ROWS_BY_STATE: [HostState, StatusRow][] = [
  ["in-step", liveRow(sshHost("live-ok"), liveAnswer(V2), sshRecord({ host: "live-ok" }))],
  ["drifting", liveRow(sshHost("live-drift"), liveAnswer(HAND), sshRecord({ host: "live-drift" }))],
  [
    "failed",
    liveRow(
      sshHost("live-failed"),
      liveAnswer(V2, { failed: { path: V2, since: null, reason: "health check failed" } }),
      sshRecord({ host: "live-failed" }),
    ),
  ],
  ["unreachable", liveRow(sshHost("live-down"), { reachable: false, error: "refused" }, undefined)],
  ["in-step", storedOver(sshHost("ok"))],
  // Switched by hand: an agent's record says what runs (a push record only ever what a deploy
  // or rollback left there; its host is judged live).
  ["drifting", onChannel("rebuilt", { current: HAND })],
  ["unreadable", storedRow(sshHost("garbled"), { record: undefined, unreadable: "not JSON" })],
  ["unreported", storedRow(sshHost("new"), { record: undefined })],
  [
    "failed",
    storedOver(ssmHost("broke"), {
      state: "failed",
      phase: "switch",
      error: "x",
      rolledBack: false,
    }),
  ],
  [
    "failed",
    // A record from before nixship recorded whether the host went back.
    storedOver(sshHost("broke-old"), {
      state: "failed",
      phase: "switch",
      error: "x",
      rolledBack: null,
    }),
  ],
  [
    "rolled-back",
    storedOver(ssmHost("undone"), {
      state: "failed",
      phase: "health",
      error: "x",
      rolledBack: true,
    }),
  ],
  ["rejected", onChannel("refused", { state: "rejected", phase: "verify", error: "bad key" })],
  ["offline", onChannel("quiet", {}, standing({ liveness: "offline" }))],
  // Paused on the system its channel names: neither offline nor behind.
  ["paused", onChannel("resting", {}, standing({ liveness: "paused" }))],
  ["behind", onChannel("late", {}, standing({ behind: true }))],
  ["applying", onChannel("busy", { state: "applying", phase: "realise", current: V1 })],
  ["in-step", onChannel("steady")],
];
