// A host's state in one word, the same in every view: one row of each state, the precedence
// between them, the rows asked live, and `status`'s STATE column saying what the dashboard says.
import { describe, expect, it } from "vitest";
import { HAND, liveAnswer, sshRecord, V1, V2 } from "../../test/support/status-records.js";
import {
  agentHost,
  onChannel,
  ROWS_BY_STATE as ROWS,
  sshHost as ssh,
  standing,
} from "../../test/support/status-rows.js";
import { hostStatus } from "../host/script-outcomes.js";
import type { Ask } from "../status/fleet-asks.js";
import type { RolloutHost } from "../status/rollout.js";
import { formatStatusTable } from "../ui/status-table.js";
import { HOST_STATES, hostState, withHostStates } from "./host-state.js";
import { withRolloutApplying } from "./rollout-applying.js";
import type { RolloutRead } from "./rollout-watch.js";
import { liveRow, type StatusRow, storedRow } from "./status-rows.js";

const V3 = "/nix/store/33333333333333333333333333333333-nixos-system-web1";

/** The fleet's ask of web1 in rollout `id`, started at `startedAt`: `system`, and how it went. */
function ask(id: string, startedAt: string, system: string, state: RolloutHost["state"]): Ask {
  return {
    rollout: { id, key: `k-${id}`, startedAt },
    system,
    entry: { host: "web1", state, phase: null, system, message: null },
  };
}

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

  it.each(ROWS.map(([state, row]) => [row.host, state, row] as const))(
    "%s (%s) is in step exactly when its state is in-step or applying",
    (_host, state, row) => {
      expect(row.inStep).toBe(state === "in-step" || state === "applying");
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

  it("an agent host behind a rollout whose agent is offline or paused is that: why it is behind", () => {
    const behindRollout = {
      wants: V2,
      rollout: "0000000000cc",
      at: "2026-11-25T11:00:00.000Z",
      why: "its wave failed",
    };
    for (const liveness of ["offline", "paused"] as const) {
      const row = { ...onChannel("q", {}, standing({ liveness })), behindRollout } as StatusRow;
      expect(hostState(row)).toBe(liveness);
    }
    const online = { ...onChannel("q", {}, standing()), behindRollout } as StatusRow;
    expect(hostState(online)).toBe("behind");
    // One that failed in it and went back (the rollout's word): rolled back, as an ssh host.
    const wentBack = {
      ...online,
      behindRollout: { ...behindRollout, failed: true, rolledBack: true },
    } as StatusRow;
    expect(hostState(wentBack)).toBe("rolled-back");
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
    // Hosts the rollout applies are in step alike, whatever their last deploy did: one state,
    // one exit code.
    const failedBefore = storedRow(ssh("new"), {
      record: sshRecord({
        host: "new",
        state: "failed",
        phase: "health",
        error: "x",
        rolledBack: true,
      }),
    });
    const both = withRolloutApplying(
      [fresh, failedBefore],
      rollout("running"),
      new Date("2026-11-26T07:00:30.000Z"),
    );
    expect(both.map((r) => [hostState(r), r.inStep])).toEqual([
      ["applying", true],
      ["applying", true],
    ]);
  });

  it("never calls in step an agent host offline, paused or behind, though a rollback undid the failure its record tells", () => {
    const undone = (over: Parameters<typeof standing>[0]) =>
      storedRow(agentHost("ag1"), {
        record: sshRecord({
          host: "ag1",
          mode: "agent",
          channel: "prod",
          seq: 4,
          state: "failed",
          phase: "health",
          error: "x",
          rolledBack: true,
        }),
        agent: standing(over),
        failureUndone: "0000000000aa",
      });
    for (const [over, state] of [
      [{ liveness: "offline" }, "offline"],
      [{ liveness: "paused" }, "paused"],
      [{ behind: true }, "behind"],
    ] as const) {
      const row = undone(over);
      expect([state, hostState(row), row.inStep]).toEqual([state, state, false]);
    }
    // Online and on the channel's release: the undone failure is history, and it is in step.
    expect(undone({}).inStep).toBe(true);
  });

  describe("a host whose rollout's bake of the system it runs never finished", () => {
    /** Rollout cc gave web1 V2; its bake there `bake`, the entry `state`. */
    const baked = (bake: "interrupted" | "baking" | "passed", state: RolloutHost["state"]) => {
      const a = ask("0000000000cc", "2026-11-25T12:00:00.000Z", V2, state);
      return {
        ...a,
        entry: {
          ...a.entry,
          before: V1,
          bake: { state: bake, seconds: 600, interval: 30, analysis: [] },
        },
      } as Ask;
    };
    const record = sshRecord({ startedAt: "2026-11-25T12:00:01.000Z" });

    it("is unbaked, not in step, asked live or read from the store, and status names the rollout", () => {
      const interrupted = baked("interrupted", "confirmed");
      const live = liveRow(ssh("web1"), liveAnswer(V2), record, undefined, interrupted);
      expect(live.unbaked).toEqual({
        rollout: "0000000000cc",
        why: "its bake was interrupted",
        before: V1,
      });
      expect(live.inStep).toBe(false);
      expect(hostState(live)).toBe("unbaked");
      const stored = storedRow(ssh("web1"), { record, ask: interrupted });
      expect(stored.inStep).toBe(false);
      expect(hostState(stored)).toBe("unbaked");
      // A deployer killed mid-bake: its entry as the views read it (ended-rollout.ts).
      const killed = liveRow(
        ssh("web1"),
        liveAnswer(V2),
        record,
        undefined,
        baked("baking", "failed"),
      );
      expect(hostState(killed)).toBe("unbaked");
      expect(formatStatusTable([live])).toContain(
        "its bake in rollout 0000000000cc never finished (its bake was interrupted): no bake judged the system it runs; the next deploy bakes it again",
      );
    });

    it("is in step once baked, while its deployer still bakes it, or running another system", () => {
      const passed = liveRow(
        ssh("web1"),
        liveAnswer(V2),
        record,
        undefined,
        baked("passed", "confirmed"),
      );
      expect(hostState(passed)).toBe("in-step");
      const bakingNow = {
        ...baked("baking", "baking"),
        rollout: { ...baked("baking", "baking").rollout, live: true as const },
      };
      expect(hostState(liveRow(ssh("web1"), liveAnswer(V2), record, undefined, bakingNow))).toBe(
        "in-step",
      );
      // Back on V1 by hand since: drift, not an unfinished bake of V1.
      const other = liveRow(
        ssh("web1"),
        liveAnswer(V1),
        record,
        undefined,
        baked("interrupted", "confirmed"),
      );
      expect(other.unbaked).toBeUndefined();
    });
  });

  describe("a host asked live", () => {
    const failedRecord = (rolledBack: boolean | null) =>
      sshRecord({ desired: V2, current: V1, state: "failed", phase: "health", rolledBack });

    it("whose last deploy failed says whether it went back", () => {
      expect(hostState(liveRow(ssh("web1"), liveAnswer(V1), failedRecord(true)))).toBe(
        "rolled-back",
      );
      expect(hostState(liveRow(ssh("web1"), liveAnswer(V1), failedRecord(false)))).toBe("failed");
    });

    it("that a later rollout skipped is behind, whatever its last deploy did", () => {
      const skipped = ask("0000000000bb", "2026-11-25T11:00:00.000Z", V3, "unreachable");
      const row = liveRow(ssh("web1"), liveAnswer(V1), failedRecord(true), undefined, skipped);
      expect(row.behindRollout).toMatchObject({ rollout: "0000000000bb", wants: V3 });
      expect(hostState(row)).toBe("behind");
    });

    it("that failed in the rollout its record tells keeps the record's state", () => {
      const failedThere = ask("0000000000aa", "2026-11-25T09:59:00.000Z", V2, "rolled-back");
      const row = liveRow(ssh("web1"), liveAnswer(V1), failedRecord(true), undefined, failedThere);
      expect(row.behindRollout).toMatchObject({ rollout: "0000000000aa", wants: V2 });
      expect(hostState(row)).toBe("rolled-back");
    });

    it("that failed in a rollout since undone is in step while it runs what it went back to", () => {
      const undone = "0000000000aa";
      const row = liveRow(
        ssh("web1"),
        liveAnswer(V1),
        failedRecord(true),
        undefined,
        undefined,
        undone,
      );
      expect(row).toMatchObject({ inStep: true, failureUndone: undone });
      expect(row.behind).toBeUndefined();
      expect(hostState(row)).toBe("in-step");
      expect(formatStatusTable([row])).toContain(
        `in-step  failed in rollout ${undone} and went back; that rollout is undone`,
      );
      // Moved since (by hand): the undone failure says nothing of it.
      const moved = liveRow(
        ssh("web1"),
        liveAnswer(V3),
        failedRecord(true),
        undefined,
        undefined,
        undone,
      );
      expect(moved.failureUndone).toBeUndefined();
      expect(hostState(moved)).not.toBe("in-step");
      // Read from the store: the same.
      const stored = storedRow(ssh("web1"), { record: failedRecord(true), failureUndone: undone });
      expect(stored).toMatchObject({ inStep: true, failureUndone: undone, state: "failed" });
      expect(hostState(stored)).toBe("in-step");
      expect(formatStatusTable([stored])).toContain(`failed in rollout ${undone} and went back`);
    });

    it("that does not answer is unreachable, and still names the rollout it is behind", () => {
      const skipped = ask("0000000000bb", "2026-11-25T11:00:00.000Z", V3, "unreachable");
      const down = {
        reachable: false,
        error: "ssh: connect to host: Connection timed out",
      } as never;
      const row = liveRow(ssh("web1"), down, sshRecord(), undefined, skipped);
      expect(row.behindRollout).toMatchObject({ rollout: "0000000000bb", wants: V3 });
      expect(hostState(row)).toBe("unreachable");
    });

    it("that answers with something other than a status is unreadable, not unreachable", () => {
      const garbled = hostStatus({
        code: 0,
        result: undefined,
        failure: "web1: activate.sh's output is not a result",
        unreadable: true,
      });
      expect(garbled).toMatchObject({ reachable: false, answerUnreadable: true });
      const row = liveRow(ssh("web1"), garbled, sshRecord());
      expect(hostState(row)).toBe("unreadable");
      expect(row.inStep).toBe(false);
      expect(formatStatusTable([row])).toMatch(
        /^web1\s+ssh\s+-\s+-\s+unreadable\s+web1: activate.sh's output is not a result$/m,
      );
      // No answer at all is the network's story: unreachable.
      const silent = hostStatus({ code: 255, result: undefined, failure: "ssh: timed out" });
      expect(hostState(liveRow(ssh("web1"), silent, sshRecord()))).toBe("unreachable");
    });

    it("that runs a system that failed there is failed, even behind a rollout", () => {
      const skipped = ask("0000000000bb", "2026-11-25T11:00:00.000Z", V3, "unreachable");
      const failed = { path: V2, since: null, reason: "health check failed" };
      const row = liveRow(ssh("web1"), liveAnswer(V2, { failed }), sshRecord(), undefined, skipped);
      expect(row.behindRollout).toBeDefined();
      expect(hostState(row)).toBe("failed");
    });

    it("that runs a system its record says failed there and did not leave is failed, as read stored", () => {
      // A bake failed after the switch and its rollback never reached the host: the record says
      // failed on V3, not rolled back, and the host (no failed marker of its own) runs V3.
      const bakeFailed = sshRecord({
        desired: V3,
        current: V3,
        previous: V2,
        state: "failed",
        phase: "bake",
        error: "bake failed: error rate 12% over 5%",
        rolledBack: false,
      });
      const failedThere = ask("0000000000aa", "2026-11-25T09:59:00.000Z", V3, "failed");
      const live = liveRow(ssh("web1"), liveAnswer(V3), bakeFailed, undefined, failedThere);
      expect(live).toMatchObject({
        inStep: false,
        failed: {
          path: V3,
          since: Date.parse(bakeFailed.updatedAt) / 1000,
          reason: "bake failed: error rate 12% over 5%",
        },
      });
      const stored = storedRow(ssh("web1"), { record: bakeFailed, ask: failedThere });
      expect([hostState(live), hostState(stored)]).toEqual(["failed", "failed"]);
      expect(formatStatusTable([live])).toContain("failed");
      // Failed before a later rollout skipped it: failed in either view, as with its own marker.
      const skipped = ask("0000000000bb", "2026-11-25T11:00:00.000Z", HAND, "unreachable");
      const liveSkipped = liveRow(ssh("web1"), liveAnswer(V3), bakeFailed, undefined, skipped);
      const storedSkipped = storedRow(ssh("web1"), { record: bakeFailed, ask: skipped });
      expect(storedSkipped.behindRollout).toBeDefined();
      expect([hostState(liveSkipped), hostState(storedSkipped)]).toEqual(["failed", "failed"]);
      // One that went back, or runs another system since, is not failed on what it runs.
      const wentBack = liveRow(ssh("web1"), liveAnswer(V3), { ...bakeFailed, rolledBack: true });
      expect(wentBack).not.toHaveProperty("failed");
      const moved = liveRow(ssh("web1"), liveAnswer(V2), bakeFailed);
      expect(moved).not.toHaveProperty("failed");
      expect(hostState(moved)).toBe("failed");
      // Mid-deploy (a new deploy holds its lock): applying, as before.
      const busy = liveRow(ssh("web1"), liveAnswer(V3, { pending: "12" }), bakeFailed);
      expect(busy).not.toHaveProperty("failed");
      expect(hostState(busy)).toBe("applying");
    });

    it("that rebooted into a system nobody judged is unconfirmed, and not in step", () => {
      const boot = { pending: { path: V2, since: null } } as never;
      const row = liveRow(ssh("web1"), liveAnswer(V2, { boot }), sshRecord());
      expect(row.inStep).toBe(false);
      expect(hostState(row)).toBe("unconfirmed");
    });

    it("whose activation awaits its deploy's confirmation is applying: not drifting, not behind", () => {
      // Mid-deploy: it runs V3, which its record (written when the deploy ends) does not name yet.
      const row = liveRow(ssh("web1"), liveAnswer(V3, { pending: "12" }), sshRecord());
      expect(row).not.toHaveProperty("drift");
      expect(row).not.toHaveProperty("behind");
      expect(hostState(row)).toBe("applying");
      // Once confirmed, the deploy writes its record; without one, V3 is drift.
      const after = liveRow(ssh("web1"), liveAnswer(V3), sshRecord());
      expect(hostState(after)).toBe("drifting");
    });

    it("whose lock a live activation holds is applying, in every view's word; a stale lock is not", () => {
      // A deploy's switch under way: it runs V3, its record still names V2 (success).
      const activation = (stale: boolean) =>
        ({
          command: `activate ${V3}`,
          path: V3,
          pid: 4242,
          since: 1,
          deadline: 2,
          stale,
        }) as never;
      const row = liveRow(
        ssh("web1"),
        liveAnswer(V3, { activation: activation(false) }),
        sshRecord(),
      );
      expect(row).not.toHaveProperty("drift");
      expect(row).not.toHaveProperty("behind");
      expect(hostState(row)).toBe("applying");
      // Its holder gone: nothing applies it any more, and it is judged as it stands.
      const left = liveRow(
        ssh("web1"),
        liveAnswer(V3, { activation: activation(true) }),
        sshRecord(),
      );
      expect(hostState(left)).toBe("drifting");
    });

    it("that runs what its record asked, and no rollout skipped, is in step", () => {
      const row = liveRow(ssh("web1"), liveAnswer(V2), sshRecord());
      expect(row.inStep).toBe(true);
      expect(hostState(row)).toBe("in-step");
    });
  });
});

describe("a host read from its record", () => {
  it("whose last deploy was a boot, a success on the system it boots next, is unconfirmed until a deploy judges it", () => {
    const booted = storedRow(ssh("web1"), {
      record: sshRecord({ desired: V3, current: V2, previous: V2, action: "boot" }),
    });
    expect(booted.inStep).toBe(false);
    expect(hostState(booted)).toBe("unconfirmed");
    expect(formatStatusTable([booted])).toMatch(
      / unconfirmed {2}reboot into 33333333-nixos-system-web1 unconfirmed since \S+: the next deploy or rollback decides;/,
    );
    // The same record from a switch: the host went back to what it ran (by hand, as a
    // rollback would), which is no drift, and no boot of the other either.
    const back = storedRow(ssh("web1"), {
      record: sshRecord({ desired: V3, current: V2, previous: V2 }),
    });
    expect(back.inStep).toBe(true);
    expect(formatStatusTable([back])).not.toContain("boots");
  });
});

describe("every view says the same word", () => {
  const live = [
    liveRow(
      ssh("web1"),
      liveAnswer(V1),
      sshRecord({ desired: V2, current: V1, state: "failed", rolledBack: true }),
      undefined,
      ask("0000000000bb", "2026-11-25T11:00:00.000Z", V3, "unreachable"),
    ),
    liveRow(
      ssh("boot"),
      liveAnswer(V2, { boot: { pending: { path: V2, since: null } } as never }),
      sshRecord(),
    ),
  ];
  const rows: StatusRow[] = [...ROWS.map(([, row]) => row), ...live];

  it("status's STATE column is the state the dashboard shows", () => {
    const lines = formatStatusTable(rows).trimEnd().split("\n");
    const header = lines[0] as string;
    const at = header.indexOf("STATE");
    const width = header.indexOf("NOTE") - at;
    for (const [i, row] of rows.entries()) {
      const cell = (lines[i + 1] as string).slice(at, at + width).trim();
      expect(`${row.host}: ${cell}`).toBe(`${row.host}: ${hostState(row)}`);
    }
  });

  it("status --json and /api/hosts give each row its state", () => {
    for (const row of withHostStates(rows)) {
      expect(HOST_STATES).toContain(row.hostState);
      expect(row.hostState).toBe(hostState(row));
    }
  });
});
