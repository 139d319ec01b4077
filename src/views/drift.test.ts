import { describe, expect, it } from "vitest";
import { HAND, sshRecord, V1, V2 } from "../../test/support/status-records.js";
import type { StatusRecord } from "../status/status.js";
import { driftOf, expectedSystems } from "./drift.js";

const V3 = "/nix/store/33333333333333333333333333333333-nixos-system-web1";

const record = (over: Partial<StatusRecord> = {}): StatusRecord =>
  sshRecord({ mode: "agent", channel: "prod", seq: 4, ...over });

describe("drift", () => {
  it("a host that runs what its deploy or release gave it, or the system before it, does not drift", () => {
    expect(driftOf({ running: V2, record: record() })).toBeUndefined();
    // A boot or test deploy leaves the one before running; one step back is a rollback.
    expect(driftOf({ running: V1, record: record() })).toBeUndefined();
    // A deploy record without `previous` (written before nixship kept it): the desired only.
    const old = record({ previous: undefined });
    expect(driftOf({ running: V2, record: old })).toBeUndefined();
    expect(driftOf({ running: V1, record: old })).toEqual({ running: V1, expected: [V2] });
  });

  it("a host that runs anything else drifts (someone ran nixos-rebuild there)", () => {
    expect(driftOf({ running: HAND, record: record() })).toEqual({
      running: HAND,
      expected: [V2, V1],
    });
    // The record's own current says so for a stored host (an agent that rebooted into it).
    const rebooted = record({ current: HAND });
    expect(driftOf({ running: rebooted.current, record: rebooted })?.running).toBe(HAND);
  });

  it("the channel's entry counts: a host behind its channel is behind, not drifting", () => {
    expect(driftOf({ running: V3, record: record(), channelEntry: V3 })).toBeUndefined();
    expect(driftOf({ running: HAND, record: record(), channelEntry: V3 })).toEqual({
      running: HAND,
      expected: [V2, V1, V3],
    });
    // Each system once.
    expect(expectedSystems(record(), V2)).toEqual([V2, V1]);
  });

  it("the system the fleet's last rollout asked of it counts: its record may not say so yet", () => {
    // A deploy interrupted (its host left settling) or killed before it wrote the record.
    const push = sshRecord();
    const later = new Date(Date.parse(push.startedAt) + 60_000).toISOString();
    const asked = { system: V3, startedAt: later };
    expect(driftOf({ running: V3, record: push, asked })).toBeUndefined();
    expect(driftOf({ running: HAND, record: push, asked })).toEqual({
      running: HAND,
      expected: [V2, V1],
    });
    // A record written since that rollout (a rollback by hand) is the newer word.
    const earlier = { system: V3, startedAt: "2000-01-01T00:00:00.000Z" };
    expect(driftOf({ running: V3, record: push, asked: earlier })).toEqual({
      running: V3,
      expected: [V2, V1],
    });
  });

  it("a failed host may run the failed system or the one it went back to", () => {
    const failed = record({
      state: "failed",
      desired: V3,
      current: V2,
      previous: V2,
      rolledBack: true,
    });
    expect(driftOf({ running: V2, record: failed })).toBeUndefined();
    expect(driftOf({ running: V3, record: failed })).toBeUndefined();
    expect(driftOf({ running: HAND, record: failed })).toEqual({
      running: HAND,
      expected: [V3, V2],
    });
    // A failed push deploy that did not say what the host ran before: not judged.
    const unsaid = record({ state: "failed", desired: V3, current: null, previous: undefined });
    expect(driftOf({ running: HAND, record: unsaid })).toBeUndefined();
    // Rolled back, a push record names what it runs again (the fold carries the older system
    // as previous): that is no drift.
    const folded = sshRecord({
      state: "failed",
      desired: V3,
      current: V2,
      previous: V1,
      rolledBack: true,
    });
    expect(driftOf({ running: V2, record: folded })).toBeUndefined();
    expect(driftOf({ running: HAND, record: folded })).toEqual({
      running: HAND,
      expected: [V3, V2, V1],
    });
  });

  it("is not judged while applying, after a refusal, or without a record or a running system", () => {
    for (const state of ["applying", "rejected"] as const) {
      expect(
        driftOf({ running: HAND, record: record({ state }), channelEntry: V3 }),
      ).toBeUndefined();
    }
    expect(driftOf({ running: HAND, record: record({ desired: null }) })).toBeUndefined();
    expect(driftOf({ running: HAND, record: undefined, channelEntry: V3 })).toBeUndefined();
    expect(driftOf({ running: null, record: record() })).toBeUndefined();
    expect(driftOf({ running: undefined, record: record() })).toBeUndefined();
  });
});
