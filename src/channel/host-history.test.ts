// The per-host history and the rules a release's entries follow from it: a failed system is
// never carried over, and rollbacks walk back through confirmed systems without flipping.
import { describe, expect, it } from "vitest";
import type { StorePath } from "../nix/store-path.js";
import type { ReleaseKind } from "../release/release.js";
import type { StatusState } from "../status/status.js";
import {
  carryEntry,
  confirmedSystems,
  hasFailed,
  hostHistories,
  lastConfirmed,
  type ReleaseReport,
  releaseHostViews,
  stepBack,
} from "./host-history.js";

const p = (c: string) => `/nix/store/${c.repeat(32)}-system` as StorePath;
const [V1, V2, V3, BROKEN] = [p("1"), p("2"), p("3"), p("b")] as const;

function report(
  seq: number,
  kind: ReleaseKind,
  entries: Record<string, [StorePath, StatusState?]>,
): ReleaseReport {
  const hosts = Object.fromEntries(Object.entries(entries).map(([h, [path]]) => [h, { path }]));
  const states = new Map(
    Object.entries(entries).flatMap(([h, [, state]]) =>
      state === undefined ? [] : [[h, state] as const],
    ),
  );
  return { release: { seq, kind, hosts }, states };
}

/** The sequence on web1: v1, v2, broken (failed), the wave's rollback to v2. */
const sequence = [
  report(1, "deploy", { web1: [V1, "success"], web2: [V1, "success"] }),
  report(2, "deploy", { web1: [V2, "success"], web2: [V2, "success"] }),
  report(3, "deploy", { web1: [BROKEN, "failed"], web2: [V2] }),
  report(4, "rollback", { web1: [V2, "success"], web2: [V2] }),
];

describe("hostHistories", () => {
  it("keeps each host's final states, oldest first, whatever order the releases come in", () => {
    const h = hostHistories([...sequence].reverse());
    expect(h.get("web1")?.map((e) => [e.seq, e.path, e.outcome])).toEqual([
      [1, V1, "success"],
      [2, V2, "success"],
      [3, BROKEN, "failed"],
      [4, V2, "success"],
    ]);
    // web2 never reported on 3 and 4 (the canary stopped the rollout).
    expect(h.get("web2")?.map((e) => e.seq)).toEqual([1, 2]);
  });

  it("ignores rejected releases and hosts the release does not name", () => {
    const h = hostHistories([
      { release: { seq: 1, kind: "deploy", hosts: {} }, states: new Map([["web1", "success"]]) },
      report(2, "deploy", { web1: [V1, "rejected"] }),
    ]);
    expect(h.get("web1")).toBeUndefined();
  });
});

describe("what passed and what failed", () => {
  const web1 = hostHistories(sequence).get("web1") ?? [];

  it("a system failed until it is confirmed again", () => {
    expect(hasFailed(web1, BROKEN)).toBe(true);
    expect(hasFailed(web1, V2)).toBe(false);
    const fixed = hostHistories([...sequence, report(5, "deploy", { web1: [BROKEN, "success"] })]);
    expect(hasFailed(fixed.get("web1") ?? [], BROKEN)).toBe(false);
  });

  it("lists confirmed systems newest first, never a failed one", () => {
    expect(confirmedSystems(web1)).toEqual([V2, V1]);
    expect(lastConfirmed(web1)).toBe(V2);
    expect(lastConfirmed(web1, V2)).toBe(V1);
    expect(lastConfirmed([], V2)).toBeUndefined();
  });
});

describe("carryEntry", () => {
  const web1 = hostHistories(sequence).get("web1") ?? [];

  it("keeps an entry that did not fail, and one of a host with no history", () => {
    expect(carryEntry(web1, { path: V2 })).toEqual({ status: "kept", entry: { path: V2 } });
    expect(carryEntry(undefined, { path: BROKEN })).toEqual({
      status: "kept",
      entry: { path: BROKEN },
    });
    expect(carryEntry(web1, undefined)).toEqual({ status: "kept", entry: undefined });
  });

  it("replaces a failed entry with the host's last confirmed system, or drops it", () => {
    expect(carryEntry(web1, { path: BROKEN })).toEqual({
      status: "replaced",
      failed: BROKEN,
      entry: { path: V2 },
    });
    // The rest of the entry stays: the host's own checks and its delta tool.
    const own = {
      policy: {
        health: { http: [], commands: [{ run: "pg_isready", timeout: 10 }] },
        confirmTimeout: 120,
      },
      deltaTool: V1,
    };
    expect(carryEntry(web1, { path: BROKEN, ...own })).toEqual({
      status: "replaced",
      failed: BROKEN,
      entry: { path: V2, ...own },
    });
    const never = hostHistories([report(1, "deploy", { web3: [BROKEN, "failed"] })]);
    expect(carryEntry(never.get("web3"), { path: BROKEN })).toEqual({
      status: "replaced",
      failed: BROKEN,
      entry: undefined,
    });
  });
});

describe("stepBack", () => {
  it("goes to the confirmed system before the current one, passing over a failed one", () => {
    const web1 = hostHistories(sequence).get("web1") ?? [];
    expect(stepBack(web1, "web1", V2)).toEqual({ status: "found", path: V1 });
    // From the broken entry (never confirmed): the newest confirmed system.
    expect(stepBack(web1, "web1", BROKEN)).toEqual({ status: "found", path: V2 });
  });

  it("walks back v3 → v2 → v1 through rollback releases, and never flips", () => {
    const reports = [
      report(1, "deploy", { h: [V1, "success"] }),
      report(2, "deploy", { h: [V2, "success"] }),
      report(3, "deploy", { h: [V3, "success"] }),
    ];
    let current: StorePath = V3;
    const walked: StorePath[] = [];
    for (let seq = 4; ; seq++) {
      const back = stepBack(hostHistories(reports).get("h") ?? [], "h", current);
      if (back.status === "none") {
        expect(back.why).toBe(
          `no system was confirmed healthy on h before ${V1} in the releases read`,
        );
        break;
      }
      walked.push(back.path);
      current = back.path;
      reports.push(report(seq, "rollback", { h: [current, "success"] }));
    }
    expect(walked).toEqual([V2, V1]);
  });

  it("a deploy that puts a system on the host again moves it forward; a rollback does not", () => {
    const h =
      hostHistories([
        report(1, "deploy", { h: [V1, "success"] }),
        report(2, "deploy", { h: [V2, "success"] }),
        report(3, "rollback", { h: [V1, "success"] }),
        report(4, "deploy", { h: [V2, "success"] }),
        report(5, "deploy", { h: [V1, "success"] }),
      ]).get("h") ?? [];
    expect(stepBack(h, "h", V1)).toEqual({ status: "found", path: V2 });
  });

  it("a deploy that only carries the host's entry (another host's) does not move it forward", () => {
    // v1, v2, v3; a rollback to v2; then deploys of web9 alone, whose releases name h on v2.
    const reports = [
      report(1, "deploy", { h: [V1, "success"] }),
      report(2, "deploy", { h: [V2, "success"] }),
      report(3, "deploy", { h: [V3, "success"] }),
      report(4, "rollback", { h: [V2, "success"] }),
      report(5, "deploy", { h: [V2, "success"], web9: [V3, "success"] }),
      report(6, "deploy", { h: [V2, "success"], web9: [V1, "success"] }),
    ];
    const h = hostHistories(reports).get("h") ?? [];
    expect(h.filter((e) => e.carried).map((e) => e.seq)).toEqual([5, 6]);
    // Back from v2 is v1, never v3, the system it was rolled back from.
    expect(stepBack(h, "h", V2)).toEqual({ status: "found", path: V1 });
    // With the release before unread, a deploy's entry counts as put there (as it always did).
    const unread = hostHistories(reports.filter((r) => r.release.seq !== 4)).get("h") ?? [];
    expect(unread.find((e) => e.seq === 5)?.carried).toBeUndefined();
  });

  it("says so when nothing was confirmed", () => {
    expect(stepBack([], "h", V1)).toEqual({
      status: "none",
      why: "no system was confirmed healthy on h in the releases read",
    });
  });
});

describe("releaseHostViews", () => {
  it("marks desired, running and last confirmed per host", () => {
    const views = releaseHostViews(
      { hosts: { web1: { path: V2 }, web2: { path: V2 } } },
      new Map([["web1", V2]]),
      hostHistories(sequence),
    );
    expect(views).toEqual([
      { host: "web1", desired: V2, running: V2, lastConfirmed: V2 },
      { host: "web2", desired: V2, running: null, lastConfirmed: V2 },
    ]);
  });
});
