import { describe, expect, it } from "vitest";
import type { StatusRecord } from "../status/status.js";
import { agentStanding, inStep } from "./standing.js";

const at = (s: number) => new Date(Date.UTC(2025, 0, 1, 12, 0, s));

describe("agentStanding and inStep", () => {
  const record = (seq: number, state: StatusRecord["state"] = "success"): StatusRecord => ({
    version: 1,
    host: "a",
    mode: "agent",
    channel: "prod",
    seq,
    desired: null,
    current: null,
    generation: 1,
    state,
    phase: null,
    error: null,
    rolledBack: null,
    startedAt: at(0).toISOString(),
    updatedAt: at(0).toISOString(),
  });
  const beat = { host: "a", state: "running", every: 10, at: at(0) } as const;
  const channel = { seq: 5, hosts: new Set(["a"]) };

  it("is behind when the channel names the host and its last report is older", () => {
    const s = agentStanding("a", record(4), beat, channel, at(1));
    expect(s).toEqual({
      liveness: "online",
      heartbeatAt: at(0).toISOString(),
      behind: true,
      channelSeq: 5,
    });
    expect(inStep(record(4), s)).toBe(false);
    const current = agentStanding("a", record(5), beat, channel, at(1));
    expect(current.behind).toBe(false);
    expect(inStep(record(5), current)).toBe(true);
    // A release that does not name the host does not make it behind.
    expect(agentStanding("a", record(4), beat, { seq: 5, hosts: new Set() }, at(1)).behind).toBe(
      false,
    );
    expect(agentStanding("a", undefined, beat, undefined, at(1))).toMatchObject({
      behind: false,
      channelSeq: null,
    });
  });

  it("is not behind a dry run: it asks nothing, and its agents report on its markers alone", () => {
    const dry = { ...channel, dryRun: true as const };
    const s = agentStanding("a", record(4), beat, dry, at(1));
    expect(s).toMatchObject({ behind: false, channelSeq: 5 });
    expect(inStep(record(4), s)).toBe(true);
  });

  it("says how far ahead of this machine's clock a heartbeat is, past what clocks may differ", () => {
    const ahead = agentStanding("a", record(5), { ...beat, at: at(400) }, channel, at(0));
    expect(ahead).toMatchObject({ liveness: "offline", heartbeatAhead: 400 });
    const close = agentStanding("a", record(5), { ...beat, at: at(30) }, channel, at(0));
    expect(close).not.toHaveProperty("heartbeatAhead");
  });

  it("is not in step when offline, paused, failed, or never reported", () => {
    const offline = agentStanding("a", record(5), beat, channel, at(60));
    expect(offline.liveness).toBe("offline");
    expect(inStep(record(5), offline)).toBe(false);
    const paused = agentStanding("a", record(5), { ...beat, state: "paused" }, channel, at(1));
    expect(inStep(record(5), paused)).toBe(false);
    const online = agentStanding("a", record(5), beat, channel, at(1));
    expect(inStep(record(5, "failed"), online)).toBe(false);
    expect(inStep(record(5, "applying"), online)).toBe(true);
    expect(inStep(undefined, online)).toBe(false);
    // Not an agent host: its record alone.
    expect(inStep(record(1), undefined)).toBe(true);
  });
});
