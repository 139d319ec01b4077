// The rollout engine's logic, over a scripted Delivery: which hosts run in which wave, when
// the rollout stops, and what each host's result says. (The real ssh delivery is exercised
// end to end in test/deploy.test.ts.)
import { describe, expect, it } from "vitest";
import {
  type Delivery,
  type DeployOutcome,
  type DeployRequest,
  deployEachHost,
  type WaveContext,
} from "../delivery/delivery.js";
import type { FleetHost } from "../fleet/fleet.js";
import type { DeployPlan, HostPlan } from "../fleet/plan.js";
import type { StorePath } from "../nix/store-path.js";
import type { DeployEvent } from "./events.js";
import { rolloutSucceeded, runRollout } from "./run-rollout.js";

const PATH = "/nix/store/00000000000000000000000000000000-system" as StorePath;

function host(name: string): FleetHost {
  return {
    name,
    tags: [],
    address: "10.0.0.1",
    delivery: "ssh",
    sshHost: undefined,
    system: { kind: "store-path", path: PATH },
  };
}

function plan(actions: Record<string, HostPlan["action"]>): DeployPlan {
  const hosts = Object.entries(actions).map(
    ([name, action]): HostPlan => ({
      host: name,
      action,
      current: undefined,
      generation: undefined,
      desired: PATH,
      transfer: { paths: 0, bytes: 0 },
      error: action === "unreachable" ? "ssh: connection refused" : undefined,
    }),
  );
  return {
    action: "switch",
    hosts,
    counts: { activate: 0, skip: 0, unreachable: 0 },
    changes: 0,
    totals: { paths: 0, bytes: 0 },
    distinct: { paths: 0, bytes: 0 },
  };
}

/** A delivery whose hosts succeed or fail as told, recording which ran together. */
function scripted(failing: ReadonlySet<string>) {
  const started: string[] = [];
  let running = 0;
  let maxRunning = 0;
  const delivery: Delivery = {
    status: async () => ({ reachable: false, error: "unused" }),
    rollbackHosts: async () => [],
    deployWave: (wave, emit) =>
      deployEachHost(wave, emit, async (h): Promise<DeployOutcome> => {
        started.push(h.name);
        running++;
        maxRunning = Math.max(maxRunning, running);
        emit({ type: "phase", host: h.name, phase: "switch" });
        await new Promise((resolve) => setTimeout(resolve, 5));
        running--;
        return failing.has(h.name)
          ? { status: "failed", phase: "health", message: "unhealthy", rolledBack: true }
          : { status: "activated", generation: 2, previous: undefined };
      }),
  };
  return { delivery, started, maxRunning: () => maxRunning };
}

const request = (): DeployRequest => ({
  path: PATH,
  action: "switch",
  substituters: [],
  trustedKeys: [],
  commandChecks: [],
  httpChecks: [],
  confirmTimeout: 0,
});

async function roll(
  names: string[],
  failing: string[],
  policy: { parallel: number; maxFailures: number; canary: number },
  actions: Record<string, HostPlan["action"]> = {},
) {
  const s = scripted(new Set(failing));
  const events: DeployEvent[] = [];
  const results = await runRollout({
    plan: plan(Object.fromEntries(names.map((n) => [n, actions[n] ?? "activate"]))),
    hosts: names.map(host),
    policy,
    delivery: s.delivery,
    request,
    emit: (e) => events.push(e),
  });
  const status = Object.fromEntries(
    results.map((r) => [
      r.host,
      r.outcome.status === "skipped" ? r.outcome.reason : r.outcome.status,
    ]),
  );
  return { ...s, events, results, status };
}

describe("runRollout", () => {
  it("runs the canary alone, then waves of at most --parallel", async () => {
    const r = await roll(["a", "b", "c", "d", "e"], [], { parallel: 2, maxFailures: 0, canary: 1 });
    const waves = r.events.flatMap((e) => (e.type === "wave-start" ? [[e.kind, ...e.hosts]] : []));
    expect(waves).toEqual([
      ["canary", "a"],
      ["main", "b", "c"],
      ["main", "d", "e"],
    ]);
    expect(r.maxRunning()).toBeLessThanOrEqual(2);
    expect(rolloutSucceeded(r.results)).toBe(true);
  });

  it("stops after a failed canary: nothing else starts", async () => {
    const r = await roll(["a", "b", "c"], ["a"], { parallel: 10, maxFailures: 5, canary: 1 });
    expect(r.started).toEqual(["a"]);
    expect(r.status).toEqual({ a: "failed", b: "not-started", c: "not-started" });
    const stopped = r.events.find((e) => e.type === "stopped");
    expect(stopped).toMatchObject({ reason: "the canary failed", notStarted: ["b", "c"] });
    expect(rolloutSucceeded(r.results)).toBe(false);
  });

  it("starts no new wave once failures exceed --max-failures", async () => {
    const r = await roll(["a", "b", "c", "d", "e"], ["b", "c"], {
      parallel: 2,
      maxFailures: 1,
      canary: 1,
    });
    expect(r.started).toEqual(["a", "b", "c"]);
    expect(r.status).toMatchObject({
      b: "failed",
      c: "failed",
      d: "not-started",
      e: "not-started",
    });
  });

  it("tolerates failures within the budget", async () => {
    const r = await roll(["a", "b", "c", "d"], ["b"], { parallel: 1, maxFailures: 1, canary: 0 });
    expect(r.started).toEqual(["a", "b", "c", "d"]);
    expect(rolloutSucceeded(r.results)).toBe(false);
  });

  it("skips up-to-date hosts and reports unreachable ones as failed, without deploying them", async () => {
    const r = await roll(
      ["a", "b", "c"],
      [],
      { parallel: 5, maxFailures: 0, canary: 1 },
      { a: "skip", b: "unreachable" },
    );
    expect(r.started).toEqual(["c"]);
    expect(r.status).toEqual({ a: "up-to-date", b: "failed", c: "activated" });
    const b = r.results.find((x) => x.host === "b");
    expect(b?.outcome).toMatchObject({ phase: "connect", message: "ssh: connection refused" });
  });

  it("turns a delivery that throws into that host's failure, not the rollout's", async () => {
    const events: DeployEvent[] = [];
    const delivery: Delivery = {
      status: async () => ({ reachable: false, error: "" }),
      rollbackHosts: async () => [],
      deployWave: (wave, emit) =>
        deployEachHost(wave, emit, async () => {
          throw new Error("spawn ssh ENOENT");
        }),
    };
    const results = await runRollout({
      plan: plan({ a: "activate" }),
      hosts: [host("a")],
      policy: { parallel: 1, maxFailures: 0, canary: 0 },
      delivery,
      request,
      emit: (e) => events.push(e),
    });
    expect(results[0]?.outcome).toMatchObject({ status: "failed", message: "spawn ssh ENOENT" });
  });

  it("tells the delivery each wave's kind, parallelism and remaining failure budget", async () => {
    const contexts: WaveContext[] = [];
    const delivery: Delivery = {
      status: async () => ({ reachable: false, error: "" }),
      rollbackHosts: async () => [],
      // A wave-level delivery (like ssm or agent) that reports no per-host "done" events.
      deployWave: async (wave, _emit, context) => {
        contexts.push(context);
        return wave.map(
          ({ host: h }): DeployOutcome =>
            h.name === "b"
              ? { status: "failed", phase: "health", message: "unhealthy", rolledBack: true }
              : { status: "activated", generation: 2, previous: undefined },
        );
      },
    };
    const events: DeployEvent[] = [];
    const results = await runRollout({
      plan: plan({ a: "activate", b: "activate", c: "activate", d: "activate" }),
      hosts: ["a", "b", "c", "d"].map(host),
      policy: { parallel: 2, maxFailures: 1, canary: 1 },
      delivery,
      request,
      emit: (e) => events.push(e),
    });
    expect(contexts).toEqual([
      { index: 0, kind: "canary", parallel: 2, failureBudget: 1 },
      { index: 1, kind: "main", parallel: 2, failureBudget: 1 },
      { index: 2, kind: "main", parallel: 2, failureBudget: 0 },
    ]);
    expect(results.map((r) => r.outcome.status)).toEqual([
      "activated",
      "failed",
      "activated",
      "activated",
    ]);
    // The engine reports each host once, even when the delivery sends no "done" event.
    const done = events.flatMap((e) => (e.type === "host-done" ? [e.result.host] : []));
    expect(done.sort()).toEqual(["a", "b", "c", "d"]);
  });

  it("fails every host of a wave the delivery could not attempt", async () => {
    const delivery: Delivery = {
      status: async () => ({ reachable: false, error: "" }),
      rollbackHosts: async () => [],
      deployWave: async () => {
        throw new Error("SendCommand: AccessDenied");
      },
    };
    const results = await runRollout({
      plan: plan({ a: "activate", b: "activate" }),
      hosts: [host("a"), host("b")],
      policy: { parallel: 2, maxFailures: 5, canary: 0 },
      delivery,
      request,
      emit: () => {},
    });
    expect(results.map((r) => r.outcome)).toEqual([
      expect.objectContaining({ status: "failed", message: "SendCommand: AccessDenied" }),
      expect.objectContaining({ status: "failed", message: "SendCommand: AccessDenied" }),
    ]);
  });
});
