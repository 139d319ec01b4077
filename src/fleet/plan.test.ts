import { describe, expect, it } from "vitest";
import type { StorePath } from "../nix/store-path.js";
import type { Action } from "./action.js";
import {
  type ClosureInfo,
  connectionsOf,
  type HostState,
  type Pinning,
  type PlanTarget,
  planDeploy,
  unpinnedRequired,
} from "./plan.js";

const sp = (hashChar: string, name: string) =>
  `/nix/store/${hashChar.repeat(32)}-${name}` as StorePath;

const glibc = sp("g", "glibc");
const openssl = sp("s", "openssl");
const nginx1 = sp("n", "nginx-1.24");
const nginx2 = sp("m", "nginx-1.26");
const cfg1 = sp("c", "etc-v1");
const cfg2 = sp("d", "etc-v2");
const v1 = sp("1", "nixos-system-web-v1");
const v2 = sp("2", "nixos-system-web-v2");
const stranger = sp("x", "nixos-system-unknown");

const info = (path: StorePath, narSize: number, references: StorePath[]): ClosureInfo => ({
  path,
  narSize,
  references,
});

const INFOS = new Map(
  [
    info(glibc, 100, [glibc]),
    info(openssl, 50, [glibc]),
    info(nginx1, 20, [openssl, glibc]),
    info(nginx2, 25, [openssl, glibc]),
    info(cfg1, 1, []),
    info(cfg2, 1, []),
    info(v1, 5, [nginx1, glibc, cfg1]),
    info(v2, 5, [nginx2, glibc, cfg2]),
  ].map((i) => [i.path, i]),
);
const V2_CLOSURE = { paths: 5, bytes: 5 + 25 + 1 + 50 + 100 };

const running = (current: StorePath | undefined, generation?: number): HostState => ({
  kind: "reported",
  current,
  generation,
});

const plan = (action: Action, targets: PlanTarget[], pathInfos = INFOS) =>
  planDeploy({ action, targets, pathInfos });

describe("planDeploy", () => {
  it("counts only what the host lacks: the desired closure minus the current one", () => {
    const result = plan("switch", [{ host: "web1", desired: v2, state: running(v1, 41) }]);
    expect(result.hosts).toEqual([
      {
        host: "web1",
        action: "activate",
        current: v1,
        generation: 41,
        desired: v2,
        transfer: { paths: 3, bytes: 5 + 25 + 1 },
        transferBasis: "current-system",
        error: undefined,
      },
    ]);
    expect(result.changes).toBe(1);
    expect(result.totals).toEqual({ paths: 3, bytes: 31 });
  });

  it("counts exactly what the host's store lacks when it was asked", () => {
    const asked = (current: StorePath, missing: StorePath[]): HostState => ({
      kind: "reported",
      current,
      generation: 2,
      missing: new Set(missing),
    });
    const result = plan("switch", [
      // Rolled back from v2 to v1: v2's closure is all still in its store.
      { host: "back", desired: v2, state: asked(v1, []) },
      // Has nginx2 from some earlier system; lacks v2 and cfg2. nginx1 is outside v2's closure
      // (the hosts are asked about every desired closure at once) and does not count.
      { host: "partial", desired: v2, state: asked(v1, [v2, cfg2, nginx1]) },
    ]);
    expect(result.hosts.map((h) => [h.host, h.transfer, h.transferBasis])).toEqual([
      ["back", { paths: 0, bytes: 0 }, "store"],
      ["partial", { paths: 2, bytes: 5 + 1 }, "store"],
    ]);
    expect(result.totals).toEqual({ paths: 2, bytes: 6 });
    expect(result.distinct).toEqual({ paths: 2, bytes: 6 });
  });

  it("activates a host that runs its system when its secrets differ, and says so", () => {
    const holding = (secrets: string | undefined): HostState => ({
      kind: "reported",
      current: v2,
      generation: 3,
      secrets,
    });
    const result = plan("switch", [
      { host: "same", desired: v2, secrets: "aaa", state: holding("aaa") },
      { host: "rotated", desired: v2, secrets: "bbb", state: holding("aaa") },
      // The host cannot tell (agent, ssm): its secrets count as unchanged.
      { host: "silent", desired: v2, secrets: "bbb", state: holding(undefined) },
      // The deploy leaves secrets alone (the fleet has none).
      { host: "none", desired: v2, state: holding("aaa") },
    ]);
    expect(result.hosts.map((h) => [h.host, h.action, h.secretsChange])).toEqual([
      ["same", "skip", undefined],
      ["rotated", "activate", true],
      ["silent", "skip", undefined],
      ["none", "skip", undefined],
    ]);
    expect(result.hosts[1]?.transfer).toEqual({ paths: 0, bytes: 0 });
  });

  it("counts the whole closure when the current system is unknown", () => {
    const result = plan("switch", [
      { host: "fresh", desired: v2, state: running(undefined) },
      { host: "unasked", desired: v2, state: undefined },
      { host: "odd", desired: v2, state: running(stranger, 3) },
    ]);
    expect(result.hosts.map((h) => [h.action, h.transfer, h.transferBasis])).toEqual([
      ["activate", V2_CLOSURE, "whole-closure"],
      ["activate", V2_CLOSURE, "whole-closure"],
      ["activate", V2_CLOSURE, "current-system"],
    ]);
    expect(result.hosts[2]?.current).toBe(stranger);
  });

  it("uses a partly known current closure as far as it goes", () => {
    // v1's metadata is known but nginx1's is not: nginx1 itself is on the host, its
    // references (openssl) cannot be assumed.
    const partial = new Map(INFOS);
    partial.delete(nginx1);
    const result = plan("switch", [{ host: "web1", desired: v2, state: running(v1) }], partial);
    expect(result.hosts[0]?.transfer).toEqual({ paths: 4, bytes: 5 + 25 + 1 + 50 });
  });

  it("activates and bakes again a host whose system's bake never finished, where its wave bakes", () => {
    const unbaked = {
      rollout: "0123456789ab",
      why: "its bake was interrupted",
      before: v1,
      beforeGeneration: 3,
    };
    const bake = { seconds: 60, interval: 10, analysis: [] };
    const state: HostState = { kind: "reported", current: v2, generation: 4, unbaked };
    const result = plan("switch", [
      { host: "web1", desired: v2, state, bake },
      // Its fleet no longer bakes it (or a rollback deploys it): nothing to bake again.
      { host: "web2", desired: v2, state },
    ]);
    expect(result.hosts.map((h) => [h.action, h.unbaked, h.bake])).toEqual([
      ["activate", unbaked, bake],
      ["skip", undefined, undefined],
    ]);
    expect(result.waves.map((w) => w.hosts)).toEqual([["web1"]]);
  });

  it("skips hosts already running the desired system for switch and test", () => {
    for (const action of ["switch", "test"] as const) {
      const result = plan(action, [{ host: "web1", desired: v2, state: running(v2, 7) }]);
      expect(result.hosts[0]).toMatchObject({ action: "skip", transfer: { paths: 0, bytes: 0 } });
      expect(result.changes).toBe(0);
      expect(result.counts).toEqual({ activate: 0, skip: 1, unreachable: 0 });
    }
  });

  it("still runs boot and dry-activate on a host running the desired system", () => {
    const boot = plan("boot", [{ host: "web1", desired: v2, state: running(v2) }]);
    expect(boot.hosts[0]).toMatchObject({ action: "activate", transfer: { paths: 0, bytes: 0 } });
    expect(boot.changes).toBe(1);
    const dry = plan("dry-activate", [{ host: "web1", desired: v2, state: running(v1) }]);
    expect(dry.hosts[0]?.action).toBe("activate");
    expect(dry.changes).toBe(0);
  });

  it("marks unreachable hosts and moves nothing to them", () => {
    const result = plan("switch", [
      { host: "web1", desired: v2, state: { kind: "unreachable", error: "connection refused" } },
    ]);
    expect(result.hosts[0]).toEqual({
      host: "web1",
      action: "unreachable",
      current: undefined,
      generation: undefined,
      desired: v2,
      transfer: { paths: 0, bytes: 0 },
      transferBasis: "none",
      error: "connection refused",
    });
    expect(result.changes).toBe(0);
    expect(result.totals).toEqual({ paths: 0, bytes: 0 });
  });

  it("sums transfers over hosts and counts each path once in distinct", () => {
    const result = plan("switch", [
      { host: "web1", desired: v2, state: running(v1) },
      { host: "web2", desired: v2, state: running(undefined) },
      { host: "web3", desired: v1, state: running(undefined) },
      { host: "web4", desired: v2, state: running(v2) },
      { host: "web5", desired: v2, state: { kind: "unreachable", error: "timeout" } },
    ]);
    expect(result.hosts.map((h) => h.host)).toEqual(["web1", "web2", "web3", "web4", "web5"]);
    expect(result.counts).toEqual({ activate: 3, skip: 1, unreachable: 1 });
    expect(result.changes).toBe(3);
    const v1Closure = { paths: 5, bytes: 5 + 20 + 1 + 50 + 100 };
    expect(result.totals).toEqual({
      paths: 3 + V2_CLOSURE.paths + v1Closure.paths,
      bytes: 31 + V2_CLOSURE.bytes + v1Closure.bytes,
    });
    // Every path of both closures is needed by someone: glibc, openssl, nginx1/2, cfg1/2, v1, v2.
    expect(result.distinct).toEqual({ paths: 8, bytes: 100 + 50 + 20 + 25 + 1 + 1 + 5 + 5 });
  });

  it("plans nothing for no hosts", () => {
    const result = plan("switch", []);
    expect(result).toEqual({
      action: "switch",
      hosts: [],
      counts: { activate: 0, skip: 0, unreachable: 0 },
      changes: 0,
      totals: { paths: 0, bytes: 0 },
      distinct: { paths: 0, bytes: 0 },
      waves: [],
    });
  });

  it("refuses a desired closure the metadata does not cover", () => {
    const missingRef = new Map(INFOS);
    missingRef.delete(openssl);
    expect(() =>
      plan("switch", [{ host: "web1", desired: v2, state: undefined }], missingRef),
    ).toThrow(
      expect.objectContaining({
        code: "incomplete-closure",
        message: `no metadata for ${openssl}, which it references, in the closure of ${v2} (the system of web1)`,
      }),
    );
    expect(() => plan("switch", [{ host: "web1", desired: stranger, state: undefined }])).toThrow(
      `no metadata for ${stranger} in the closure`,
    );
  });

  it("refuses a host planned twice", () => {
    const target = { host: "web1", desired: v2, state: undefined };
    expect(() => plan("switch", [target, target])).toThrow(/host "web1" is planned twice/);
  });
});

describe("unpinnedRequired", () => {
  const pinnedBy = (pinning: Pinning | undefined): HostState => ({
    ...running(v1, 1),
    ...(pinning === undefined ? {} : { pinning }),
  });
  it("names each host to activate that must be pinned and is not, with why", () => {
    const result = plan("switch", [
      {
        host: "a",
        desired: v2,
        state: pinnedBy({ pinned: true, by: "nixship-activate", keys: ["c-1"] }),
      },
      { host: "b", desired: v2, state: pinnedBy({ pinned: false, activator: true }) },
      { host: "c", desired: v2, state: pinnedBy({ pinned: false, activator: false }) },
      { host: "d", desired: v2, state: pinnedBy(undefined) },
      { host: "e", desired: v2, state: pinnedBy({ pinned: true, by: "agent" }) },
      { host: "f", desired: v1, state: pinnedBy({ pinned: false, activator: false }) },
      { host: "g", desired: v2, state: pinnedBy({ pinned: false, activator: false }) },
    ]);
    expect(result.hosts[0]?.pinning).toEqual({
      pinned: true,
      by: "nixship-activate",
      keys: ["c-1"],
    });
    // f runs its system already (skipped); g's policy does not require pinning.
    expect(unpinnedRequired(result, (host) => host !== "g")).toEqual([
      {
        host: "b",
        why: "it has nixship-activate but is reached by the piped script (set its sudo)",
      },
      {
        host: "c",
        why: "it takes the deployer's trust (no nixship-activate: enable nixosModules.host)",
      },
      { host: "d", why: "it did not say whose trust it takes" },
    ]);
  });
});

describe("reboots of hosts whose booted system is unknown", () => {
  it("--reboot auto does not reboot a host that says nothing of what it booted, and says so", () => {
    const unknown = plan("switch", [
      { host: "web1", desired: v2, state: running(v1, 41), reboot: "auto" },
    ]).hosts[0];
    expect(unknown).toMatchObject({ action: "activate", bootUnknown: true });
    expect(unknown).not.toHaveProperty("rebooting");
    // --reboot always reboots it; never says nothing.
    const always = plan("switch", [
      { host: "web1", desired: v2, state: running(v1, 41), reboot: "always" },
    ]).hosts[0];
    expect(always).toMatchObject({ rebooting: true });
    expect(always).not.toHaveProperty("bootUnknown");
    const never = plan("switch", [{ host: "web1", desired: v2, state: running(v1, 41) }]).hosts[0];
    expect(never).not.toHaveProperty("bootUnknown");
  });
});

describe("a boot left pending", () => {
  const pendingInto = (path: StorePath, booted: boolean): HostState => ({
    kind: "reported",
    current: booted ? path : v1,
    generation: 42,
    pendingBoot: { token: "t1", path, since: 1700, generation: 42, previous: v1, booted },
  });

  it("a host that booted the pending system it is to run is judged, never up to date", () => {
    const host = plan("switch", [{ host: "web1", desired: v2, state: pendingInto(v2, true) }])
      .hosts[0];
    expect(host).toMatchObject({
      action: "activate",
      pendingBoot: { decision: "judge", token: "t1", path: v2, previous: v1 },
      transfer: { paths: 0, bytes: 0 },
    });
    expect(host).not.toHaveProperty("rebooting");
    // Without the pending boot, the same host is up to date.
    expect(
      plan("switch", [{ host: "web1", desired: v2, state: running(v2, 42) }]).hosts[0],
    ).toMatchObject({ action: "skip" });
  });

  it("an activation replaces a pending boot of another system, or one the host did not boot", () => {
    const other = plan("switch", [{ host: "web1", desired: v1, state: pendingInto(v2, true) }]);
    expect(other.hosts[0]).toMatchObject({
      action: "activate",
      pendingBoot: { decision: "replace" },
    });
    const fellBack = plan("switch", [{ host: "web1", desired: v2, state: pendingInto(v2, false) }]);
    expect(fellBack.hosts[0]).toMatchObject({
      action: "activate",
      pendingBoot: { decision: "replace" },
    });
    // test makes no new generation, so it cannot judge a boot: its activation replaces it.
    const test = plan("test", [{ host: "web1", desired: v2, state: pendingInto(v2, true) }]);
    expect(test.hosts[0]).toMatchObject({ pendingBoot: { decision: "replace" } });
    // A dry run changes nothing, and leaves the pending boot alone.
    const dry = plan("dry-activate", [{ host: "web1", desired: v2, state: pendingInto(v2, true) }]);
    expect(dry.hosts[0]).not.toHaveProperty("pendingBoot");
  });
});

describe("a boot set for later (deploy --action boot) and left pending", () => {
  // The host runs v1 and boots v2 next: a boot activation's pending boot, as its status says.
  const bootsNext = (
    rebooted: boolean | undefined,
    booted: StorePath = v1,
  ): Extract<HostState, { kind: "reported" }> => ({
    kind: "reported",
    current: booted,
    generation: 42,
    pendingBoot: {
      token: "b1",
      path: v2,
      since: 1700,
      generation: 42,
      previous: v1,
      booted: booted === v2,
      ...(rebooted === undefined ? {} : { rebooted }),
    },
  });
  const planned = (action: Action, desired: StorePath, state: HostState) =>
    plan(action, [{ host: "web1", desired, state }]).hosts[0];

  it("not rebooted: the plan names it, and the host switches to the system it is to run", () => {
    const host = planned("switch", v2, bootsNext(false));
    expect(host).toMatchObject({
      action: "activate",
      current: v1,
      pendingBoot: { decision: "replace", reason: "not-rebooted", path: v2, rebooted: false },
    });
    // --reboot auto reboots it into it when its kernel changes, as any host that switches.
    const rebooted = plan("switch", [
      {
        host: "web1",
        desired: v2,
        reboot: "auto",
        state: { ...bootsNext(false), rebootFor: ["kernel"] },
      },
    ]).hosts[0];
    expect(rebooted).toMatchObject({ rebooting: true, pendingBoot: { reason: "not-rebooted" } });
    // Set to boot again: not rebooted either.
    expect(planned("boot", v2, bootsNext(false))?.pendingBoot).toMatchObject({
      decision: "replace",
      reason: "not-rebooted",
    });
  });

  it("says why a pending boot is replaced rather than judged", () => {
    const reason = (action: Action, desired: StorePath, state: HostState) =>
      planned(action, desired, state)?.pendingBoot?.reason;
    // Rebooted, but into another system (the boot loader fell back, or someone picked one).
    expect(reason("switch", v2, bootsNext(true))).toBe("booted-other");
    // An older script records no boot: whether it rebooted is unknown.
    expect(reason("switch", v2, bootsNext(undefined))).toBe("not-booted");
    // Booted it, but the deploy gives it another system.
    expect(reason("switch", v1, bootsNext(true, v2))).toBe("other-system");
    // Booted it, but runs another system now (a test activation since).
    const since: HostState = { ...bootsNext(true, v2), current: v1 };
    expect(reason("switch", v2, since)).toBe("not-running");
    // Booted it, but the deploy's action is not a switch.
    expect(reason("boot", v2, bootsNext(true, v2))).toBe("action");
    // Booted it, runs it, and is to run it: judged, no reason to replace it.
    expect(planned("switch", v2, bootsNext(true, v2))?.pendingBoot).toMatchObject({
      decision: "judge",
      rebooted: true,
    });
    expect(reason("switch", v2, bootsNext(true, v2))).toBeUndefined();
  });
});

describe("the cost of a bound on held ssh connections", () => {
  it("counts a login again for each host that activates beyond the bound", () => {
    const targets = Array.from({ length: 5 }, (_, i) => ({
      host: `web${i}`,
      desired: v2,
      state: running(i < 4 ? v1 : v2, 1),
    }));
    const p = plan("switch", targets);
    // 4 activate, 1 is up to date; 5 asked.
    expect(connectionsOf(p, 2)).toEqual({ hosts: 5, bound: 2, logins: 5 + 4 + 2, again: 2 });
    expect(connectionsOf(p, 5)).toBeUndefined();
  });
});
