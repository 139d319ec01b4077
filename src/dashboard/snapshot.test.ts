// The pure questions the dashboard asks of a snapshot: each host's state in one word, the hosts
// filter, short system names, when a host was last heard of, and counts by state and mode.
import { describe, expect, it } from "vitest";
import { HAND, liveAnswer, sshRecord, V1, V2 } from "../../test/support/status-records.js";
import type { AgentStanding } from "../channel/standing.js";
import type { FleetHost } from "../fleet/fleet.js";
import type { RolloutHost } from "../status/rollout.js";
import type { StatusRecord } from "../status/status.js";
import { withRolloutApplying } from "../views/rollout-applying.js";
import type { RolloutRead } from "../views/rollout-watch.js";
import { liveRow, type StatusRow, storedRow } from "../views/status-rows.js";
import {
  countByStateAndMode,
  filterRows,
  type HostState,
  hostState,
  lastSeen,
  seenAhead,
  shortSystem,
} from "./snapshot.js";

const ssh = (name: string) => ({ name, delivery: "ssh", tags: [] }) as unknown as FleetHost;
const agent = (name: string) => ({ name, delivery: "agent", tags: [] }) as unknown as FleetHost;
const ssm = (name: string) => ({ name, delivery: "ssm", tags: [] }) as unknown as FleetHost;

const record = sshRecord;

const answer = liveAnswer;

const standing = (over: Partial<AgentStanding> = {}): AgentStanding => ({
  liveness: "online",
  heartbeatAt: "2026-11-25T10:01:00.000Z",
  behind: false,
  channelSeq: 4,
  ...over,
});

/** A stored row for `host`, its record (of that host, in its mode) changed by `over`. */
const stored = (host: FleetHost, over: Partial<StatusRecord> = {}, agentOf?: AgentStanding) =>
  storedRow(host, {
    record: record({ host: host.name, mode: host.delivery, ...over }),
    ...(agentOf === undefined ? {} : { agent: agentOf }),
  });

/** An agent host's stored row: its record of release 4 of "prod", and its standing. */
const onChannel = (name: string, over: Partial<StatusRecord> = {}, agentOf = standing()) =>
  stored(agent(name), { channel: "prod", seq: 4, ...over }, agentOf);

/** One row for each state, made as the status view makes them. */
const ROWS: [HostState, StatusRow][] = [
  ["in-step", liveRow(ssh("live-ok"), answer(V2), record({ host: "live-ok" }))],
  ["drifting", liveRow(ssh("live-drift"), answer(HAND), record({ host: "live-drift" }))],
  [
    "failed",
    liveRow(
      ssh("live-failed"),
      answer(V2, { failed: { path: V2, since: null, reason: "health check failed" } }),
      record({ host: "live-failed" }),
    ),
  ],
  ["unreachable", liveRow(ssh("live-down"), { reachable: false, error: "refused" }, undefined)],
  ["in-step", stored(ssh("ok"))],
  // Switched by hand: an agent's record says what runs (a push record only ever what a deploy
  // or rollback left there; its host is judged live).
  ["drifting", onChannel("rebuilt", { current: HAND })],
  ["unreadable", storedRow(ssh("garbled"), { record: undefined, unreadable: "not JSON" })],
  ["unreported", storedRow(ssh("new"), { record: undefined })],
  [
    "failed",
    stored(ssm("broke"), { state: "failed", phase: "switch", error: "x", rolledBack: false }),
  ],
  [
    "failed",
    // A record from before nixship recorded whether the host went back.
    stored(ssh("broke-old"), { state: "failed", phase: "switch", error: "x", rolledBack: null }),
  ],
  [
    "rolled-back",
    stored(ssm("undone"), { state: "failed", phase: "health", error: "x", rolledBack: true }),
  ],
  ["rejected", onChannel("refused", { state: "rejected", phase: "verify", error: "bad key" })],
  ["offline", onChannel("quiet", {}, standing({ liveness: "offline" }))],
  // Paused on the system its channel names: neither offline nor behind.
  ["paused", onChannel("resting", {}, standing({ liveness: "paused" }))],
  ["behind", onChannel("late", {}, standing({ behind: true }))],
  ["applying", onChannel("busy", { state: "applying", phase: "realise", current: V1 })],
  ["in-step", onChannel("steady")],
];

describe("hostState", () => {
  it("the rows name their hosts (the fixtures are what they say)", () => {
    expect(ROWS.map(([, row]) => row.host)).toEqual([
      "live-ok",
      "live-drift",
      "live-failed",
      "live-down",
      "ok",
      "rebuilt",
      "garbled",
      "new",
      "broke",
      "broke-old",
      "undone",
      "refused",
      "quiet",
      "resting",
      "late",
      "busy",
      "steady",
    ]);
  });

  it.each(ROWS.map(([state, row]) => [row.host, state, row] as const))(
    "%s is %s",
    (_host, state, row) => {
      expect(hostState(row)).toBe(state);
    },
  );

  it("names drift before a failure, and a failure before liveness", () => {
    const driftingFailed = onChannel("x", {
      state: "failed",
      current: HAND,
      error: "x",
      rolledBack: false,
    });
    expect(driftingFailed.drift).toEqual({ running: HAND, expected: [V2, V1] });
    expect(hostState(driftingFailed)).toBe("drifting");
    const offlineFailed = onChannel(
      "y",
      { state: "failed", error: "x", rolledBack: false },
      standing({ liveness: "offline", behind: true }),
    );
    expect(hostState(offlineFailed)).toBe("failed");
    const offlineUndone = onChannel(
      "y",
      { state: "failed", error: "x", rolledBack: true },
      standing({ liveness: "offline" }),
    );
    expect(hostState(offlineUndone)).toBe("rolled-back");
    const offlineBehind = onChannel("z", {}, standing({ liveness: "offline", behind: true }));
    expect(hostState(offlineBehind)).toBe("offline");
  });

  it("a host with no record yet that the running rollout applies (its first deploy) is applying", () => {
    const fresh = storedRow(ssh("new"), { record: undefined });
    const host: RolloutHost = {
      host: "new",
      state: "activating",
      phase: "switch",
      system: V1,
      message: null,
    };
    const rollout = (state: "running" | "failed"): RolloutRead => ({
      status: "found",
      key: "k",
      record: {
        version: 1,
        id: "0123456789ab",
        mode: "ssh",
        action: "switch",
        state,
        stopped: null,
        waves: [{ index: 1, kind: "main", hosts: [host] }],
        startedAt: "2026-11-26T07:00:00.000Z",
        updatedAt: "2026-11-26T07:00:01.000Z",
      },
    });
    const [applying] = withRolloutApplying(
      [fresh],
      rollout("running"),
      new Date("2026-11-26T07:00:30.000Z"),
    );
    expect(hostState(applying as StatusRow)).toBe("applying");
    const [ended] = withRolloutApplying([fresh], rollout("failed"));
    expect(hostState(ended as StatusRow)).toBe("unreported");
  });
});

describe("filterRows", () => {
  const rows = [
    stored(ssh("web-1")),
    onChannel("web-2", { current: HAND }),
    onChannel("db-1"),
    onChannel("cache-web", { state: "failed", error: "x", rolledBack: false }),
  ];
  const tags = new Map<string, readonly string[]>([
    ["web-1", ["web", "eu"]],
    ["web-2", ["web"]],
    ["db-1", ["db", "eu"]],
  ]);
  const hosts = (filter: Parameters<typeof filterRows>[1]) =>
    filterRows({ rows, tags }, filter).map((r) => r.host);

  it("keeps every row without a filter, or with empty ones", () => {
    expect(hosts({})).toEqual(["web-1", "web-2", "db-1", "cache-web"]);
    expect(hosts({ tag: "", state: "", query: "  " })).toEqual([
      "web-1",
      "web-2",
      "db-1",
      "cache-web",
    ]);
  });

  it("filters by tag", () => {
    expect(hosts({ tag: "eu" })).toEqual(["web-1", "db-1"]);
    expect(hosts({ tag: "web" })).toEqual(["web-1", "web-2"]);
    // Tags match whole and exactly: a host without tags matches none.
    expect(hosts({ tag: "we" })).toEqual([]);
    expect(hosts({ tag: "WEB" })).toEqual([]);
  });

  it("filters by state", () => {
    expect(hosts({ state: "in-step" })).toEqual(["web-1", "db-1"]);
    expect(hosts({ state: "drifting" })).toEqual(["web-2"]);
    expect(hosts({ state: "failed" })).toEqual(["cache-web"]);
    expect(hosts({ state: "offline" })).toEqual([]);
  });

  it("filters by part of the name, in any case", () => {
    expect(hosts({ query: "WEB" })).toEqual(["web-1", "web-2", "cache-web"]);
    expect(hosts({ query: " Web-2 " })).toEqual(["web-2"]);
    expect(hosts({ query: "-1" })).toEqual(["web-1", "db-1"]);
    expect(hosts({ query: "mail" })).toEqual([]);
  });

  it("combines the filters", () => {
    expect(hosts({ tag: "web", query: "2" })).toEqual(["web-2"]);
    expect(hosts({ tag: "eu", state: "in-step", query: "DB" })).toEqual(["db-1"]);
    expect(hosts({ tag: "web", state: "failed" })).toEqual([]);
  });
});

describe("shortSystem", () => {
  it("gives a store path's name and the first 8 characters of its hash", () => {
    expect(shortSystem(V1)).toEqual({ name: "nixos-system-web1", hash: "11111111" });
    expect(
      shortSystem("/nix/store/6jw91l3wjqa85c5n7z3hsz1c903jifh8-example-web-system-v1"),
    ).toEqual({ name: "example-web-system-v1", hash: "6jw91l3w" });
  });

  it("gives null for no path, and the whole name when there is no hash", () => {
    expect(shortSystem(null)).toBeNull();
    expect(shortSystem(undefined)).toBeNull();
    expect(shortSystem("/nix/store/nohash")).toEqual({ name: "nohash", hash: "" });
  });
});

describe("lastSeen", () => {
  const NOW = new Date("2026-11-25T12:00:00.000Z");

  it("is the newer of the record's time and the agent's heartbeat", () => {
    expect(lastSeen(onChannel("a"), NOW)).toBe("2026-11-25T10:01:00.000Z");
    const recordNewer = onChannel("b", { updatedAt: "2026-11-25T11:00:00.000Z" });
    expect(lastSeen(recordNewer, NOW)).toBe("2026-11-25T11:00:00.000Z");
    const noHeartbeat = onChannel("c", {}, standing({ heartbeatAt: null }));
    expect(lastSeen(noHeartbeat, NOW)).toBe("2026-11-25T10:00:05.000Z");
    expect(lastSeen(stored(ssh("d")), NOW)).toBe("2026-11-25T10:00:05.000Z");
  });

  it("is the heartbeat alone for an agent that never reported", () => {
    const row = storedRow(agent("e"), { record: undefined, agent: standing() });
    expect(lastSeen(row, NOW)).toBe("2026-11-25T10:01:00.000Z");
  });

  it("passes over a time more than 5 minutes ahead of the clock, and names it", () => {
    const ahead = onChannel("i", { updatedAt: "2031-01-01T00:00:00.000Z" });
    expect(lastSeen(ahead, NOW)).toBe("2026-11-25T10:01:00.000Z");
    expect(seenAhead(ahead, NOW)).toBe("2031-01-01T00:00:00.000Z");
    const skewed = onChannel("j", { updatedAt: "2026-11-25T12:04:00.000Z" });
    expect(lastSeen(skewed, NOW)).toBe("2026-11-25T12:04:00.000Z");
    expect(seenAhead(skewed, NOW)).toBeNull();
  });

  it("is null when nothing was heard, and for live rows", () => {
    expect(lastSeen(storedRow(ssh("f"), { record: undefined }), NOW)).toBeNull();
    expect(lastSeen(storedRow(ssh("g"), { record: undefined, unreadable: "x" }), NOW)).toBeNull();
    expect(lastSeen(liveRow(ssh("h"), answer(V2), record({ host: "h" })), NOW)).toBeNull();
  });
});

describe("countByStateAndMode", () => {
  it("counts hosts by state, then by mode", () => {
    const counts = countByStateAndMode(ROWS.map(([, row]) => row));
    const plain = Object.fromEntries(
      [...counts].map(([state, byMode]) => [state, Object.fromEntries(byMode)]),
    );
    expect(plain).toEqual({
      "in-step": { ssh: 2, agent: 1 },
      drifting: { ssh: 1, agent: 1 },
      failed: { ssh: 2, ssm: 1 },
      "rolled-back": { ssm: 1 },
      unreachable: { ssh: 1 },
      unreadable: { ssh: 1 },
      unreported: { ssh: 1 },
      rejected: { agent: 1 },
      offline: { agent: 1 },
      paused: { agent: 1 },
      behind: { agent: 1 },
      applying: { agent: 1 },
    });
  });

  it("is empty for no rows", () => {
    expect(countByStateAndMode([]).size).toBe(0);
  });
});
