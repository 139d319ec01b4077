// The undo of a rollout, host by host: what it changed goes back, what it skipped or never
// reached stays, what changed since is refused unless forced.
import { describe, expect, it } from "vitest";
import {
  ROLLOUT_ABANDONED_SECONDS,
  ROLLOUT_HEARTBEAT_SECONDS,
  type RolloutHost,
  type RolloutRecord,
  rolloutAbandoned,
  undoneHosts,
} from "./rollout.js";
import { leftByUndo, planUndo } from "./undo-rollout.js";

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
    // Changed since, or nothing to go back to: final. What it runs unknown: the rollout stands
    // for it (a rollback records it not started, and the next one asks again).
    expect(steps.map((s) => s.kind === "refused" && s.standing === true)).toEqual([
      false,
      false,
      true,
    ]);
    expect(steps[2]).toMatchObject({
      why: expect.stringContaining("stands for it until a rollback can tell"),
    });
    // Its first deploy: it ran no system to go back to, which no older command finds either.
    expect(steps[1]).toMatchObject({
      why: "rollout 0123456789ab found no system on it to go back to (its first deploy: it ran no system nixship could name): deploy the system it should run instead",
    });
    const { before: _before, ...older } = entry("b", "confirmed");
    expect(planUndo(record([older]), new Map([["b", V3]]))[0]).toMatchObject({
      kind: "refused",
      why: "rollout 0123456789ab did not record what it ran before (a record older than this nixship): use 'rollback --on b' to go back one generation",
    });
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

describe("planUndo of a boot deploy", () => {
  it("refuses a host that still runs what it ran but boots the rollout's system next, naming rollback --on", () => {
    const boot = { ...record([entry("a", "confirmed")]), action: "boot" as const };
    const [step] = planUndo(boot, new Map([["a", V2]]));
    expect(step).toEqual({
      host: "a",
      kind: "refused",
      runs: V2,
      why: "rollout 0123456789ab was a boot deploy: it still runs web-v2, and boots web-v3 next; 'nixship rollback --on a' sets its profile back one generation",
    });
    // Rebooted into it: it goes back as any host the rollout changed.
    expect(planUndo(boot, new Map([["a", V3]]))[0]).toMatchObject({ kind: "back", to: V2 });
  });
});

describe("planUndo with the rollouts started since", () => {
  // The undone rollout gave a V2 → V3; a later one gave V3 → V1, and one after it V1 → V3.
  const later = (id: string, at: string, system: string, before: string, undoes?: string) => ({
    ...record([{ ...entry("a", "confirmed", before), system }, entry("b", "not-started")]),
    id,
    startedAt: at,
    ...(undoes === undefined ? {} : { undoes }),
  });
  const r = record([entry("a", "confirmed"), entry("b", "confirmed")]);
  const running = new Map([
    ["a", V3],
    ["b", V3],
  ]);

  it("refuses a host a later rollout changed, though it runs the undone rollout's system again", () => {
    const newer = {
      records: [
        later("bbbbbbbbbbbb", "2026-11-26T12:00:00.000Z", V3, V1),
        later("aaaaaaaaaaaa", "2026-11-26T11:00:00.000Z", V1, V3),
      ],
      complete: true,
    };
    const steps = planUndo(r, running, { newer });
    expect(steps.map((s) => [s.host, s.kind])).toEqual([
      ["a", "refused"],
      ["b", "back"],
    ]);
    expect(steps[0]).toMatchObject({
      why: "rollout bbbbbbbbbbbb (2026-11-26T12:00:00.000Z) changed it since: undoing rollout 0123456789ab again would undo that too ('nixship rollback --rollout 0123456789ab --on a --force' sends it back all the same)",
    });
    expect(planUndo(r, running, { newer, force: true }).map((s) => s.kind)).toEqual([
      "back",
      "back",
    ]);
  });

  it("says when the later rollout's record is not signed: the operator judges whether to --force", () => {
    const newer = {
      records: [later("bbbbbbbbbbbb", "2026-11-26T12:00:00.000Z", V3, V1)],
      complete: true,
      unsigned: new Set(["bbbbbbbbbbbb"]),
    };
    expect(planUndo(r, running, { newer })[0]).toMatchObject({
      kind: "refused",
      why: "rollout bbbbbbbbbbbb (2026-11-26T12:00:00.000Z; its record is not signed by a cache key: a deploy without --key, or anyone who can write the store, wrote it) changed it since: undoing rollout 0123456789ab again would undo that too ('nixship rollback --rollout 0123456789ab --on a --force' sends it back all the same)",
    });
  });

  it("says so of a host a rollback of this rollout sent back already", () => {
    const rollback = later("cccccccccccc", "2026-11-26T11:00:00.000Z", V2, V3, "0123456789ab");
    const steps = planUndo(r, running, {
      newer: {
        records: [later("dddddddddddd", "2026-11-26T12:00:00.000Z", V3, V2), rollback],
        complete: true,
      },
    });
    expect(steps[0]).toMatchObject({
      kind: "refused",
      why: expect.stringContaining("changed it since"),
    });
    const only = planUndo(r, running, { newer: { records: [rollback], complete: true } });
    expect(only[0]).toMatchObject({
      kind: "refused",
      why: expect.stringContaining(
        "rollback cccccccccccc of rollout 0123456789ab sent it back already",
      ),
    });
  });

  it("passes over a later rollout and the rollback that undid it: undoing one after the other steps back", () => {
    const undone = later("aaaaaaaaaaaa", "2026-11-26T11:00:00.000Z", V1, V3);
    const rollback = later("cccccccccccc", "2026-11-26T12:00:00.000Z", V3, V1, "aaaaaaaaaaaa");
    const steps = planUndo(r, running, { newer: { records: [rollback, undone], complete: true } });
    expect(steps.map((s) => s.kind)).toEqual(["back", "back"]);
  });

  it("passes over a later rollout only for the hosts its rollback (--on) sent back", () => {
    const both = {
      ...record([
        { ...entry("a", "confirmed", V3), system: V1 },
        { ...entry("b", "confirmed", V3), system: V1 },
      ]),
      id: "aaaaaaaaaaaa",
      startedAt: "2026-11-26T11:00:00.000Z",
    };
    // A rollback --on a names a alone.
    const rollbackOfA = {
      ...record([{ ...entry("a", "confirmed", V1), system: V3 }]),
      id: "cccccccccccc",
      startedAt: "2026-11-26T12:00:00.000Z",
      undoes: "aaaaaaaaaaaa",
    };
    const steps = planUndo(r, running, {
      newer: { records: [rollbackOfA, both], complete: true },
    });
    expect(steps.map((s) => [s.host, s.kind])).toEqual([
      ["a", "back"],
      ["b", "refused"],
    ]);
    expect(steps[1]).toMatchObject({
      why: expect.stringContaining(
        "rollout aaaaaaaaaaaa (2026-11-26T11:00:00.000Z) changed it since",
      ),
    });
  });

  it("finishes a rollback of this rollout that was interrupted: the hosts it never sent back go back, the one it did stays", () => {
    const three = record([
      entry("a", "confirmed"),
      entry("b", "confirmed"),
      entry("c", "confirmed"),
    ]);
    // The rollback sent a back, then was interrupted: b failed before it started (nothing
    // changed), c was never reached.
    const interrupted = {
      ...record([
        { ...entry("a", "confirmed", V3), system: V2 },
        { ...entry("b", "failed", V3), system: V2, phase: "connect" as const },
        { ...entry("c", "not-started", V3), system: V2 },
      ]),
      id: "cccccccccccc",
      startedAt: "2026-11-26T11:00:00.000Z",
      undoes: "0123456789ab",
    };
    const now = new Map([
      ["a", V2],
      ["b", V3],
      ["c", V3],
    ]);
    const steps = planUndo(three, now, { newer: { records: [interrupted], complete: true } });
    expect(steps.map((s) => [s.host, s.kind])).toEqual([
      ["a", "stays"],
      ["b", "back"],
      ["c", "back"],
    ]);
    // An agent host whose agent never took the rollback's release (interrupted, and the release
    // withdrawn for it) was not changed either: it goes back now.
    const withdrawn = {
      ...interrupted,
      mode: "agent" as const,
      waves: [
        {
          index: 1,
          kind: "main" as const,
          hosts: [{ ...entry("b", "failed", V3), system: V2, phase: "waiting" as const }],
        },
      ],
    };
    expect(
      planUndo(three, now, { newer: { records: [withdrawn], complete: true } })[1],
    ).toMatchObject({ kind: "back" });
    // A host the rollback failed on once it could have changed it is refused, named.
    const switched = {
      ...interrupted,
      waves: [
        {
          index: 1,
          kind: "main" as const,
          hosts: [{ ...entry("b", "failed", V3), system: V2, phase: "switch" as const }],
        },
      ],
    };
    expect(
      planUndo(three, now, { newer: { records: [switched], complete: true } })[1],
    ).toMatchObject({ kind: "refused", why: expect.stringContaining("sent it back already") });
  });

  it("passes over a dry run since: it changed nothing, though its hosts say confirmed", () => {
    const dry = {
      ...later("dddddddddddd", "2026-11-26T11:00:00.000Z", V1, V3),
      action: "dry-activate" as const,
    };
    const steps = planUndo(r, running, { newer: { records: [dry], complete: true } });
    expect(steps.map((s) => s.kind)).toEqual(["back", "back"]);
  });

  it("refuses what it cannot tell: more rollouts since than it read", () => {
    const steps = planUndo(r, running, { newer: { records: [], complete: false } });
    expect(steps.map((s) => s.kind)).toEqual(["refused", "refused"]);
    expect(steps[0]).toMatchObject({
      why: expect.stringContaining("cannot be told"),
      standing: true,
    });
  });
});

describe("planUndo of a rollout its deployer left running (killed)", () => {
  const left = (): RolloutRecord => ({
    ...record([entry("a", "activating"), entry("b", "pending"), entry("c", "activating")]),
    state: "running",
  });
  const running = new Map([
    ["a", V3],
    // Still pending in the record, yet on the rollout's system (it ran V2 when surveyed): the
    // deployer activated it and was killed before the record said so.
    ["b", V3],
    // Its activation went back on its own (no confirmation came).
    ["c", V2],
  ]);

  it("judged abandoned: a host left mid-activation on the rollout's system goes back", () => {
    const steps = planUndo(left(), running, { abandoned: true });
    expect(steps.map((s) => [s.host, s.kind])).toEqual([
      ["a", "back"],
      ["b", "back"],
      ["c", "stays"],
    ]);
    // The one that went back on its own is told as what it is: left in flight, on another system.
    expect(steps[2]).toMatchObject({
      runs: V2,
      why: "rollout 0123456789ab stopped while it was activating it (its deployer was killed or interrupted before it recorded the outcome): it runs web-v2, not the web-v3 it gave",
    });
  });

  it("not judged abandoned: hosts mid-activation are left to their deployer", () => {
    const steps = planUndo(left(), running);
    expect(steps.map((s) => s.kind)).toEqual(["stays", "stays", "stays"]);
    expect(steps[0]).toMatchObject({
      why: "rollout 0123456789ab is activating it (its deployer is at work): it is left to it",
    });
  });

  it("ended by a second interrupt (its last word): a host left mid-activation on its system goes back", () => {
    const ended = { ...left(), state: "interrupted" as const };
    expect(planUndo(ended, running).map((s) => [s.host, s.kind])).toEqual([
      ["a", "back"],
      ["b", "stays"],
      ["c", "stays"],
    ]);
  });
});

describe("planUndo of a rollback of rollbacks", () => {
  it("says why a host stays once, naming the rollout that first left it, not wrapped in each", () => {
    const why = "it runs web-v2, not the web-v3 rollout 3333333333cc left on it: changed since";
    const force =
      " ('nixship rollback --rollout 3333333333cc --on a --force' sends it back all the same)";
    const wrapped = `rollout 2222222222bb (a rollback) left it alone (rollout 1111111111aa (a rollback) left it alone (${why}${force}))`;
    const r = { ...record([{ ...entry("a", "left"), message: wrapped }]), undoes: "2222222222bb" };
    expect(planUndo(r, new Map([["a", V2]]))).toEqual([
      {
        host: "a",
        kind: "stays",
        runs: V2,
        why: `rollout 0123456789ab (a rollback) left it alone, as rollout 1111111111aa did (${why})`,
      },
    ]);
  });

  it("says a deploy refused a host at its turn, and a rollback of it, as that deploy did", () => {
    const refusal =
      "it runs web-v1, not web-v2, which this activation expected: changed since; nothing was done";
    const deploy = record([{ ...entry("a", "refused"), message: refusal }]);
    const [step] = planUndo(deploy, new Map([["a", V1]]));
    const stays = step?.kind === "stays" ? step.why : null;
    expect(stays).toBe(`rollout 0123456789ab refused it at its turn (${refusal})`);
    const rollback = {
      ...record([{ ...entry("a", "left"), message: stays }]),
      id: "4444444444dd",
      undoes: "0123456789ab",
    };
    expect(planUndo(rollback, new Map([["a", V1]]))[0]).toMatchObject({
      why: `rollout 4444444444dd (a rollback) left it alone, as rollout 0123456789ab did (${refusal})`,
    });
  });
});

describe("a rollback's record of the hosts it does not send back", () => {
  it("leaves the rollout standing for a host it could not judge, and undone for the others", () => {
    const r = record([entry("a", "confirmed"), entry("b", "confirmed"), entry("c", "not-started")]);
    // a changed since; b unreachable now; c never reached by the rollout.
    const steps = planUndo(
      r,
      new Map<string, string | null>([
        ["a", V1],
        ["b", null],
        ["c", V2],
      ]),
    );
    const left = leftByUndo(steps);
    expect(left.map((h) => [h.host, h.state])).toEqual([
      ["a", "refused"],
      ["b", "not-started"],
      ["c", "left"],
    ]);
    const rollback = { ...record([], left), id: "fedcba987654", undoes: r.id };
    expect([...(undoneHosts([rollback]).get(r.id) ?? [])].sort()).toEqual(["a", "c"]);
  });
});

describe("rolloutAbandoned", () => {
  const at = (updatedAt: string, state: RolloutRecord["state"] = "running") => ({
    ...record([]),
    state,
    updatedAt,
  });
  const now = new Date("2026-11-26T10:30:00.000Z");

  it("a running or paused record unwritten for more than 15 heartbeats; never a finished one", () => {
    expect(ROLLOUT_ABANDONED_SECONDS).toBe(15 * ROLLOUT_HEARTBEAT_SECONDS);
    expect(rolloutAbandoned(at("2026-11-26T10:14:59.000Z"), now)).toBe(true);
    expect(rolloutAbandoned(at("2026-11-26T10:15:00.000Z"), now)).toBe(false);
    expect(rolloutAbandoned(at("2026-11-26T09:00:00.000Z", "failed"), now)).toBe(false);
    // A paused deployer writes its record every heartbeat too.
    expect(rolloutAbandoned(at("2026-11-26T09:00:00.000Z", "paused"), now)).toBe(true);
    expect(rolloutAbandoned(at("2026-11-26T10:15:00.000Z", "paused"), now)).toBe(false);
  });
});

describe("undoneHosts", () => {
  it("counts a rollback done with the hosts it sent back, found there or left, not with those it did not get to", () => {
    const rollback = {
      ...record([
        { ...entry("a", "confirmed", V3), system: V2 },
        { ...entry("b", "failed", V3), system: V2, phase: "connect" as const },
        { ...entry("c", "not-started", V3), system: V2 },
        { ...entry("d", "unreachable", V3), system: V2 },
        { ...entry("e", "up-to-date", V3), system: V2 },
        { ...entry("f", "rolled-back", V3), system: V2 },
      ]),
      id: "cccccccccccc",
      undoes: "0123456789ab",
      skipped: [
        { ...entry("g", "left", null), system: null },
        { ...entry("h", "refused", null), system: null },
      ],
    };
    expect([...(undoneHosts([rollback]).get("0123456789ab") ?? [])].sort()).toEqual([
      "a",
      "e",
      "g",
      "h",
    ]);
  });
});
