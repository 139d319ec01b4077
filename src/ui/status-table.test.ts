import { describe, expect, it } from "vitest";
import type { StatusRecord } from "../status/status.js";
import { hostState } from "../views/host-state.js";
import { liveRow } from "../views/status-rows.js";
import { formatStatusTable, type StoredRow, storedNote } from "./status-table.js";

const A = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-web-v1";
const B = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-web-v2";
const record: StatusRecord = {
  version: 1,
  host: "ag1",
  mode: "agent",
  channel: "prod",
  seq: 2,
  desired: A,
  current: A,
  generation: 3,
  state: "success",
  phase: null,
  error: null,
  rolledBack: null,
  startedAt: "2025-01-01T12:00:00.000Z",
  updatedAt: "2025-01-01T12:00:05.000Z",
};
const row = (over: Partial<StoredRow> = {}): StoredRow => ({
  ...(record as Omit<StatusRecord, "origin">),
  source: "stored",
  inStep: true,
  reported: true,
  liveness: "online",
  heartbeatAt: "2025-01-01T12:01:00.000Z",
  behind: false,
  channelSeq: 2,
  ...over,
});

describe("the status table", () => {
  it("a success: the release and when, with no empty part", () => {
    expect(hostState(row())).toBe("in-step");
    expect(storedNote(row())).toBe("release 2; reported 2025-01-01T12:00:05.000Z");
  });

  it("a failure: its reason and whether it rolled back, once", () => {
    const failed = row({ state: "failed", error: "health check failed", rolledBack: true });
    expect(storedNote(failed)).toBe(
      "release 2; health check failed; rolled back; reported 2025-01-01T12:00:05.000Z",
    );
    expect(storedNote({ ...failed, rolledBack: false })).toContain("; not rolled back;");
    expect(storedNote({ ...failed, rolledBack: null })).toBe(
      "release 2; health check failed; reported 2025-01-01T12:00:05.000Z",
    );
  });

  it("offline, paused and behind come before a success", () => {
    const offline = row({ liveness: "offline" });
    expect(hostState(offline)).toBe("offline");
    expect(storedNote(offline)).toBe(
      "release 2; last heartbeat 2025-01-01T12:01:00.000Z; reported 2025-01-01T12:00:05.000Z",
    );
    expect(storedNote(row({ liveness: "offline", heartbeatAt: null }))).toContain("no heartbeat");
    // One dated ahead of this machine's clock says which clocks to look at.
    expect(storedNote(row({ liveness: "offline", heartbeatAhead: 360 }))).toContain(
      "last heartbeat 2025-01-01T12:01:00.000Z, 360s ahead of this machine's clock: a clock is wrong (this machine's, the host's or the store's: check their time sync)",
    );
    expect(hostState(row({ liveness: "paused", behind: true }))).toBe("paused");
    const behind = row({ behind: true, channelSeq: 5 });
    expect(hostState(behind)).toBe("behind");
    expect(storedNote(behind)).toMatch(/^release 2, channel at 5; /);
  });

  it("lines up live and stored rows, applying and never-reported hosts", () => {
    const text = formatStatusTable([
      {
        host: "web1",
        mode: "ssh",
        source: "live",
        inStep: true,
        reachable: true,
        current: A,
        profile: B,
        generation: 4,
        generations: [],
        pending: undefined,
      },
      {
        host: "web2",
        mode: "ssh",
        source: "live",
        inStep: false,
        reachable: false,
        error: "refused",
      },
      row({ state: "applying", desired: B }),
      { host: "ag2", mode: "agent", source: "stored", inStep: false, reported: false },
    ]);
    expect(text.split("\n")).toEqual([
      "HOST  MODE   CURRENT  GEN  STATE        NOTE",
      "web1  ssh    web-v1   4    in-step      boots next: web-v2",
      "web2  ssh    -        -    unreachable  refused",
      "ag1   agent  web-v1   3    applying     release 2; applying web-v2 since 2025-01-01T12:00:00.000Z; reported 2025-01-01T12:00:05.000Z",
      "ag2   agent  -        -    unreported   never reported",
      "",
    ]);
    // A host whose key ssh refused: what it means, and the fix.
    const refused = formatStatusTable([
      {
        host: "web3",
        mode: "ssh",
        source: "live",
        inStep: false,
        reachable: false,
        error: "ssh: Host key verification failed.",
        hostKey: true,
      },
    ]);
    expect(refused).toContain(
      "unreachable  ssh: Host key verification failed: the host's key is not the one known for it (it may be another machine",
    );
  });

  it("a drifting host: STATE drifting, and what it runs against what nixship left on it", () => {
    const V1 = "/nix/store/11111111111111111111111111111111-nixos-system-web1";
    const V2 = "/nix/store/22222222222222222222222222222222-nixos-system-web1";
    const HAND = "/nix/store/99999999999999999999999999999999-nixos-system-web1";
    const text = formatStatusTable([
      {
        host: "web1",
        mode: "ssh",
        source: "live",
        inStep: false,
        reachable: true,
        current: HAND,
        profile: HAND,
        generation: 8,
        generations: [],
        pending: undefined,
        drift: { running: HAND, expected: [V2, V1] },
      },
      row({ current: A, drift: { running: A, expected: [B] } }),
      row({ current: A, liveness: "offline", drift: { running: A, expected: [B] } }),
    ]);
    expect(text.split("\n")).toEqual([
      "HOST  MODE   CURRENT            GEN  STATE     NOTE",
      "web1  ssh    nixos-system-web1  8    drifting  runs 99999999-nixos-system-web1, not what nixship left on it (22222222-nixos-system-web1 or 11111111-nixos-system-web1)",
      "ag1   agent  web-v1             3    drifting  runs web-v1, not what nixship left on it (web-v2); release 2; reported 2025-01-01T12:00:05.000Z",
      // Drift comes first, also before its agent's liveness (views/host-state.ts).
      "ag1   agent  web-v1             3    drifting  runs web-v1, not what nixship left on it (web-v2); release 2; last heartbeat 2025-01-01T12:01:00.000Z; reported 2025-01-01T12:00:05.000Z",
      "",
    ]);
  });
});

describe("the status table of ssh hosts", () => {
  const host = { name: "web1", delivery: "ssh" as const, tags: [], address: "192.0.2.1" };
  // Two systems of one name, as NixOS toplevels often are.
  const NEW = "/nix/store/cccccccccccccccccccccccccccccccc-web-v1";
  const answered = {
    reachable: true as const,
    current: A,
    profile: A,
    generation: 3,
    generations: [],
    pending: undefined,
  };
  const sshRecord: StatusRecord = { ...record, mode: "ssh", channel: null, seq: null };
  /** Its last deploy failed in health, and it went back. */
  const failed = {
    ...sshRecord,
    desired: NEW,
    state: "failed" as const,
    phase: "health" as const,
    error: "GET /health answered 500",
    rolledBack: true,
  };

  it("a host whose last deploy failed and went back: what it wants, why, not in step", () => {
    const r = liveRow(host as never, answered, failed);
    expect(r).toMatchObject({ inStep: false, behind: true, last: { wants: NEW, state: "failed" } });
    const line = formatStatusTable([r]).split("\n")[1] as string;
    expect(line).toContain("rolled-back");
    expect(line).toContain(
      "wants cccccccc-web-v1: its last deploy failed in health, and it went back (GET /health answered 500)",
    );
  });

  it("a failure its record tells names the rollout it failed in, once, live and stored", () => {
    const behind = {
      wants: NEW,
      rollout: "0123456789ab",
      at: "x",
      why: "rolled back: 500",
      failed: true as const,
    };
    const live = { ...liveRow(host as never, answered, failed), behindRollout: behind };
    const line = formatStatusTable([live]).split("\n")[1] as string;
    expect(line).toContain(
      "wants cccccccc-web-v1: its last deploy, rollout 0123456789ab, failed in health, and it went back (GET /health answered 500)",
    );
    expect(line).not.toContain("behind rollout");
    const { origin: _origin, ...fields } = failed;
    const stored = row({ ...fields, behindRollout: behind, inStep: false });
    // It went back: both views say rolled-back (views/host-state.ts).
    expect(hostState(stored)).toBe("rolled-back");
    expect(line).toMatch(/ rolled-back {2}wants /);
    expect(storedNote(stored)).toBe(
      "failed in rollout 0123456789ab; GET /health answered 500; rolled back; reported 2025-01-01T12:00:05.000Z",
    );
    // An older failure on the same system is not that rollout's (behind.ts): the host is
    // behind the rollout, which never started it.
    const { failed: _told, ...notTold } = { ...behind, why: "not started: the canary failed" };
    const older = row({ ...fields, behindRollout: notTold, inStep: false });
    expect(hostState(older)).toBe("behind");
    expect(storedNote(older)).toContain(
      "behind rollout 0123456789ab (not started: the canary failed)",
    );
  });

  it("a host that runs what its last deploy asked: in step, and no note of it", () => {
    const r = liveRow(host as never, answered, sshRecord);
    expect(r).toMatchObject({ inStep: true, last: { wants: A, state: "success" } });
    expect(r).not.toHaveProperty("behind");
    expect(formatStatusTable([r]).split("\n")[1]).toMatch(/ in-step\s*$/);
  });

  it("who put the host's system there and from what: live and stored, and what cannot be told", () => {
    const origin = {
      kind: "rollout" as const,
      ref: "0123456789ab",
      by: "alice@deploybox",
      sources: [{ flake: "/srv/fleet", rev: "e".repeat(40), dirty: false }],
      problem: null,
    };
    const live = liveRow(host as never, answered, sshRecord, origin);
    expect(formatStatusTable([live]).split("\n")[1]).toMatch(
      / in-step\s+deployed \(rollout 0123456789ab\) by alice@deploybox from \/srv\/fleet at eeeeeeeeeeee$/,
    );
    // A host that runs another system than its record says: the record's word does not hold.
    expect(
      liveRow(host as never, { ...answered, current: NEW }, sshRecord, origin),
    ).not.toHaveProperty("origin");
    const unknown = { ...origin, by: null, sources: [], problem: "its rollout record is gone" };
    expect(storedNote(row({ origin: unknown }))).toBe(
      "release 2; reported 2025-01-01T12:00:05.000Z; deployed (rollout 0123456789ab), by whom unknown: its rollout record is gone",
    );
  });
});
