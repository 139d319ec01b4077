// The fleet's last ask of each host, and whether a host is behind it.
import { describe, expect, it } from "vitest";
import { behindOf, behindText } from "./behind.js";
import { lastAsks } from "./fleet-asks.js";
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

/** A host's record, begun at `startedAt` on `desired`, that it reports it runs. */
function reported(startedAt: string, desired: string) {
  return { startedAt, desired, state: "success" as const };
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
    expect(behindOf(ask, itsFailure, V2)).toMatchObject({ rollout: "cccccccccccc", wants: V3 });
    expect(behindOf(ask, itsFailure, V2)?.why).toMatch(/^rolled back/);
    // A failure of another system since is the newer word, as is a success.
    expect(behindOf(ask, { ...itsFailure, desired: V2 }, V2)).toBeUndefined();
    expect(behindOf(ask, { ...itsFailure, state: "success" }, V2)).toBeUndefined();
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
    const ask = lastAsks([paused], ["h5"], new Date("2026-11-26T12:05:00.000Z")).get("h5");
    expect(behindOf(ask, undefined, V2)?.why).toBe("waiting for its wave");
  });

  it("a rollout its deployer stopped writing (killed) asks as it ended there", () => {
    const killed = record("ffffffffffff", "2026-11-26T12:00:00.000Z", [
      ["h1", "activating", V3],
      ["h5", "pending", V3],
    ]);
    killed.record = { ...killed.record, state: "running" };
    const later = new Date("2026-11-26T13:00:00.000Z");
    const asks = lastAsks([killed], ["h1", "h5"], later);
    const stopped = "its deploy stopped at 2026-11-26T12:00:00.000Z (killed, or interrupted twice)";
    expect(behindOf(asks.get("h5"), undefined, V2)?.why).toBe(`not started: ${stopped}`);
    expect(behindOf(asks.get("h1"), undefined, V2)?.why).toBe(`failed: ${stopped}`);
    // Mid-activation, it came to run its system: not behind.
    expect(behindOf(asks.get("h1"), undefined, V3)).toBeUndefined();
    // Ended by a second interrupt (its last word): the same, at once.
    const ended = { ...killed, record: { ...killed.record, state: "interrupted" as const } };
    const now = new Date("2026-11-26T12:00:05.000Z");
    expect(behindOf(lastAsks([ended], ["h1"], now).get("h1"), undefined, V2)?.why).toBe(
      `failed: ${stopped}`,
    );
  });
});
