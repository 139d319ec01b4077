import { describe, expect, it } from "vitest";
import {
  agentNotLive,
  heartbeatKey,
  heartbeatPeriod,
  heartbeatPolls,
  livenessOf,
  MAX_HEARTBEAT_PERIOD,
  parseHeartbeatKey,
  summariseHeartbeats,
} from "./heartbeat.js";

const at = (s: number) => new Date(Date.UTC(2025, 0, 1, 12, 0, s));

describe("heartbeat keys", () => {
  it("round-trip, and refuse what is not one", () => {
    expect(heartbeatKey("web1", "paused", 330)).toBe("status/heartbeats/web1/paused/330");
    expect(parseHeartbeatKey("status/heartbeats/web1/paused/330")).toEqual({
      host: "web1",
      state: "paused",
      every: 330,
    });
    for (const bad of [
      "status/heartbeats/web1/paused",
      "status/heartbeats/web1/asleep/30",
      "status/heartbeats/Web_1/running/30",
      "status/heartbeats/web1/running/0",
      "status/heartbeats/web1/running/30/x",
      "status/hosts/web1.json",
    ]) {
      expect(parseHeartbeatKey(bad), bad).toBeUndefined();
    }
  });

  it("period: heartbeatEvery polls at their longest wait", () => {
    expect(heartbeatPeriod(30, 0.1, 10)).toBe(330);
    expect(heartbeatPeriod(2, 0, 2)).toBe(4);
  });

  it("period: never past two days, however long the polls (at least one poll)", () => {
    // A poll a day with 10 % jitter: one beat a poll, not one in 1,000.
    expect(heartbeatPolls(86_400, 0.1, 1000)).toBe(1);
    expect(heartbeatPeriod(86_400, 0.1, 1000)).toBe(95_040);
    // A poll an hour: 48 polls make two days at most.
    expect(heartbeatPolls(3600, 0, 1000)).toBe(48);
    expect(heartbeatPeriod(3600, 0, 1000)).toBe(MAX_HEARTBEAT_PERIOD);
    // The longest poll the config allows is one period.
    expect(heartbeatPeriod(86_400, 1, 1000)).toBe(MAX_HEARTBEAT_PERIOD);
  });

  it("a heartbeat dated more than 5 minutes ahead of the reader is no heartbeat (a directory store's times are its files')", () => {
    const beat = { host: "a", state: "running", every: 10, at: at(0) } as const;
    expect(livenessOf(beat, at(-300))).toBe("online");
    expect(livenessOf(beat, at(-301))).toBe("offline");
    expect(agentNotLive("a", beat, at(-400))).toBe(
      "a's agent is offline: its last heartbeat is dated 400s ahead of this machine's clock: a clock is wrong (this machine's, the host's or the store's: check their time sync)",
    );
  });

  it("a key claiming a longer period is read as claiming two days: one forged key cannot keep a dead agent online for years", () => {
    const claimed = heartbeatKey("a", "running", 999_999_999);
    expect(parseHeartbeatKey(claimed)?.every).toBe(MAX_HEARTBEAT_PERIOD);
    const [beat] = summariseHeartbeats([{ key: claimed, lastModified: at(0) }]).values();
    expect(livenessOf(beat, at(2 * MAX_HEARTBEAT_PERIOD))).toBe("online");
    expect(livenessOf(beat, at(2 * MAX_HEARTBEAT_PERIOD + 1))).toBe("offline");
  });

  it("a host's newest key wins, whichever state it names", () => {
    const hosts = summariseHeartbeats([
      { key: heartbeatKey("a", "paused", 10), lastModified: at(5) },
      { key: heartbeatKey("a", "running", 10), lastModified: at(9) },
      { key: heartbeatKey("b", "running", 10), lastModified: at(1) },
      { key: heartbeatKey("b", "paused", 10), lastModified: at(3) },
      { key: "status/heartbeats/junk", lastModified: at(20) },
    ]);
    expect([...hosts.keys()].sort()).toEqual(["a", "b"]);
    expect(hosts.get("a")).toMatchObject({ state: "running", at: at(9) });
    expect(hosts.get("b")).toMatchObject({ state: "paused", at: at(3) });
  });
});

describe("liveness", () => {
  const beat = { host: "a", state: "running", every: 10, at: at(0) } as const;

  it("online up to 2 periods after the heartbeat, offline after, or without one", () => {
    expect(livenessOf(beat, at(20))).toBe("online");
    expect(livenessOf(beat, at(21))).toBe("offline");
    expect(livenessOf(undefined, at(0))).toBe("offline");
    expect(livenessOf({ ...beat, state: "paused" }, at(5))).toBe("paused");
    // A paused agent that died is offline.
    expect(livenessOf({ ...beat, state: "paused" }, at(30))).toBe("offline");
  });
});
