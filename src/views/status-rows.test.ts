import { describe, expect, it } from "vitest";
import { HAND, liveAnswer, sshRecord, V1, V2 } from "../../test/support/status-records.js";
import type { FleetHost } from "../fleet/fleet.js";
import type { HostStatus } from "../host/script-outcomes.js";
import { liveRow, storedRow } from "./status-rows.js";

const ssh = { name: "web1", delivery: "ssh" } as FleetHost;
const agent = { name: "ag1", delivery: "agent" } as FleetHost;

const record = sshRecord;

const answer = (current: string): HostStatus => liveAnswer(current);

const online = { liveness: "online", heartbeatAt: null, behind: false, channelSeq: 4 } as const;

describe("status rows", () => {
  it("a live ssh host is judged against its record: drifting is not in step", () => {
    const same = liveRow(ssh, answer(V2), record());
    expect(same).toMatchObject({ inStep: true });
    expect(same).not.toHaveProperty("drift");
    const drifted = liveRow(ssh, answer(HAND), record());
    expect(drifted).toMatchObject({ inStep: false, drift: { running: HAND, expected: [V2, V1] } });
    // Without a record there is nothing to judge by: in step, as before.
    expect(liveRow(ssh, answer(HAND), undefined).inStep).toBe(true);
    const unreachable = liveRow(ssh, { reachable: false, error: "refused" }, record());
    expect(unreachable).not.toHaveProperty("drift");
  });

  it("a live host a rollout still has in flight, that went back with nothing under way, is behind it", () => {
    // The record (V2, from an earlier deploy) predates the rollout, which gave it V1 and still
    // says it awaits its checks: its deployer was killed, and the host's window closed.
    const ask = (state: "health" | "activating", phase: "switch" | "copy" | null) => ({
      rollout: { id: "r1", key: "k", startedAt: "2026-11-26T00:00:00.000Z" },
      system: V1,
      entry: { host: "web1", state, phase, system: V1, message: null },
    });
    const row = liveRow(ssh, answer(V2), record(), undefined, ask("health", null));
    expect(row).toMatchObject({
      inStep: false,
      behindRollout: {
        rollout: "r1",
        why: "its activation there ended in health and the host went back, while the rollout's record still has it in flight: its deploy is gone, or has not written yet",
      },
    });
    expect(
      liveRow(ssh, answer(V2), record(), undefined, ask("activating", "switch")),
    ).toMatchObject({ inStep: false });
    // Before its script starts there (a copy), nothing says its deploy is not at it.
    expect(liveRow(ssh, answer(V2), record(), undefined, ask("activating", "copy")).inStep).toBe(
      true,
    );
    // With its confirmation awaited, it is mid-deploy: applying, not behind.
    const live = answer(V2);
    if (!live.reachable) throw new Error("unreachable");
    const waiting = liveRow(
      ssh,
      { ...live, pending: "t1" },
      record(),
      undefined,
      ask("health", null),
    );
    expect(waiting).not.toHaveProperty("behindRollout");
    // Once it runs the rollout's system, it got it.
    expect(
      liveRow(
        ssh,
        answer(V1),
        record({ current: V1, desired: V1 }),
        undefined,
        ask("health", null),
      ),
    ).not.toHaveProperty("behindRollout");
  });

  it("a live host that runs what the fleet's last rollout asked, its record older, is not behind its record's wish", () => {
    // The rollout (killed before the host's wave) asked HAND of it; it runs HAND (activated by
    // hand since, or by the killed deploy before it wrote the record): in step with the ask.
    const ask = {
      rollout: { id: "r1", key: "k", startedAt: "2026-11-26T00:00:00.000Z" },
      system: HAND,
      entry: {
        host: "web1",
        state: "not-started" as const,
        phase: null,
        system: HAND,
        message: null,
      },
    };
    const row = liveRow(ssh, answer(HAND), record(), undefined, ask);
    expect(row).toMatchObject({ inStep: true });
    expect(row).not.toHaveProperty("behind");
    expect(row).not.toHaveProperty("drift");
    // A record written since the rollout is the newer word: its wish stands.
    const newer = record({ startedAt: "2026-11-26T01:00:00.000Z", desired: V1 });
    expect(liveRow(ssh, answer(HAND), newer, undefined, ask)).toMatchObject({ inStep: false });
  });

  it("a live host with a boot nobody judged is not in step", () => {
    const live = answer(V2);
    if (!live.reachable) throw new Error("unreachable");
    const pending = { token: "t1", path: V2, since: 1700 };
    const row = liveRow(ssh, { ...live, boot: { id: "b", assessment: null, pending } }, record());
    expect(row.inStep).toBe(false);
    expect(
      liveRow(ssh, { ...live, boot: { id: "b", assessment: null, pending: null } }, record()),
    ).toMatchObject({ inStep: true });
  });

  it("a stored host is judged by its record and, for an agent, its channel's entry", () => {
    expect(storedRow(ssh, { record: record() })).toMatchObject({ inStep: true, reported: true });
    // An agent's record says what runs after a switch by hand (a push record's current is only
    // ever what a deploy or rollback left: it is judged live).
    const rebuilt = storedRow(agent, {
      record: record({ host: "ag1", mode: "agent", channel: "prod", seq: 3, current: HAND }),
      agent: online,
    });
    expect(rebuilt).toMatchObject({ inStep: false, drift: { running: HAND } });
    const behind = record({ host: "ag1", mode: "agent", channel: "prod", seq: 3 });
    const ahead = { ...online, behind: true };
    expect(storedRow(agent, { record: behind, agent: ahead, channelEntry: HAND })).toMatchObject({
      inStep: false,
      behind: true,
    });
    expect(
      storedRow(agent, { record: behind, agent: ahead, channelEntry: HAND }),
    ).not.toHaveProperty("drift");
    expect(storedRow(agent, { record: behind, agent: online })).toMatchObject({ inStep: true });
    expect(storedRow(ssh, { record: undefined, unreadable: "not JSON" })).toEqual({
      host: "web1",
      mode: "ssh",
      source: "stored",
      inStep: false,
      reported: true,
      unreadable: "not JSON",
    });
  });
});
