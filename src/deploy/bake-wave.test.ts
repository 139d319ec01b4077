// The engine's bake over a scripted Delivery and a scripted metrics source: a canary that fails
// its analysis is rolled back and stops the rollout; one that passes lets the next wave start;
// the failure is a typed value in the host's result, the events and the rollout record.
// (test/bake-*.test.ts runs it against a real Prometheus on the lab.)
import { describe, expect, it } from "vitest";
import {
  type Delivery,
  type DeployOutcome,
  type DeployRequest,
  deployEachHost,
  type RollbackOutcome,
} from "../delivery/delivery.js";
import { ANALYSIS_DEFAULTS, type HostBake } from "../fleet/bake.js";
import type { FleetHost } from "../fleet/fleet.js";
import type { DeployPlan, HostPlan } from "../fleet/plan.js";
import type { RollbackTarget } from "../fleet/rollback-target.js";
import type { MetricsSource, QueryAnswer } from "../metrics/prometheus.js";
import type { StorePath } from "../nix/store-path.js";
import { bakeWave } from "./bake-wave.js";
import type { DeployEvent, HostResult } from "./events.js";
import { RolloutRecorder } from "./rollout-recorder.js";
import { runRollout } from "./run-rollout.js";

const PATH = "/nix/store/00000000000000000000000000000000-system" as StorePath;
const OLD = "/nix/store/11111111111111111111111111111111-system";

const HOSTS = ["web1", "web2", "web3"];

function host(name: string): FleetHost {
  return {
    name,
    tags: ["web"],
    address: `10.0.0.${name.slice(3)}`,
    delivery: "ssh",
    sshHost: undefined,
    system: { kind: "store-path", path: PATH },
  };
}

const BAKE: HostBake = {
  seconds: 0.3,
  interval: 0.1,
  analysis: [
    {
      name: "errors",
      query: 'errors{host="{name}"}',
      baseline: { tolerance: 1.5 },
      ...ANALYSIS_DEFAULTS,
    },
  ],
};

/** The hosts of a rollout, and its waves (the first a canary). */
interface Layout {
  readonly hosts: readonly string[];
  readonly waves: readonly (readonly string[])[];
}

/** A canary wave (web1), then web2 and web3. */
const THREE: Layout = { hosts: HOSTS, waves: [["web1"], ["web2", "web3"]] };

/** The layout's hosts, all of role @web, baking `bake`. */
function plan(bake: HostBake, layout: Layout = THREE): DeployPlan {
  const hosts = layout.hosts.map(
    (name): HostPlan => ({
      host: name,
      action: "activate",
      current: OLD as StorePath,
      generation: 1,
      desired: PATH,
      transfer: { paths: 0, bytes: 0 },
      transferBasis: "whole-closure",
      error: undefined,
      role: "@web",
      bake,
    }),
  );
  return {
    action: "switch",
    hosts,
    counts: { activate: hosts.length, skip: 0, unreachable: 0 },
    changes: hosts.length,
    totals: { paths: 0, bytes: 0 },
    distinct: { paths: 0, bytes: 0 },
    waves: layout.waves.map((names, i) => ({
      wave: i + 1,
      kind: i === 0 ? "canary" : "main",
      hosts: [...names],
    })),
  };
}

/** Every host activates; rollbacks are recorded. */
function delivery() {
  const rolledBack: string[] = [];
  const targets: (RollbackTarget | undefined)[] = [];
  const d: Delivery = {
    status: async () => ({ reachable: false, error: "unused" }),
    rollbackHosts: async (hosts, to): Promise<RollbackOutcome[]> => {
      rolledBack.push(...hosts.map((h) => h.name));
      targets.push(to);
      return hosts.map(() => ({ status: "rolled-back", generation: 1, path: OLD }));
    },
    deployWave: (wave, emit) =>
      deployEachHost(
        wave,
        emit,
        async (): Promise<DeployOutcome> => ({
          status: "activated",
          generation: 2,
          previous: OLD,
        }),
      ),
  };
  return { delivery: d, rolledBack, targets };
}

/** Each host's error ratio, as its query names it. */
function metrics(ratios: Record<string, number>): MetricsSource {
  return {
    url: "http://prometheus.test",
    timeout: 10,
    query: async (q): Promise<QueryAnswer> => {
      const name = /host="([a-z0-9]+)"/.exec(q)?.[1] ?? "";
      const value = ratios[name];
      return value === undefined ? { value: null, why: "no series" } : { value };
    },
  };
}

/**
 * The three hosts' rollout in which web1, running the system an interrupted rollout gave it
 * (it ran OLD before, generation `beforeGeneration` on it), is baked again; its canary fails.
 */
function rollOutUnbaked(beforeGeneration: number | undefined) {
  const unbaked = (p: DeployPlan): DeployPlan => ({
    ...p,
    hosts: p.hosts.map((h) =>
      h.host === "web1"
        ? {
            ...h,
            current: PATH,
            generation: 4,
            unbaked: {
              rollout: "0123456789ab",
              why: "its bake was interrupted",
              before: OLD as StorePath,
              ...(beforeGeneration === undefined ? {} : { beforeGeneration }),
            },
          }
        : h,
    ),
  });
  return rollOut(metrics({ web1: 0.3, web2: 0.1, web3: 0.1 }), BAKE, undefined, THREE, unbaked);
}

/** A rollout of the three hosts, baking `bake`, its analysis asking `source`. */
async function rollOut(
  source: MetricsSource,
  bake: HostBake = BAKE,
  signal?: AbortSignal,
  layout: Layout = THREE,
  edit: (p: DeployPlan) => DeployPlan = (p) => p,
) {
  const events: DeployEvent[] = [];
  const { delivery: d, rolledBack, targets } = delivery();
  const p = edit(plan(bake, layout));
  const requests = new Map(
    layout.hosts.map((h) => [
      h,
      { action: "switch", httpChecks: [], commandChecks: [] } as unknown as DeployRequest,
    ]),
  );
  const results = await runRollout({
    plan: p,
    hosts: layout.hosts.map(host),
    policy: { maxFailures: 0 },
    delivery: d,
    requests,
    emit: (e) => events.push(e),
    metrics: source,
    ...(signal === undefined ? {} : { signal }),
  });
  return { results, events, rolledBack, targets, plan: p };
}

describe("a wave's bake in the rollout engine", () => {
  it("rolls back a canary at 3x its baseline's error ratio, and starts no other wave", async () => {
    const { results, events, rolledBack } = await rollOut(
      metrics({ web1: 0.3, web2: 0.1, web3: 0.1 }),
    );
    expect(rolledBack).toEqual(["web1"]);
    const canary = results.find((r) => r.host === "web1");
    expect(canary?.outcome).toMatchObject({
      status: "failed",
      phase: "bake",
      rolledBack: true,
      cause: {
        kind: "bake",
        analysis: [
          {
            name: "errors",
            query: 'errors{host="web1"}',
            condition: "at most 1.5 × the baseline",
            why: "errors: 0.3 is above 1.5 × the baseline's 0.1",
          },
        ],
      },
    });
    expect(canary?.outcome.status === "failed" && canary.outcome.message).toMatch(
      /^failed its bake after \d+s: analysis errors: 0\.3 is above 1\.5 × the baseline's 0\.1 .*values 0\.3\); back on \/nix\/store\/1111/,
    );
    for (const other of ["web2", "web3"]) {
      expect(results.find((r) => r.host === other)?.outcome).toMatchObject({
        status: "skipped",
        reason: "not-started",
      });
    }
    const measured = events.filter((e) => e.type === "bake-measure");
    expect(measured).toEqual([
      expect.objectContaining({
        host: "web1",
        name: "errors",
        measurement: expect.objectContaining({ value: 0.3, baseline: 0.1, verdict: "fail" }),
      }),
    ]);
    expect(events.find((e) => e.type === "stopped")).toMatchObject({ reason: "the canary failed" });
  });

  it("sends a host baked again (its rollout's bake never ended) back to what it ran before that rollout", async () => {
    // web1 runs the system an interrupted rollout gave it; it ran OLD before, generation 3 then.
    const { results, targets } = await rollOutUnbaked(3);
    // Not to generation 4, which the survey found it on: that is the system that failed.
    expect(targets).toEqual([{ kind: "generation", generation: 3 }]);
    const canary = results.find((r) => r.host === "web1");
    expect(canary?.outcome).toMatchObject({ status: "failed", phase: "bake", rolledBack: true });
  });

  it("leaves where it is a host baked again whose earlier system has no generation on it, saying so", async () => {
    const { results, rolledBack } = await rollOutUnbaked(undefined);
    expect(rolledBack).toEqual([]);
    const canary = results.find((r) => r.host === "web1");
    expect(canary?.outcome).toMatchObject({ status: "failed", phase: "bake", rolledBack: false });
    expect(canary?.outcome.status === "failed" && canary.outcome.message).toContain(
      `not rolled back: the host has no generation left of what it ran before rollout 0123456789ab (${OLD})`,
    );
  });

  it("passes a canary within the tolerance: every wave bakes, and nothing is rolled back", async () => {
    const { results, events, rolledBack } = await rollOut(
      metrics({ web1: 0.12, web2: 0.1, web3: 0.1 }),
    );
    expect(rolledBack).toEqual([]);
    expect(results.map((r) => r.outcome.status)).toEqual(["activated", "activated", "activated"]);
    expect(events.filter((e) => e.type === "bake-start").map((e) => e.type)).toHaveLength(2);
    // The last wave has no host of its role left unchanged: nothing to compare with, it passes.
    const last = events.filter((e) => e.type === "bake-measure" && e.host === "web3");
    expect(last.length).toBeGreaterThan(0);
    expect(last.every((e) => e.type === "bake-measure" && e.measurement.verdict === "pass")).toBe(
      true,
    );
  });

  it("keeps each measurement and the failed condition in the rollout record", async () => {
    const { events, plan: p } = await rollOut(metrics({ web1: 0.3, web2: 0.1, web3: 0.1 }));
    const recorder = new RolloutRecorder({} as never, { mode: "ssh", action: "switch" });
    recorder.onEvent({ type: "plan", plan: p });
    for (const e of events) recorder.onEvent(e);
    const entry = recorder.record().waves[0]?.hosts[0];
    expect(entry).toMatchObject({
      host: "web1",
      state: "rolled-back",
      phase: "bake",
      bake: {
        state: "failed",
        seconds: 0.3,
        interval: 0.1,
        analysis: [
          {
            name: "errors",
            condition: "at most 1.5 × the baseline",
            failed: "errors: 0.3 is above 1.5 × the baseline's 0.1",
            measurements: [expect.objectContaining({ value: 0.3, baseline: 0.1 })],
          },
        ],
      },
    });
  });
});

describe("a Prometheus that answers slowly", () => {
  it("is asked for the host and its baseline, and every query of a round, at once; a round past its time skips the rounds it missed", async () => {
    let inFlight = 0;
    let most = 0;
    const slow: MetricsSource = {
      url: "http://prometheus.test",
      timeout: 10,
      query: async (): Promise<QueryAnswer> => {
        inFlight++;
        most = Math.max(most, inFlight);
        await new Promise((resolve) => setTimeout(resolve, 400));
        inFlight--;
        return { value: 0.1 };
      },
    };
    const queries = ["errors", "latency", "restarts"].map((name) => ({
      name,
      query: `${name}{host="{name}"}`,
      baseline: { tolerance: 1.5 },
      ...ANALYSIS_DEFAULTS,
    }));
    // Three rounds due at 0.1, 0.2 and 0.3 s; the first takes 0.4 s.
    const { events } = await rollOut(slow, { seconds: 0.3, interval: 0.1, analysis: queries });
    // web1's three queries, each with its baseline (web2 and web3): nine at once.
    expect(most).toBe(9);
    const rounds = events.filter(
      (e) => e.type === "bake-measure" && e.host === "web1" && e.name === "errors",
    );
    // The first round, then the last: the one due at 0.2 s was missed.
    expect(rounds).toHaveLength(2);
  });
});

describe("a wave's hosts and their baseline", () => {
  it("ask each baseline host once a round, shared by the wave's hosts, each comparing with it", async () => {
    const asked = new Map<string, number>();
    const source: MetricsSource = {
      url: "http://prometheus.test",
      timeout: 10,
      query: async (q): Promise<QueryAnswer> => {
        const name = /host="([a-z0-9]+)"/.exec(q)?.[1] ?? "";
        asked.set(name, (asked.get(name) ?? 0) + 1);
        return { value: 0.1 };
      },
    };
    // Two rounds a host; the wave of four (web2-web5) compares with web6 and web7.
    const names = ["web1", "web2", "web3", "web4", "web5", "web6", "web7"];
    const layout = { hosts: names, waves: [["web1"], names.slice(1, 5), ["web6", "web7"]] };
    const { results, events } = await rollOut(
      source,
      { ...BAKE, seconds: 2, interval: 1 },
      undefined,
      layout,
    );
    expect(results.map((r) => `${r.host} ${r.outcome.status}`)).toEqual(
      names.map((n) => `${n} activated`),
    );
    // Each of web2-web5 measured twice, each against the baseline's values.
    const wave2 = events.filter(
      (e) => e.type === "bake-measure" && ["web2", "web3", "web4", "web5"].includes(e.host),
    );
    expect(wave2).toHaveLength(8);
    for (const e of wave2) {
      expect(e.type === "bake-measure" && e.measurement).toMatchObject({ baseline: 0.1 });
    }
    // web6: two rounds of the canary's, two of the wave of four's (not eight), two of its own.
    expect(asked.get("web6")).toBe(6);
    expect(asked.get("web2")).toBe(2 + 2);
  });
});

/** The canary wave's bake alone (web1, activated), baking `bake`: its result and the events. */
async function bakeCanary(
  bake: HostBake,
  more: Pick<Parameters<typeof bakeWave>[0], "signal" | "progressEvery">,
) {
  const events: DeployEvent[] = [];
  const [result] = await bakeWave({
    plan: plan(bake),
    wave: 1,
    results: [
      {
        host: "web1",
        outcome: { status: "activated", generation: 2, previous: OLD },
        seconds: 1,
      } as HostResult,
    ],
    hosts: new Map(HOSTS.map((h) => [h, host(h)])),
    requests: new Map(),
    delivery: delivery().delivery,
    metrics: metrics({ web1: 0.1, web2: 0.1, web3: 0.1 }),
    emit: (e) => events.push(e),
    ...more,
  });
  return { result, events };
}

describe("an interrupt before a bake", () => {
  it("still ends the bake as interrupted at 0 s: the host is said unverified by it", async () => {
    const stop = new AbortController();
    stop.abort();
    const { result, events } = await bakeCanary(BAKE, { signal: stop.signal });
    expect(result?.outcome).toMatchObject({ status: "activated", bakeInterrupted: 0 });
    expect(events.map((e) => e.type)).toEqual(["bake-start", "bake-done"]);
    expect(events[1]).toMatchObject({ host: "web1", interrupted: true, seconds: 0 });
  });
});

describe("a long bake", () => {
  it("says now and then that it goes on, and which hosts still bake", async () => {
    const { result, events } = await bakeCanary(
      { seconds: 1, interval: 0.5, analysis: [] },
      { progressEvery: 0.2 },
    );
    expect(result?.outcome.status).toBe("activated");
    const said = events.filter((e) => e.type === "bake-progress");
    expect(said.length).toBeGreaterThan(0);
    for (const e of said) expect(e).toMatchObject({ wave: 1, seconds: 1, hosts: ["web1"] });
    // Said between its start and its end, and no more once it ended.
    expect(events.at(0)?.type).toBe("bake-start");
    expect(events.at(-1)?.type).toBe("bake-done");
  });
});

describe("an interrupt during a bake", () => {
  it("leaves the host on its new system, its result saying the bake did not verify it", async () => {
    const stop = new AbortController();
    const rolled = rollOut(
      metrics({ web1: 0.1, web2: 0.1, web3: 0.1 }),
      {
        ...BAKE,
        seconds: 30,
        interval: 0.1,
      },
      stop.signal,
    );
    setTimeout(() => stop.abort(), 300);
    const { results, events } = await rolled;
    const canary = results.find((r) => r.host === "web1");
    expect(canary?.outcome).toMatchObject({
      status: "activated",
      bakeInterrupted: expect.any(Number),
    });
    const after = (canary?.outcome as { bakeInterrupted?: number } | undefined)?.bakeInterrupted;
    expect(after).toBeGreaterThan(0);
    expect(after).toBeLessThan(30);
    expect(events).toContainEqual(
      expect.objectContaining({ type: "bake-done", host: "web1", interrupted: true }),
    );
  });
});

describe("a Prometheus that never answers", () => {
  it("ends each round within one timeout: the queries still waiting for their turn are not asked", async () => {
    let asked = 0;
    const silent: MetricsSource = {
      url: "http://prometheus.test",
      timeout: 0.3,
      // Answers only when its signal aborts (the client's deadline is the caller's signal here).
      query: (_q, signal): Promise<QueryAnswer> =>
        new Promise((resolve) => {
          asked++;
          signal?.addEventListener("abort", () => resolve({ value: null, why: "no answer" }));
        }),
    };
    // Twenty queries, each for web1 and its baseline (web2 and web3): sixty a round.
    const queries = Array.from({ length: 20 }, (_, i) => ({
      name: `q${i}`,
      query: `q${i}{host="{name}"}`,
      baseline: { tolerance: 1.5 },
      ...ANALYSIS_DEFAULTS,
      noData: "wait" as const,
    }));
    const { events } = await rollOut(silent, { seconds: 0.2, interval: 0.1, analysis: queries });
    const measured = events.filter(
      (e): e is Extract<DeployEvent, { type: "bake-measure" }> =>
        e.type === "bake-measure" && e.host === "web1",
    );
    // Two rounds of twenty queries, each measured; at most sixteen asked in each round.
    expect(measured).toHaveLength(40);
    expect(asked).toBeLessThanOrEqual(32);
    expect(
      measured.filter((m) =>
        /^not asked: the round's 0\.3s \(prometheus\.timeout\) passed while 16 queries were in flight$/.test(
          m.measurement.why,
        ),
      ),
    ).not.toEqual([]);
  });
});

describe("a Prometheus slower than the wave's queries allow", () => {
  it("fails no host for the queries this deployer did not ask (its own bound on queries in flight), under noData fail", async () => {
    // Answers each query after a third of the timeout: sixteen at a time, the round's sixty
    // queries (twenty for web1 and its baseline) cannot all be asked within it.
    const slow: MetricsSource = {
      url: "http://prometheus.test",
      timeout: 0.3,
      query: () => new Promise((resolve) => setTimeout(() => resolve({ value: 0 }), 100)),
    };
    const queries = Array.from({ length: 20 }, (_, i) => ({
      name: `q${i}`,
      query: `q${i}{host="{name}"}`,
      baseline: { tolerance: 1.5 },
      ...ANALYSIS_DEFAULTS,
    }));
    expect(queries[0]?.noData).toBe("fail");
    // Three rounds: those a round did not ask go first in the next.
    const { results, events } = await rollOut(slow, {
      seconds: 0.3,
      interval: 0.1,
      analysis: queries,
    });
    const measured = events.filter(
      (e): e is Extract<DeployEvent, { type: "bake-measure" }> =>
        e.type === "bake-measure" && e.host === "web1",
    );
    const notAsked = measured.filter((m) => m.measurement.notAsked === true);
    expect(notAsked.length).toBeGreaterThan(0);
    expect(notAsked.every((m) => m.measurement.verdict === "no-data")).toBe(true);
    expect(measured.some((m) => m.measurement.verdict === "pass")).toBe(true);
    expect(results.find((r) => r.host === "web1")?.outcome).toMatchObject({ status: "activated" });
  });
});

describe("a failed bake takes its whole wave back", () => {
  /** web1 (canary), then web2 and web3, then web4: of one role, baking `bake`. */
  function fourHosts(bake: HostBake): DeployPlan {
    const three = plan(bake);
    const hosts = [...three.hosts, { ...(three.hosts[0] as HostPlan), host: "web4" }];
    return {
      ...three,
      hosts,
      counts: { activate: 4, skip: 0, unreachable: 0 },
      changes: 4,
      waves: [...three.waves, { wave: 3, kind: "main", hosts: ["web4"] }],
    };
  }

  async function rollOutFour(
    bake: HostBake,
    ratios: Record<string, number>,
    extra: Partial<Delivery> = {},
    commandChecks: DeployRequest["commandChecks"] = [],
  ) {
    const events: DeployEvent[] = [];
    const { delivery: d, rolledBack } = delivery();
    const names = [...HOSTS, "web4"];
    const requests = new Map(
      names.map((h) => [
        h,
        { action: "switch", httpChecks: [], commandChecks } as unknown as DeployRequest,
      ]),
    );
    const p = fourHosts(bake);
    const results = await runRollout({
      plan: p,
      hosts: names.map(host),
      policy: { maxFailures: 5 },
      delivery: { ...d, ...extra },
      requests,
      emit: (e) => events.push(e),
      metrics: metrics(ratios),
    });
    return { results, events, rolledBack, plan: p };
  }

  const AT_MOST: HostBake = {
    seconds: 0.3,
    interval: 0.1,
    analysis: [{ name: "errors", query: 'errors{host="{name}"}', max: 0.2, ...ANALYSIS_DEFAULTS }],
  };

  it("one host of a wave of two fails its analysis: both go back in one rollback, no later wave starts", async () => {
    const {
      results,
      events,
      rolledBack,
      plan: p,
    } = await rollOutFour(AT_MOST, {
      web1: 0.1,
      web2: 0.1,
      web3: 0.5,
      web4: 0.1,
    });
    expect(rolledBack.sort()).toEqual(["web2", "web3"]);
    const outcome = (name: string) => results.find((r) => r.host === name)?.outcome;
    expect(outcome("web1")).toMatchObject({ status: "activated" });
    expect(outcome("web3")).toMatchObject({
      status: "failed",
      phase: "bake",
      rolledBack: true,
      cause: { kind: "bake", analysis: [{ name: "errors" }] },
    });
    expect(outcome("web2")).toMatchObject({
      status: "failed",
      phase: "bake",
      rolledBack: true,
      cause: { kind: "wave", host: "web3" },
      message: expect.stringMatching(/^rolled back with its wave: web3 failed its bake; back on /),
    });
    expect(outcome("web4")).toMatchObject({ status: "skipped", reason: "not-started" });
    expect(events.find((e) => e.type === "stopped")).toMatchObject({
      reason: "web3 failed its bake; its wave was rolled back",
      notStarted: ["web4"],
    });
    // The record says which host failed, and that the other went back because of it.
    const recorder = new RolloutRecorder({} as never, { mode: "ssh", action: "switch" });
    recorder.onEvent({ type: "plan", plan: p });
    for (const e of events) recorder.onEvent(e);
    const wave = recorder.record().waves[1]?.hosts ?? [];
    expect(wave.find((h) => h.host === "web2")).toMatchObject({
      state: "rolled-back",
      phase: "bake",
      waveFailedBy: "web3",
    });
    expect(wave.find((h) => h.host === "web3")).toMatchObject({
      state: "rolled-back",
      bake: { state: "failed" },
    });
    expect(wave.find((h) => h.host === "web3")?.waveFailedBy).toBeUndefined();
  });

  it("repeats the command checks through the delivery: one that starts failing fails the host", async () => {
    const runs: string[] = [];
    const runChecks: NonNullable<Delivery["runChecks"]> = async (hosts) =>
      hosts.map(({ host: h }) => {
        runs.push(h.name);
        const failing = h.name === "web3" && runs.filter((n) => n === "web3").length > 1;
        return failing
          ? { ok: false, message: "exit code 1", run: "test ! -e /bad" }
          : { ok: true };
      });
    const bake: HostBake = { seconds: 0.3, interval: 0.1, analysis: [] };
    const { results, rolledBack } = await rollOutFour(bake, {}, { runChecks }, [
      { run: "test ! -e /bad", timeout: 5 },
    ]);
    expect(runs.filter((n) => n === "web1").length).toBeGreaterThan(1);
    expect(rolledBack.sort()).toEqual(["web2", "web3"]);
    expect(results.find((r) => r.host === "web3")?.outcome).toMatchObject({
      status: "failed",
      phase: "bake",
      cause: { kind: "bake", check: { run: "test ! -e /bad", message: "exit code 1" } },
    });
  });

  it("a host whose own script cannot repeat the command checks bakes on, said once", async () => {
    const asked: string[] = [];
    const runChecks: NonNullable<Delivery["runChecks"]> = async (hosts) =>
      hosts.map(({ host: h }) => {
        asked.push(h.name);
        return h.name === "web1"
          ? { ok: true, notRepeated: "its own activate.sh has no check command" }
          : { ok: true };
      });
    const bake: HostBake = { seconds: 0.3, interval: 0.1, analysis: [] };
    const { results, events, rolledBack } = await rollOutFour(bake, {}, { runChecks }, [
      { run: "true", timeout: 5 },
    ]);
    expect(rolledBack).toEqual([]);
    expect(results.every((r) => r.outcome.status === "activated")).toBe(true);
    expect(asked.filter((n) => n === "web1")).toHaveLength(1);
    expect(asked.filter((n) => n === "web2").length).toBeGreaterThan(1);
    const said = events.filter(
      (e) => e.type === "host-log" && e.host === "web1" && /no check command/.test(e.line),
    );
    expect(said).toHaveLength(1);
  });
});
