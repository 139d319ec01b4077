// The rollout engine's logic, over a scripted Delivery: which hosts run in which wave, when
// the rollout stops, and what each host's result says. (The real ssh delivery is exercised
// end to end in test/deploy.test.ts.)
import { describe, expect, it } from "vitest";
import {
  type Delivery,
  type DeliveryEvent,
  type DeployOutcome,
  type DeployRequest,
  deployEachHost,
  type WaveContext,
} from "../delivery/delivery.js";
import { type FleetHost, POLICY_DEFAULTS } from "../fleet/fleet.js";
import type { DeployPlan, HostPlan } from "../fleet/plan.js";
import { planWaves } from "../fleet/rollout.js";
import { activateScript, DEFAULT_ACTIVATION_TIMEOUT } from "../host/activation.js";
import type { StorePath } from "../nix/store-path.js";
import type { DeployEvent } from "./events.js";
import { HOST_LOG_LINES } from "./host-log-cap.js";
import { type RolloutInput, rolloutSucceeded, runRollout } from "./run-rollout.js";

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

/** A plan of `actions`, its waves shaped by `rollout` as the planner shapes them. */
function plan(
  actions: Record<string, HostPlan["action"]>,
  rollout: { parallel: number; canary: number } = { parallel: 1, canary: 0 },
): DeployPlan {
  const hosts = Object.entries(actions).map(
    ([name, action]): HostPlan => ({
      host: name,
      action,
      current: undefined,
      generation: undefined,
      desired: PATH,
      transfer: { paths: 0, bytes: 0 },
      transferBasis: "whole-closure",
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
    waves: planWaves(
      hosts.filter((h) => h.action === "activate"),
      rollout,
    ).map((w) => ({ wave: w.index + 1, kind: w.kind, hosts: w.hosts.map((h) => h.host) })),
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
  confirmTimeout: 30,
  activationTimeout: POLICY_DEFAULTS.activationTimeout,
});

/** One host, "a", rolled out alone through `delivery`: its wave of one, no canary, no failure allowed. */
function rollOne(
  delivery: Delivery,
  emit: (e: DeployEvent) => void,
  extra: Pick<RolloutInput, "signal" | "abortGrace"> = {},
) {
  return runRollout({
    plan: plan({ a: "activate" }, { parallel: 1, canary: 0 }),
    hosts: [host("a")],
    policy: { maxFailures: 0 },
    delivery,
    requests: { get: request },
    emit,
    ...extra,
  });
}

async function roll(
  names: string[],
  failing: string[],
  policy: { parallel: number; maxFailures: number; canary: number },
  actions: Record<string, HostPlan["action"]> = {},
  extra: Pick<RolloutInput, "skipUnreachable" | "signal"> = {},
) {
  const s = scripted(new Set(failing));
  const events: DeployEvent[] = [];
  const results = await runRollout({
    plan: plan(Object.fromEntries(names.map((n) => [n, actions[n] ?? "activate"])), policy),
    hosts: names.map(host),
    policy,
    delivery: s.delivery,
    requests: { get: request },
    emit: (e) => events.push(e),
    ...extra,
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
    const waves = r.events.flatMap((e) =>
      e.type === "wave-start" ? [[e.wave, e.kind, ...e.hosts]] : [],
    );
    // Numbered from 1 in the events (--json) as in the text.
    expect(waves).toEqual([
      [1, "canary", "a"],
      [2, "main", "b", "c"],
      [3, "main", "d", "e"],
    ]);
    expect(r.maxRunning()).toBeLessThanOrEqual(2);
    expect(rolloutSucceeded(r.results)).toBe(true);
  });

  it("gives each host's seconds to a tenth, as --json and the record show them", async () => {
    const r = await roll(["a", "b"], ["b"], { parallel: 2, maxFailures: 1, canary: 0 });
    expect(r.results).toHaveLength(2);
    for (const result of r.results) {
      expect(Number.isInteger(Math.round(result.seconds * 10 * 1e6) / 1e6)).toBe(true);
    }
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
      { parallel: 5, maxFailures: 1, canary: 1 },
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
    const results = await rollOne(delivery, (e) => events.push(e));
    expect(results[0]?.outcome).toMatchObject({ status: "failed", message: "spawn ssh ENOENT" });
  });

  it("carries a delivery's later word on a host it reported into the result", async () => {
    const events: DeployEvent[] = [];
    const failed = { status: "failed", phase: "health", rolledBack: true } as const;
    const delivery: Delivery = {
      status: async () => ({ reachable: false, error: "" }),
      rollbackHosts: async () => [],
      // An agent wave: the host's failure is told at once, what became of it once the wave ends.
      deployWave: async (_wave, emit) => {
        emit({ type: "done", host: "a", outcome: { ...failed, message: "unhealthy" } });
        return [{ ...failed, message: "unhealthy; it applied rollback release 3" }];
      },
    };
    const results = await rollOne(delivery, (e) => events.push(e));
    expect(results[0]?.outcome).toMatchObject({
      status: "failed",
      message: "unhealthy; it applied rollback release 3",
    });
    // The host was reported once, as it ended.
    expect(events.filter((e) => e.type === "host-done")).toHaveLength(1);
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
      plan: plan(
        { a: "activate", b: "activate", c: "activate", d: "activate" },
        { parallel: 2, canary: 1 },
      ),
      hosts: ["a", "b", "c", "d"].map(host),
      policy: { maxFailures: 1 },
      delivery,
      requests: { get: request },
      emit: (e) => events.push(e),
    });
    expect(contexts).toEqual([
      { index: 0, kind: "canary", parallel: 1, failureBudget: 1 },
      { index: 1, kind: "main", parallel: 2, failureBudget: 1 },
      { index: 2, kind: "main", parallel: 1, failureBudget: 0 },
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
      plan: plan({ a: "activate", b: "activate" }, { parallel: 2, canary: 0 }),
      hosts: [host("a"), host("b")],
      policy: { maxFailures: 5 },
      delivery,
      requests: { get: request },
      emit: () => {},
    });
    expect(results.map((r) => r.outcome)).toEqual([
      expect.objectContaining({ status: "failed", message: "SendCommand: AccessDenied" }),
      expect.objectContaining({ status: "failed", message: "SendCommand: AccessDenied" }),
    ]);
  });
});

/** The events of one type, as the engine emitted them. */
function ofType<T extends DeployEvent["type"]>(events: readonly DeployEvent[], type: T) {
  return events.filter((e): e is Extract<DeployEvent, { type: T }> => e.type === type);
}

describe("runRollout: unreachable hosts", () => {
  it("counts them towards --max-failures from the start: under 0, no wave starts", async () => {
    const r = await roll(
      ["a", "b", "c"],
      [],
      { parallel: 5, maxFailures: 0, canary: 1 },
      { b: "unreachable" },
    );
    expect(r.started).toEqual([]);
    expect(r.status).toEqual({ a: "not-started", b: "failed", c: "not-started" });
    expect(ofType(r.events, "wave-start")).toEqual([]);
    expect(ofType(r.events, "stopped")).toEqual([
      {
        type: "stopped",
        reason: "1 host(s) unreachable, more than --max-failures 0",
        notStarted: ["a", "c"],
      },
    ]);
    expect(rolloutSucceeded(r.results)).toBe(false);
  });

  it("under --max-failures 1, starts with a budget of 0 and stops at the next failure", async () => {
    const contexts: WaveContext[] = [];
    const s = scripted(new Set(["c"]));
    const events: DeployEvent[] = [];
    const results = await runRollout({
      plan: plan(
        { a: "unreachable", b: "activate", c: "activate", d: "activate" },
        { parallel: 1, canary: 0 },
      ),
      hosts: ["a", "b", "c", "d"].map(host),
      policy: { maxFailures: 1 },
      delivery: {
        ...s.delivery,
        deployWave: (wave, emit, context) => {
          contexts.push(context);
          return s.delivery.deployWave(wave, emit, context);
        },
      },
      requests: { get: request },
      emit: (e) => events.push(e),
    });
    expect(s.started).toEqual(["b", "c"]);
    expect(contexts.map((c) => c.failureBudget)).toEqual([0, 0]);
    expect(results.map((x) => [x.host, x.outcome.status])).toEqual([
      ["a", "failed"],
      ["b", "activated"],
      ["c", "failed"],
      ["d", "skipped"],
    ]);
    expect(ofType(events, "stopped")[0]).toMatchObject({
      reason: "2 host(s) failed (1 of them unreachable), more than --max-failures 1",
      notStarted: ["d"],
    });
  });

  it("--skip-unreachable lists them as skipped, with why, and does not count them", async () => {
    const r = await roll(
      ["a", "b", "c"],
      [],
      { parallel: 5, maxFailures: 0, canary: 1 },
      { b: "unreachable" },
      { skipUnreachable: true },
    );
    expect(r.started).toEqual(["a", "c"]);
    expect(r.status).toEqual({ a: "activated", b: "unreachable", c: "activated" });
    expect(r.results.find((x) => x.host === "b")?.outcome).toEqual({
      status: "skipped",
      reason: "unreachable",
      message: "ssh: connection refused",
    });
    expect(ofType(r.events, "host-done").map((e) => e.result.host)).toContain("b");
    expect(ofType(r.events, "stopped")).toEqual([]);
    expect(rolloutSucceeded(r.results)).toBe(true);
  });
});

describe("runRollout: interrupts", () => {
  const INTERRUPT = "interrupted (SIGINT)";

  it("starts nothing once aborted before the first wave", async () => {
    const controller = new AbortController();
    controller.abort(INTERRUPT);
    const r = await roll(
      ["a", "b", "c"],
      [],
      { parallel: 2, maxFailures: 0, canary: 1 },
      { a: "skip" },
      { signal: controller.signal },
    );
    expect(r.started).toEqual([]);
    expect(r.status).toEqual({ a: "up-to-date", b: "not-started", c: "not-started" });
    expect(ofType(r.events, "wave-start")).toEqual([]);
    expect(ofType(r.events, "stopped")).toEqual([
      { type: "stopped", reason: INTERRUPT, notStarted: ["b", "c"] },
    ]);
  });

  it("aborted during a wave: the signal reaches the delivery, no further wave starts", async () => {
    const controller = new AbortController();
    const contexts: WaveContext[] = [];
    const delivery: Delivery = {
      status: async () => ({ reachable: false, error: "unused" }),
      rollbackHosts: async () => [],
      // Hosts that switch, then go back to their previous system when the signal aborts.
      deployWave: (wave, emit, context) => {
        contexts.push(context);
        for (const { host: h } of wave) emit({ type: "phase", host: h.name, phase: "switch" });
        const aborted = new Promise<void>((resolve) =>
          context.signal?.addEventListener("abort", () => resolve(), { once: true }),
        );
        controller.abort(INTERRUPT);
        return aborted.then(() =>
          wave.map(
            (): DeployOutcome => ({
              status: "failed",
              phase: "switch",
              message: "aborted: the deploy was interrupted",
              rolledBack: true,
            }),
          ),
        );
      },
    };
    const events: DeployEvent[] = [];
    const results = await runRollout({
      plan: plan(
        { a: "activate", b: "activate", c: "activate", d: "activate" },
        { parallel: 2, canary: 0 },
      ),
      hosts: ["a", "b", "c", "d"].map(host),
      policy: { maxFailures: 5 },
      delivery,
      requests: { get: request },
      emit: (e) => events.push(e),
      signal: controller.signal,
    });
    expect(contexts).toHaveLength(1);
    expect(contexts[0]?.signal).toBe(controller.signal);
    expect(results.map((x) => [x.host, x.outcome])).toEqual([
      ["a", expect.objectContaining({ status: "failed", rolledBack: true })],
      ["b", expect.objectContaining({ status: "failed", rolledBack: true })],
      ["c", { status: "skipped", reason: "not-started" }],
      ["d", { status: "skipped", reason: "not-started" }],
    ]);
    expect(ofType(events, "stopped")).toEqual([
      { type: "stopped", reason: INTERRUPT, notStarted: ["c", "d"] },
    ]);
    expect(rolloutSucceeded(results)).toBe(false);
  });

  it("says it stopped even when the interrupted wave was the last", async () => {
    const controller = new AbortController();
    const delivery: Delivery = {
      status: async () => ({ reachable: false, error: "unused" }),
      rollbackHosts: async () => [],
      deployWave: async (wave) => {
        controller.abort(INTERRUPT);
        return wave.map(
          (): DeployOutcome => ({ status: "activated", generation: 3, previous: undefined }),
        );
      },
    };
    const events: DeployEvent[] = [];
    const results = await rollOne(delivery, (e) => events.push(e), { signal: controller.signal });
    expect(results[0]?.outcome.status).toBe("activated");
    expect(ofType(events, "stopped")).toEqual([
      { type: "stopped", reason: INTERRUPT, notStarted: [] },
    ]);
  });

  it("cuts off a delivery that has not resolved a grace after the abort: the host is still settling", async () => {
    const controller = new AbortController();
    let late: ((e: DeliveryEvent) => void) | undefined;
    const delivery: Delivery = {
      status: async () => ({ reachable: false, error: "unused" }),
      rollbackHosts: async () => [],
      // Ignores the signal and never resolves.
      deployWave: (wave, emit) => {
        late = emit;
        emit({ type: "phase", host: "a", phase: "switch" });
        emit({
          type: "done",
          host: "b",
          outcome: { status: "activated", generation: 4, previous: undefined },
        });
        expect(wave.map((w) => w.host.name)).toEqual(["a", "b"]);
        controller.abort(INTERRUPT);
        return new Promise<DeployOutcome[]>(() => {});
      },
    };
    const events: DeployEvent[] = [];
    const results = await runRollout({
      plan: plan({ a: "activate", b: "activate", c: "activate" }, { parallel: 2, canary: 0 }),
      hosts: ["a", "b", "c"].map(host),
      policy: { maxFailures: 0 },
      delivery,
      requests: { get: request },
      emit: (e) => events.push(e),
      signal: controller.signal,
      abortGrace: 20,
    });
    const a = results.find((x) => x.host === "a")?.outcome;
    expect(a).toMatchObject({
      status: "failed",
      phase: "switch",
      rolledBack: false,
      settling: true,
    });
    expect(a?.status === "failed" && a.message).toMatch(/still settling/);
    expect(a?.status === "failed" && a.message).toContain(
      "unless its activation is confirmed, it rolls itself back when its confirmation window (30s) closes",
    );
    // What the delivery reported before the cut-off stands.
    expect(results.find((x) => x.host === "b")?.outcome.status).toBe("activated");
    expect(results.find((x) => x.host === "c")?.outcome).toEqual({
      status: "skipped",
      reason: "not-started",
    });
    expect(ofType(events, "stopped")).toMatchObject([{ reason: INTERRUPT, notStarted: ["c"] }]);
    // Whatever the delivery says after the cut-off comes after the summary: it is dropped.
    const before = events.length;
    late?.({
      type: "done",
      host: "a",
      outcome: { status: "activated", generation: 5, previous: undefined },
    });
    late?.({ type: "log", host: "a", line: "late" });
    expect(events).toHaveLength(before);
  });
});

describe("a host's output", () => {
  it("is passed on up to HOST_LOG_LINES lines per wave, then one line says how much more there was", async () => {
    const delivery: Delivery = {
      status: async () => ({ reachable: false, error: "unused" }),
      rollbackHosts: async () => [],
      deployWave: (wave, emit) =>
        deployEachHost(wave, emit, async (h): Promise<DeployOutcome> => {
          for (let i = 0; i < HOST_LOG_LINES + 500; i++) {
            emit({ type: "log", host: h.name, line: `line ${i}` });
          }
          return { status: "activated", generation: 2, previous: undefined };
        }),
    };
    const events: DeployEvent[] = [];
    await rollOne(delivery, (e) => events.push(e));
    const lines = ofType(events, "host-log").map((e) => e.line);
    expect(lines).toHaveLength(HOST_LOG_LINES + 2);
    expect(lines[HOST_LOG_LINES - 1]).toBe(`line ${HOST_LOG_LINES - 1}`);
    expect(lines.slice(HOST_LOG_LINES)).toEqual([
      `more than ${HOST_LOG_LINES} lines of output from a: the rest is not shown`,
      `500 more line(s) (${[...Array(500).keys()].reduce((n, i) => n + `line ${HOST_LOG_LINES + i}`.length + 1, 0)} bytes) of output from a not shown`,
    ]);
    // Said before the host's result.
    const done = events.findIndex((e) => e.type === "host-done");
    expect(events.findLastIndex((e) => e.type === "host-log")).toBeLessThan(done);
  });
});

describe("a host left settling in a mode that says what becomes of it", () => {
  it("takes the delivery's word (ssm: its command goes on, no window)", async () => {
    const controller = new AbortController();
    const delivery: Delivery = {
      status: async () => ({ reachable: false, error: "unused" }),
      rollbackHosts: async () => [],
      settlingText: () => "its SSM command goes on on the host",
      deployWave: () => {
        controller.abort("interrupted (SIGINT)");
        return new Promise<DeployOutcome[]>(() => {});
      },
    };
    const results = await rollOne(delivery, () => {}, {
      signal: controller.signal,
      abortGrace: 20,
    });
    const a = results[0]?.outcome;
    expect(a).toMatchObject({ status: "failed", rolledBack: false, settling: true });
    expect(a?.status === "failed" && a.message).toBe(
      "interrupted, and no result 1s later: the host is still settling; its SSM command goes on on the host",
    );
  });
});

describe("the activation timeout", () => {
  it("defaults in the fleet policy to what activate.sh uses when given none", () => {
    expect(POLICY_DEFAULTS.activationTimeout).toBe(DEFAULT_ACTIVATION_TIMEOUT);
    // activate.sh's own default, in each of its commands that take --activation-timeout.
    const own = [...activateScript().matchAll(/\bactivation_timeout=(\d+)/g)].map((m) =>
      Number(m[1]),
    );
    expect(own.length).toBeGreaterThan(0);
    expect(new Set(own)).toEqual(new Set([POLICY_DEFAULTS.activationTimeout]));
  });
});
