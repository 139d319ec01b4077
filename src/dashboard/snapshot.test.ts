// The pure questions the dashboard asks of a snapshot: the hosts filter, short system names,
// when a host was last heard of, and counts by state and mode (each host's state in one word is
// views/host-state.ts's).
import { describe, expect, it } from "vitest";
import { HAND, liveAnswer, sshRecord, V1, V2 } from "../../test/support/status-records.js";
import {
  agentHost as agent,
  onChannel,
  ROWS_BY_STATE as ROWS,
  sshHost as ssh,
  standing,
  storedOver as stored,
} from "../../test/support/status-rows.js";
import { liveRow, storedRow } from "../views/status-rows.js";
import { countByStateAndMode, filterRows, lastSeen, seenAhead, shortSystem } from "./snapshot.js";

const record = sshRecord;

const answer = liveAnswer;

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
