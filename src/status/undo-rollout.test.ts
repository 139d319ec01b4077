// The undo of a rollout, host by host: what it changed goes back, what it skipped or never
// reached stays, what changed since is refused unless forced.
import { describe, expect, it } from "vitest";
import {
  ROLLOUT_ABANDONED_SECONDS,
  ROLLOUT_HEARTBEAT_SECONDS,
  type RolloutHost,
  type RolloutRecord,
  rolloutAbandoned,
} from "./rollout.js";
import { planUndo } from "./undo-rollout.js";

const V1 = "/nix/store/11111111111111111111111111111111-web-v1";
const V2 = "/nix/store/22222222222222222222222222222222-web-v2";
const V3 = "/nix/store/33333333333333333333333333333333-web-v3";

const entry = (host: string, state: RolloutHost["state"], before: string | null = V2) => ({
  host,
  state,
  phase: null,
  system: V3,
  before,
  message: state === "unreachable" ? "ssh: no route to host" : null,
});

function record(waves: RolloutHost[], skipped: RolloutHost[] = []): RolloutRecord {
  return {
    version: 1,
    id: "0123456789ab",
    mode: "ssh",
    action: "switch",
    state: "partial",
    stopped: null,
    waves: [{ index: 1, kind: "main", hosts: waves }],
    skipped,
    startedAt: "2026-11-26T10:00:00.000Z",
    updatedAt: "2026-11-26T10:01:00.000Z",
  };
}

describe("planUndo", () => {
  it("sends back what the rollout changed, and names the hosts it skipped, never reached or found up to date", () => {
    const r = record(
      [entry("a", "confirmed"), entry("b", "not-started"), entry("c", "rolled-back")],
      [entry("d", "unreachable"), { ...entry("e", "up-to-date"), before: V3 }],
    );
    const running = new Map([
      ["a", V3],
      ["b", V2],
      ["c", V2],
      ["d", V2],
      ["e", V3],
    ]);
    const steps = planUndo(r, running);
    expect(steps.map((s) => [s.host, s.kind])).toEqual([
      ["a", "back"],
      ["b", "stays"],
      ["c", "stays"],
      ["d", "stays"],
      ["e", "stays"],
    ]);
    expect(steps[0]).toEqual({ host: "a", kind: "back", from: V3, to: V2 });
    expect(steps[3]).toMatchObject({
      runs: V2,
      why: "rollout 0123456789ab skipped it as unreachable (ssh: no route to host): it never changed it",
    });
  });

  it("refuses a host changed since, or whose former system is not known, unless forced", () => {
    const r = record([
      entry("a", "confirmed"),
      entry("b", "confirmed", null),
      entry("c", "confirmed"),
    ]);
    const running = new Map<string, string | null>([
      ["a", V1],
      ["b", V3],
      ["c", null],
    ]);
    const steps = planUndo(r, running);
    expect(steps.map((s) => [s.host, s.kind])).toEqual([
      ["a", "refused"],
      ["b", "refused"],
      ["c", "refused"],
    ]);
    expect(steps[0]).toMatchObject({ why: expect.stringContaining("changed since") });
    const forced = planUndo(r, running, { force: true });
    expect(forced.map((s) => [s.host, s.kind])).toEqual([
      ["a", "back"],
      ["b", "refused"],
      ["c", "back"],
    ]);
  });

  it("leaves a host on what it ran before already, and keeps to the selected hosts", () => {
    const r = record([entry("a", "confirmed"), entry("b", "confirmed")]);
    const steps = planUndo(r, new Map([["a", V2]]), { selected: new Set(["a"]) });
    expect(steps).toEqual([
      { host: "a", kind: "stays", runs: V2, why: expect.stringContaining("what it ran before") },
    ]);
  });
});

describe("planUndo of a rollout its deployer left running (killed)", () => {
  const left = (): RolloutRecord => ({
    ...record([entry("a", "activating"), entry("b", "pending"), entry("c", "activating")]),
    state: "running",
  });
  const running = new Map([
    ["a", V3],
    // Moved by someone else: the rollout never started it.
    ["b", V3],
    // Its activation went back on its own (no confirmation came).
    ["c", V2],
  ]);

  it("judged abandoned: a host left mid-activation on the rollout's system goes back", () => {
    const steps = planUndo(left(), running, { abandoned: true });
    expect(steps.map((s) => [s.host, s.kind])).toEqual([
      ["a", "back"],
      ["b", "stays"],
      ["c", "stays"],
    ]);
  });

  it("not judged abandoned: hosts mid-activation are left to their deployer", () => {
    expect(planUndo(left(), running).map((s) => s.kind)).toEqual(["stays", "stays", "stays"]);
  });
});

describe("rolloutAbandoned", () => {
  const at = (updatedAt: string, state: RolloutRecord["state"] = "running") => ({
    ...record([]),
    state,
    updatedAt,
  });
  const now = new Date("2026-11-26T10:30:00.000Z");

  it("a running record unwritten for more than 15 heartbeats; never a finished one", () => {
    expect(ROLLOUT_ABANDONED_SECONDS).toBe(15 * ROLLOUT_HEARTBEAT_SECONDS);
    expect(rolloutAbandoned(at("2026-11-26T10:14:59.000Z"), now)).toBe(true);
    expect(rolloutAbandoned(at("2026-11-26T10:15:00.000Z"), now)).toBe(false);
    expect(rolloutAbandoned(at("2026-11-26T09:00:00.000Z", "failed"), now)).toBe(false);
    expect(rolloutAbandoned(at("2026-11-26T09:00:00.000Z", "paused"), now)).toBe(false);
  });
});
