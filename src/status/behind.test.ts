// The fleet's last ask of each host, and whether a host is behind it.
import { describe, expect, it } from "vitest";
import type { DeliveryMode } from "../fleet/fleet.js";
import { behindOf, behindText, failureUndone } from "./behind.js";
import { lastAsks, undoneFailures } from "./fleet-asks.js";
import type { RolloutHost, RolloutRecord } from "./rollout.js";

const V2 = "/nix/store/22222222222222222222222222222222-web-v2";
const V3 = "/nix/store/33333333333333333333333333333333-web-v3";

function record(
  id: string,
  startedAt: string,
  hosts: [string, RolloutHost["state"], string | null][],
): { key: string; record: RolloutRecord } {
  return {
    key: `status/rollouts/0000000000000-${id}.json`,
    record: {
      version: 1,
      id,
      mode: "ssh",
      action: "switch",
      state: "partial",
      stopped: null,
      waves: [
        {
          index: 1,
          kind: "main",
          hosts: hosts.map(([host, state, system]) => ({
            host,
            state,
            phase: null,
            system,
            message: state === "unreachable" ? "no route to host" : null,
          })),
        },
      ],
      startedAt,
      updatedAt: startedAt,
    },
  };
}

const newer = record("bbbbbbbbbbbb", "2026-11-26T11:00:00.000Z", [
  ["h1", "confirmed", V3],
  ["h3", "unreachable", V3],
  ["h4", "refused", null],
]);
const older = record("aaaaaaaaaaaa", "2026-11-26T10:00:00.000Z", [
  ["h1", "confirmed", V2],
  ["h3", "confirmed", V2],
  ["h4", "confirmed", V2],
  ["h5", "confirmed", V2],
]);

/**
 * A host's record, begun at `startedAt` on `desired`, that it reports it runs; an agent's, of
 * release `seq` of channel "prod".
 */
function reported(startedAt: string, desired: string, mode: DeliveryMode = "ssh", seq = 1) {
  const release = mode === "agent" ? { channel: "prod", seq } : { channel: null, seq: null };
  return { startedAt, desired, state: "success" as const, mode, ...release };
}

describe("the fleet's last ask", () => {
  it("is the newest rollout naming the host with a system; a refusal asks nothing", () => {
    const asks = lastAsks([newer, older], ["h1", "h3", "h4", "h5", "h9"]);
    expect(asks.get("h1")?.system).toBe(V3);
    expect(asks.get("h3")).toMatchObject({ system: V3, rollout: { id: "bbbbbbbbbbbb" } });
    expect(asks.get("h4")).toMatchObject({ system: V2, rollout: { id: "aaaaaaaaaaaa" } });
    expect(asks.get("h5")?.system).toBe(V2);
    expect(asks.has("h9")).toBe(false);
  });

  it("a host the rollout skipped is behind until a record of it newer than the rollout, or it runs the system", () => {
    const ask = lastAsks([newer], ["h3"]).get("h3");
    const behind = behindOf(ask, reported("2026-11-26T10:00:05.000Z", V2), V2);
    expect(behind).toEqual({
      wants: V3,
      rollout: "bbbbbbbbbbbb",
      at: "2026-11-26T11:00:00.000Z",
      why: "skipped as unreachable: no route to host",
    });
    expect(behindText(behind as NonNullable<typeof behind>)).toBe(
      "behind rollout bbbbbbbbbbbb (skipped as unreachable: no route to host): should run web-v3",
    );
    expect(behindOf(ask, reported("2026-11-26T11:02:00.000Z", V2), V2)).toBeUndefined();
    expect(behindOf(ask, undefined, V3)).toBeUndefined();
    expect(behindOf(undefined, undefined, V2)).toBeUndefined();
    // A host the rollout gave its system and that runs another since drifts; it is not behind.
    expect(behindOf(lastAsks([newer], ["h1"]).get("h1"), undefined, V2)).toBeUndefined();
  });

  it("a host that failed there is named with the rollout beside the failure its record tells", () => {
    const failed = record("cccccccccccc", "2026-11-26T12:00:00.000Z", [["h2", "rolled-back", V3]]);
    const ask = lastAsks([failed], ["h2"]).get("h2");
    const itsFailure = { ...reported("2026-11-26T12:00:01.000Z", V3), state: "failed" as const };
    expect(behindOf(ask, itsFailure, V2)).toMatchObject({
      rollout: "cccccccccccc",
      wants: V3,
      failed: true,
    });
    expect(behindOf(ask, itsFailure, V2)?.why).toMatch(/^rolled back/);
    // A failure on that system from before the rollout is not its failure there.
    const before = { ...itsFailure, startedAt: "2026-11-26T11:00:00.000Z" };
    expect(behindOf(ask, before, V2)).toMatchObject({ rollout: "cccccccccccc" });
    expect(behindOf(ask, before, V2)).not.toHaveProperty("failed");
    // A failure of another system since is the newer word, as is a success.
    expect(behindOf(ask, { ...itsFailure, desired: V2 }, V2)).toBeUndefined();
    expect(behindOf(ask, { ...itsFailure, state: "success" }, V2)).toBeUndefined();
  });

  it("an agent's report that only confirms the entry it was left on (the rollout's release, or another rollout's since) is no newer word", () => {
    const later = "2026-11-26T11:05:00.000Z";
    // Every release of an agent rollout names every host of the channel: a host of a wave that
    // never started, and one its wave's failure carried back, report success on what they ran.
    const V4 = "/nix/store/44444444444444444444444444444444-web-v4";
    const entry = (host: string, state: RolloutHost["state"]): RolloutHost => ({
      host,
      state,
      phase: null,
      system: V3,
      before: V2,
      message: state === "rolled-back" ? "health check failed" : null,
    });
    const agents = {
      key: "status/rollouts/0000000000000-dddddddddddd.json",
      record: {
        ...newer.record,
        id: "dddddddddddd",
        mode: "agent" as const,
        state: "failed" as const,
        waves: [
          { index: 1, kind: "canary" as const, hosts: [entry("a1", "rolled-back")] },
          { index: 2, kind: "main" as const, hosts: [entry("a3", "not-started")] },
        ],
        // Its agent paused or offline: the survey found it unreachable, and knew not what it ran.
        skipped: [{ ...entry("a4", "unreachable"), before: null, message: "a4's agent is paused" }],
        // Release 5: wave 1; release 6: the rollback of its failed host.
        releases: { channel: "prod", seqs: [5, 6] },
      },
    };
    const asks = lastAsks([agents], ["a1", "a3", "a4"]);
    // A host it found unreachable, reporting the entry the rollout's release carried for it.
    expect(behindOf(asks.get("a4"), reported(later, V2, "agent", 5), V2)).toMatchObject({
      rollout: "dddddddddddd",
      why: "skipped as unreachable: a4's agent is paused",
    });
    expect(behindOf(asks.get("a3"), reported(later, V2, "agent", 5), V2)).toMatchObject({
      rollout: "dddddddddddd",
      wants: V3,
      why: "not started",
    });
    // A host that failed there and went back: the rollout tells its failure, as an ssh host's
    // record does.
    expect(behindOf(asks.get("a1"), reported(later, V2, "agent", 6), V2)).toEqual({
      wants: V3,
      rollout: "dddddddddddd",
      at: agents.record.startedAt,
      why: "rolled back: health check failed",
      failed: true,
      rolledBack: true,
    });
    // A release published since by hand (no rollout's) is the newer word, on the system it ran
    // as on another,
    expect(behindOf(asks.get("a3"), reported(later, V2, "agent", 7), V2)).toBeUndefined();
    expect(behindOf(asks.get("a3"), reported(later, V4, "agent", 7), V4)).toBeUndefined();
    // but a release of a later agent rollout that did not name the host (a deploy of another)
    // only carried its entry: a report of what it ran before on it is no newer word.
    const other = {
      key: "status/rollouts/0000000000001-eeeeeeeeeeee.json",
      record: {
        ...agents.record,
        id: "eeeeeeeeeeee",
        startedAt: "2026-11-26T11:02:00.000Z",
        state: "succeeded" as const,
        waves: [{ index: 1, kind: "main" as const, hosts: [entry("a9", "confirmed")] }],
        skipped: [],
        releases: { channel: "prod", seqs: [7] },
      },
    };
    const since = lastAsks([other, agents], ["a3", "a4"]);
    expect(behindOf(since.get("a3"), reported(later, V2, "agent", 7), V2)).toMatchObject({
      rollout: "dddddddddddd",
      why: "not started",
    });
    expect(behindOf(since.get("a3"), reported(later, V4, "agent", 7), V4)).toBeUndefined();
    // A host whose former system the rollout did not know: the same.
    expect(behindOf(since.get("a4"), reported(later, V2, "agent", 7), V2)).toMatchObject({
      rollout: "dddddddddddd",
    });
    // as is a push deploy's record: it is written only for a host it asked something of;
    expect(behindOf(asks.get("a3"), reported(later, V2, "ssh"), V2)).toBeUndefined();
    // and a record of a rollout that does not name its releases (older) is judged by time.
    const { releases: _releases, ...older } = agents.record;
    const oldAsk = lastAsks([{ ...agents, record: older }], ["a3"]).get("a3");
    expect(behindOf(oldAsk, reported(later, V2, "agent", 5), V2)).toBeUndefined();
  });

  it("an agent's report on a release that only carried its entry (a refresh, a release of other hosts) is no newer word, whoever published it", () => {
    // Rollout R stopped after its canary: a3 was never started, and runs V2; a5's agent was
    // paused, and the survey knew not what it ran.
    const V4 = "/nix/store/44444444444444444444444444444444-web-v4";
    const entry = (host: string, state: RolloutHost["state"], before: string | null) => ({
      host,
      state,
      phase: null,
      system: V3,
      before,
      message: null,
    });
    const rollout = {
      key: "status/rollouts/0000000000000-ffffffffffff.json",
      record: {
        ...newer.record,
        id: "ffffffffffff",
        mode: "agent" as const,
        waves: [
          { index: 1, kind: "canary" as const, hosts: [entry("a1", "confirmed", V2)] },
          {
            index: 2,
            kind: "main" as const,
            hosts: [entry("a3", "not-started", V2), entry("a5", "unreachable", null)],
          },
        ],
        skipped: [],
        releases: { channel: "prod", seqs: [5] },
      },
    };
    const asks = lastAsks([rollout], ["a3", "a5"]);
    const later = "2026-11-26T12:00:00.000Z";
    // `release refresh` (release 6), or a `release publish --on` other hosts: its agent found
    // the release named for a3 what release 5 did. No rollout of it was read.
    const refreshed = { ...reported(later, V2, "agent", 6), carried: true as const };
    expect(behindOf(asks.get("a3"), refreshed, V2)).toMatchObject({
      rollout: "ffffffffffff",
      wants: V3,
      why: "not started",
    });
    // So too for a host whose former system the rollout did not know.
    expect(behindOf(asks.get("a5"), refreshed, V2)).toMatchObject({ rollout: "ffffffffffff" });
    // A release that named a3 anew (`release publish --on a3`, `rollback --on a3`) is the
    // newer word, on the system it ran as on another; so is a carried entry of another system
    // than the one the rollout left it on (a release since named it that).
    const named = reported(later, V2, "agent", 6);
    expect(behindOf(asks.get("a3"), named, V2)).toBeUndefined();
    expect(behindOf(asks.get("a3"), reported(later, V4, "agent", 6), V4)).toBeUndefined();
    expect(behindOf(asks.get("a3"), { ...refreshed, desired: V4 }, V4)).toBeUndefined();
    // Once it runs what the rollout asked, it is not behind it.
    expect(behindOf(asks.get("a3"), { ...refreshed, desired: V3 }, V3)).toBeUndefined();
  });

  it("a dry run asks nothing: the ask before it stands", () => {
    const dry = record("eeeeeeeeeeee", "2026-11-26T12:00:00.000Z", [["h3", "confirmed", V3]]);
    const asks = lastAsks(
      [{ ...dry, record: { ...dry.record, action: "dry-activate" } }, newer],
      ["h3"],
    );
    expect(asks.get("h3")).toMatchObject({
      rollout: { id: "bbbbbbbbbbbb" },
      entry: { state: "unreachable" },
    });
  });

  it("an undone rollout asks nothing: its hosts are judged by the asks before it", () => {
    const rollback = record("cccccccccccc", "2026-11-26T12:00:00.000Z", [
      ["h1", "confirmed", V2],
      ["h3", "left", null],
    ]);
    const undoing = { ...rollback, record: { ...rollback.record, undoes: "bbbbbbbbbbbb" } };
    const asks = lastAsks([undoing, newer, older], ["h1", "h3"]);
    expect(asks.get("h1")).toMatchObject({ system: V2, rollout: { id: "cccccccccccc" } });
    // Skipped by the rollout undone, left by the rollback: the ask before them stands.
    expect(asks.get("h3")).toMatchObject({ system: V2, rollout: { id: "aaaaaaaaaaaa" } });
  });

  it("a rollback of some hosts (--on) undoes the rollout for them alone: its other hosts stay behind it", () => {
    const rollback = record("cccccccccccc", "2026-11-26T12:00:00.000Z", [["h1", "confirmed", V2]]);
    const undoing = { ...rollback, record: { ...rollback.record, undoes: "bbbbbbbbbbbb" } };
    const asks = lastAsks([undoing, newer, older], ["h1", "h3"]);
    expect(asks.get("h1")).toMatchObject({ system: V2, rollout: { id: "cccccccccccc" } });
    // h3 was unreachable in the rollout; the rollback of h1 did not undo it for h3.
    expect(asks.get("h3")).toMatchObject({ system: V3, rollout: { id: "bbbbbbbbbbbb" } });
    expect(behindOf(asks.get("h3"), undefined, V2)).toBeDefined();
  });

  it("an aborted rollout asks nothing of the hosts it never reached", () => {
    const aborted = record("dddddddddddd", "2026-11-26T12:00:00.000Z", [
      ["h1", "not-started", V3],
      ["h5", "unreachable", V3],
    ]);
    aborted.record = { ...aborted.record, state: "aborted" };
    const asks = lastAsks([aborted, older], ["h1", "h5"]);
    expect(asks.get("h1")).toMatchObject({ rollout: { id: "aaaaaaaaaaaa" } });
    expect(asks.get("h5")).toMatchObject({ system: V3, rollout: { id: "dddddddddddd" } });
  });

  it("hosts waiting for their wave are behind while the rollout runs or pauses", () => {
    const paused = record("eeeeeeeeeeee", "2026-11-26T12:00:00.000Z", [
      ["h1", "confirmed", V3],
      ["h5", "pending", V3],
    ]);
    paused.record = { ...paused.record, state: "paused", updatedAt: "2026-11-26T12:00:10.000Z" };
    // Its deployer writes it every heartbeat, paused too: written 110 s ago.
    const ask = lastAsks([paused], ["h5"], new Date("2026-11-26T12:02:00.000Z")).get("h5");
    expect(behindOf(ask, undefined, V2)?.why).toBe("waiting for its wave");
  });

  it("a paused rollout whose deployer is gone (its deadline long past, or unwritten) asks as it ended there", () => {
    const paused = record("eeeeeeeeeeee", "2026-11-26T12:00:00.000Z", [
      ["h1", "confirmed", V3],
      ["h5", "pending", V3],
    ]);
    const pause = {
      afterWave: 1,
      since: "2026-11-26T12:00:05.000Z",
      until: "2026-11-26T12:10:00.000Z",
      onTimeout: "abort" as const,
    };
    paused.record = { ...paused.record, state: "paused", pauses: [pause] };
    const stopped = (at: string) =>
      `not started: its deploy stopped writing its record at ${at} (killed, or interrupted twice)`;
    // Written a minute ago, but its deadline passed ten minutes ago and nobody took an outcome
    // (within PAUSE_GONE_AFTER_MS of it, its deployer may be taking the deadline's outcome).
    const late = { ...paused, record: { ...paused.record, updatedAt: "2026-11-26T12:19:00.000Z" } };
    const at = (time: string) => lastAsks([late], ["h5"], new Date(time)).get("h5");
    expect(behindOf(at("2026-11-26T12:10:30.000Z"), undefined, V2)?.why).toBe(
      "waiting for its wave",
    );
    expect(behindOf(at("2026-11-26T12:20:00.000Z"), undefined, V2)?.why).toBe(
      stopped("2026-11-26T12:19:00.000Z"),
    );
    // Unwritten for 15 heartbeats, its deadline a day ahead.
    const quiet = {
      ...paused,
      record: { ...paused.record, pauses: [{ ...pause, until: "2026-11-27T12:00:00.000Z" }] },
    };
    const ask = lastAsks([quiet], ["h5"], new Date("2026-11-26T12:20:00.000Z")).get("h5");
    expect(behindOf(ask, undefined, V2)?.why).toBe(stopped("2026-11-26T12:00:00.000Z"));
  });

  it("a rollout its deployer stopped writing (killed) asks as it ended there", () => {
    const killed = record("ffffffffffff", "2026-11-26T12:00:00.000Z", [
      ["h1", "activating", V3],
      ["h5", "pending", V3],
    ]);
    killed.record = { ...killed.record, state: "running" };
    const later = new Date("2026-11-26T13:00:00.000Z");
    const asks = lastAsks([killed], ["h1", "h5"], later);
    const stopped =
      "its deploy stopped writing its record at 2026-11-26T12:00:00.000Z (killed, or interrupted twice)";
    expect(behindOf(asks.get("h5"), undefined, V2)?.why).toBe(`not started: ${stopped}`);
    expect(behindOf(asks.get("h1"), undefined, V2)?.why).toBe(`failed: ${stopped}`);
    // Mid-activation, it came to run its system: not behind.
    expect(behindOf(asks.get("h1"), undefined, V3)).toBeUndefined();
    // Unwritten for more than three heartbeats (long before it can be undone): the same, so
    // that no view calls a host it left mid-activation in step meanwhile.
    const quiet = lastAsks([killed], ["h1"], new Date("2026-11-26T12:03:30.000Z")).get("h1");
    expect(behindOf(quiet, undefined, V2)?.why).toBe(`failed: ${stopped}`);
    const recent = lastAsks([killed], ["h1"], new Date("2026-11-26T12:02:30.000Z")).get("h1");
    expect(recent?.entry.state).toBe("activating");
    // Ended by a second interrupt (its last word): the same, at once.
    const ended = { ...killed, record: { ...killed.record, state: "interrupted" as const } };
    const now = new Date("2026-11-26T12:00:05.000Z");
    expect(behindOf(lastAsks([ended], ["h1"], now).get("h1"), undefined, V2)?.why).toBe(
      `failed: ${stopped}`,
    );
  });
});

describe("a failure in a rollout a rollback undid since", () => {
  const failedIn = record("cccccccccccc", "2026-11-26T12:00:00.000Z", [
    ["h1", "confirmed", V3],
    ["h2", "rolled-back", V3],
    ["h3", "rolled-back", V3],
  ]);
  // The rollback names h1 (sent back) and h2 (left where it went back to), not h3.
  const rollback = {
    ...record("dddddddddddd", "2026-11-26T13:00:00.000Z", [
      ["h1", "confirmed", V2],
      ["h2", "left", null],
    ]),
  };
  const undoing = { ...rollback, record: { ...rollback.record, undoes: "cccccccccccc" } };
  const failures = undoneFailures([undoing, failedIn]);
  const itsFailure = {
    ...reported("2026-11-26T12:00:01.000Z", V3),
    state: "failed" as const,
    rolledBack: true,
  };

  it("is the undone rollout's, for the hosts the rollback names that failed there", () => {
    expect([...failures.keys()]).toEqual(["h2"]);
    expect(failures.get("h2")).toEqual({
      rollout: "cccccccccccc",
      startedAt: "2026-11-26T12:00:00.000Z",
      system: V3,
      undoneAt: "2026-11-26T13:00:00.000Z",
    });
    // Without the undone rollout's record, nothing is known of what failed there.
    expect(undoneFailures([undoing]).size).toBe(0);
  });

  it("answers the record that rollout wrote, and no other", () => {
    const undone = failures.get("h2");
    expect(failureUndone(itsFailure, undone)).toBe("cccccccccccc");
    expect(failureUndone(itsFailure, undefined)).toBeUndefined();
    // It failed and did not go back: the rollback's own word on it is what counts.
    expect(failureUndone({ ...itsFailure, rolledBack: false }, undone)).toBeUndefined();
    // A failure on another system, one older than the rollout, one since the rollback.
    expect(failureUndone({ ...itsFailure, desired: V2 }, undone)).toBeUndefined();
    const at = (startedAt: string) => ({ ...itsFailure, startedAt });
    expect(failureUndone(at("2026-11-26T11:59:59.000Z"), undone)).toBeUndefined();
    expect(failureUndone(at("2026-11-26T13:00:01.000Z"), undone)).toBeUndefined();
    expect(failureUndone({ ...itsFailure, state: "success" as const }, undone)).toBeUndefined();
  });
});
