// The deploy's stages that need no Nix or host: the plan from a survey (pure), the request
// each host gets, execution over a scripted Delivery (--async needs the delivery's
// channel capability, for publishOnly), and --wait-reachable's asking again. The whole deploy runs end to end in test/deploy.test.ts.
import { describe, expect, it } from "vitest";
import type {
  ChannelCapability,
  ChannelHost,
  Delivery,
  DeployOutcome,
  WaveHost,
} from "../delivery/delivery.js";
import { UsageError } from "../errors.js";
import type { Fleet, FleetHost } from "../fleet/fleet.js";
import { parseFleetValue } from "../fleet/fleet-file.js";
import type { HostState, PlannedHost } from "../fleet/plan.js";
import { parseStorePath } from "../nix/store-path.js";
import { planFromSurvey } from "./assemble-plan.js";
import { deploy } from "./deploy.js";
import type { DeployOptions } from "./deploy-options.js";
import type { DeployEvent } from "./events.js";
import { executePlan } from "./execute-plan.js";
import { deployRequest, hostRequests } from "./host-requests.js";
import { type Asked, awaitReachable, unreachableAnswer } from "./survey.js";

const V1 = parseStorePath(`/nix/store/${"1".repeat(32)}-system-v1`).path;
const V2 = parseStorePath(`/nix/store/${"2".repeat(32)}-system-v2`).path;

const fleet: Fleet = parseFleetValue(
  {
    policy: {
      confirmTimeout: 20,
      activationTimeout: 90,
      keepGenerations: 3,
      health: { http: [{ url: "http://{address}/health" }] },
    },
    hosts: {
      a: { address: "10.0.0.1", system: V2 },
      b: { address: "10.0.0.2", system: V2 },
      c: { address: "10.0.0.3", system: V2 },
    },
  },
  "test fleet",
);
const hosts = fleet.hosts;
const built = { byHost: new Map(hosts.map((h) => [h.name, V2])) };

/** a runs v1, b already runs v2, c as `c` says (by default, it cannot be reached). */
function planWith(
  c: HostState = {
    kind: "unreachable",
    error: "ssh: connect to host 10.0.0.3 port 22: Connection refused",
  },
) {
  return planFromSurvey(
    "switch",
    hosts,
    { built, secrets: new Map() },
    {
      states: [
        { kind: "reported", current: V1, generation: 4 },
        { kind: "reported", current: V2, generation: 7 },
        c,
      ],
      pathInfos: new Map([
        [V1, { path: V1, narSize: 100, references: [] }],
        [V2, { path: V2, narSize: 200, references: [] }],
      ]),
      running: new Map(),
    },
  );
}
const plan = planWith();

const prepared = { substituters: [], trustedKeys: [], secrets: new Map(), systemHealth: new Map() };
const request = (host: (typeof hosts)[number], planned: PlannedHost) =>
  deployRequest(
    { action: "switch", fleet, policy: fleet.policy, policyFlags: {} },
    prepared,
    host,
    planned,
    undefined,
  );

function scripted(extra: Partial<Delivery> = {}) {
  const waves: string[][] = [];
  const delivery: Delivery = {
    status: async () => ({ reachable: false, error: "unused" }),
    rollbackHosts: async () => [],
    deployWave: async (wave) => {
      waves.push(wave.map((w) => w.host.name));
      return wave.map((): DeployOutcome => ({ status: "activated", generation: 5, previous: V1 }));
    },
    ...extra,
  };
  return { delivery, waves };
}

/** A delivery's channel capability: the operations given, the others inert. */
function channel(operations: Partial<ChannelCapability>): ChannelCapability {
  return {
    publishOnly: async () => {
      throw new Error("publishOnly is not scripted");
    },
    plan: async () => [],
    failedOn: async () => new Map(),
    settle: async () => undefined,
    published: () => [],
    refresh: async () => {
      throw new Error("refresh is not scripted");
    },
    ...operations,
  };
}

/** The plan with c answering, but not with a status (a banner its shell prints). */
const garbledPlan = planWith({
  kind: "unreachable",
  error: "the reply is not an activation result: Welcome to c!",
  answerUnreadable: true,
});

function execute(
  delivery: Delivery,
  options: { async?: boolean; skipUnreachable?: boolean } = {},
  planned = plan,
) {
  const events: DeployEvent[] = [];
  const report = executePlan({
    options: {
      fleet,
      policy: fleet.policy,
      key: undefined,
      emit: (e) => events.push(e),
      ...options,
    },
    hosts,
    plan: planned,
    mode: "ssh",
    delivery,
    requests: hostRequests(
      { action: "switch", fleet, policy: fleet.policy, policyFlags: {} },
      prepared,
      hosts,
      planned,
      new Map(),
    ),
    started: performance.now(),
  });
  return { report, events };
}

describe("planFromSurvey", () => {
  it("plans each host from its state: activate, skip, unreachable", () => {
    expect(plan.hosts.map((h) => [h.host, h.action, h.desired])).toEqual([
      ["a", "activate", V2],
      ["b", "skip", V2],
      ["c", "unreachable", V2],
    ]);
    expect(plan.hosts[2]?.error).toContain("Connection refused");
  });
});

describe("deployRequest", () => {
  it("carries the store path, the policy's limits and the host's own health URLs", () => {
    const [a] = hosts;
    if (a === undefined) throw new Error("no host a");
    expect(request(a, { desired: V2, current: undefined })).toEqual({
      path: V2,
      action: "switch",
      substituters: [],
      trustedKeys: [],
      commandChecks: [],
      httpChecks: [{ url: "http://10.0.0.1/health", expectStatus: 200, timeout: 5 }],
      confirmTimeout: 20,
      activationTimeout: 90,
      keepGenerations: 3,
    });
  });

  it("expects an ssh host to run what it answered the survey with, and not a record's system", () => {
    const [a] = hosts;
    if (a === undefined) throw new Error("no host a");
    expect(request(a, { desired: V2, current: V1 }).expect).toBe(V1);
    const stored = { at: "2026-11-30T00:00:00.000Z", why: "not asked" };
    expect(request(a, { desired: V2, current: V1, stored }).expect).toBeUndefined();
    const ssm = { ...a, delivery: "ssm", instanceId: "i-0123456789abcdef0", targets: undefined };
    expect(request(ssm as FleetHost, { desired: V2, current: V1 }).expect).toBeUndefined();
  });
});

describe("executePlan", () => {
  it("counts the unreachable host under --max-failures 0: nothing is deployed", async () => {
    const s = scripted();
    const { report, events } = execute(s.delivery);
    const r = await report;
    expect(s.waves).toEqual([]);
    expect(r.ok).toBe(false);
    expect(r.results.map((x) => [x.host, x.outcome])).toEqual([
      ["a", { status: "skipped", reason: "not-started" }],
      ["b", { status: "skipped", reason: "up-to-date" }],
      ["c", expect.objectContaining({ status: "failed", phase: "connect" })],
    ]);
    expect(events.at(-1)).toMatchObject({ type: "summary", ok: false });
  });

  it("--skip-unreachable: the others are deployed and the deploy succeeds", async () => {
    const s = scripted();
    const { report, events } = execute(s.delivery, { skipUnreachable: true });
    const r = await report;
    expect(s.waves).toEqual([["a"]]);
    expect(r.ok).toBe(true);
    expect(r.results.find((x) => x.host === "c")?.outcome).toMatchObject({
      status: "skipped",
      reason: "unreachable",
    });
    expect(events.at(-1)).toMatchObject({ type: "summary", ok: true });
  });

  it("fails a host that answered with something other than a status, even with --skip-unreachable", async () => {
    expect(garbledPlan.hosts[2]).toMatchObject({ action: "unreachable", answerUnreadable: true });
    const s = scripted();
    const { report } = execute(s.delivery, { skipUnreachable: true }, garbledPlan);
    const r = await report;
    expect(s.waves).toEqual([]);
    expect(r.ok).toBe(false);
    expect(r.results.find((x) => x.host === "c")?.outcome).toEqual({
      status: "failed",
      phase: "connect",
      message:
        "it answered, but not with a status: the reply is not an activation result: Welcome to c!",
      rolledBack: false,
    });
  });

  it("reports the releases a publishing delivery made", async () => {
    const s = scripted({
      channel: channel({
        published: () => [
          { channel: "prod", seq: 8 },
          { channel: "prod", seq: 9 },
        ],
      }),
    });
    const r = await execute(s.delivery, { skipUnreachable: true }).report;
    expect(r.releases).toEqual([8, 9]);
  });

  it("--async: one release through channel.publishOnly naming every reachable host (the channel is explicit), not watched", async () => {
    const published: WaveHost[][] = [];
    const planned: ChannelHost[][] = [];
    const s = scripted({
      channel: channel({
        plan: async (hosts) => {
          planned.push([...hosts]);
          return ["a note"];
        },
        publishOnly: async (wave) => {
          published.push([...wave]);
          return { channel: "prod", seq: 12, digest: "sha256-x" };
        },
      }),
    });
    const { report, events } = execute(s.delivery, { async: true, skipUnreachable: true });
    const r = await report;
    // b already runs V2: it is named all the same.
    expect(published.map((w) => w.map((x) => [x.host.name, x.request.path]))).toEqual([
      [
        ["a", V2],
        ["b", V2],
      ],
    ]);
    expect(planned).toEqual([
      [
        { host: "a", path: V2, runs: false },
        { host: "b", path: V2, runs: true },
      ],
    ]);
    expect(s.waves).toEqual([]);
    // c, unreachable (its agent offline), is not named, and said so.
    expect(r).toMatchObject({ ok: true, releases: [12], channelNotes: ["a note"] });
    expect(r.results.map((x) => [x.host, x.outcome])).toEqual([
      ["c", expect.objectContaining({ status: "skipped", reason: "unreachable" })],
    ]);
    expect(events.map((e) => e.type)).toEqual(["host-done", "released"]);
  });

  it("--async without --skip-unreachable: an unreachable host counts under --max-failures 0, and nothing is published", async () => {
    const published: WaveHost[][] = [];
    const s = scripted({
      channel: channel({
        publishOnly: async (wave) => {
          published.push([...wave]);
          return { channel: "prod", seq: 12, digest: "sha256-x" };
        },
      }),
    });
    const { report, events } = execute(s.delivery, { async: true });
    const r = await report;
    expect(published).toEqual([]);
    expect(r.ok).toBe(false);
    expect(r.releases).toEqual([]);
    expect(r.results.map((x) => [x.host, x.outcome])).toEqual([
      ["c", expect.objectContaining({ status: "failed", phase: "connect" })],
      ["a", { status: "skipped", reason: "not-started" }],
    ]);
    expect(events).toContainEqual({
      type: "stopped",
      reason: "1 host(s) unreachable, more than --max-failures 0",
      notStarted: ["a"],
    });
  });

  it("tells a channel-keeping delivery every host's system before the waves, and refuses with it", async () => {
    const s = scripted({
      channel: channel({
        plan: async () => {
          throw new Error("refused");
        },
      }),
    });
    await expect(execute(s.delivery, { skipUnreachable: true }).report).rejects.toThrow("refused");
    expect(s.waves).toEqual([]);
  });

  it("settles the channel after a rollout that published no release, and only then", async () => {
    const settled: string[] = [];
    const settle = async (action: string) => {
      settled.push(action);
      return { channel: "prod", seq: 4, digest: "sha256-y" };
    };
    const none = execute(scripted({ channel: channel({ settle, published: () => [] }) }).delivery, {
      skipUnreachable: true,
    });
    expect((await none.report).ok).toBe(true);
    expect(settled).toEqual(["switch"]);
    expect(none.events).toContainEqual({
      type: "released",
      channel: "prod",
      seq: 4,
      digest: "sha256-y",
    });
    const some = execute(
      scripted({ channel: channel({ settle, published: () => [{ channel: "prod", seq: 3 }] }) })
        .delivery,
    );
    await some.report;
    expect(settled).toEqual(["switch"]);
  });

  it("--async on a delivery without a channel is refused, naming the mode", async () => {
    const s = scripted();
    await expect(execute(s.delivery, { async: true }).report).rejects.toThrow(
      /deploy --async .* ssh delivery cannot do/,
    );
    expect(s.waves).toEqual([]);
  });
});

describe("deploy", () => {
  it("refuses --async for ssh hosts before building anything", async () => {
    const events: DeployEvent[] = [];
    const options: DeployOptions = {
      fleet,
      fleetDir: "/nonexistent",
      policyFlags: {},
      selector: undefined,
      action: "switch",
      policy: fleet.policy,
      key: undefined,
      serveCache: undefined,
      emit: (e) => events.push(e),
      async: true,
    };
    const refused = deploy(options);
    await expect(refused).rejects.toBeInstanceOf(UsageError);
    await expect(refused).rejects.toThrow(/--async/);
    expect(events).toEqual([]);
  });
});

describe("awaitReachable (--wait-reachable)", () => {
  const reported = { kind: "reported", current: undefined, generation: undefined } as const;
  const down = {
    kind: "unreachable",
    error: "ssh: connect to host a port 22: Connection refused",
  } as const;

  it("asks the hosts not ready again until each is, naming those awaited", async () => {
    const [a, b, c] = hosts as [FleetHost, FleetHost, FleetHost];
    const asked: string[] = [];
    // a: unreachable at its first ask again; b: an agent that has reported by then; c: ready.
    const script: Record<string, Asked[]> = {
      a: [
        { state: down, ready: false },
        { state: reported, ready: true },
      ],
      b: [{ state: reported, ready: true }],
    };
    const answers: Asked[] = [
      { state: down, ready: false },
      { state: reported, ready: false },
      { state: reported, ready: true },
    ];
    const events: DeployEvent[] = [];
    await awaitReachable(
      [a, b, c],
      answers,
      async (h) => {
        asked.push(h.name);
        return script[h.name]?.shift() ?? { state: reported, ready: true };
      },
      { waitReachable: 30, emit: (e) => events.push(e) },
    );
    expect(asked).toEqual(["a", "b", "a"]);
    expect(answers.map((x) => x.ready)).toEqual([true, true, true]);
    expect(events.map((e) => (e.type === "awaiting" ? e.hosts : []))).toEqual([["a", "b"], ["a"]]);
  });

  it("waits on a host that did not answer, not on one that answered with something else", () => {
    expect(unreachableAnswer({ reachable: false, error: down.error })).toEqual({
      state: down,
      ready: false,
    });
    expect(
      unreachableAnswer({ reachable: false, error: "Welcome to a!", answerUnreadable: true }),
    ).toEqual({
      state: { kind: "unreachable", error: "Welcome to a!", answerUnreadable: true },
      ready: true,
    });
  });

  it("gives up after its bound, leaving the host unreachable", async () => {
    const [a] = hosts as [FleetHost];
    const answers: Asked[] = [{ state: down, ready: false }];
    const events: DeployEvent[] = [];
    const t0 = performance.now();
    await awaitReachable([a], answers, async () => ({ state: down, ready: false }), {
      waitReachable: 1,
      emit: (e) => events.push(e),
    });
    expect((performance.now() - t0) / 1000).toBeLessThan(5);
    expect(answers[0]?.state).toEqual(down);
    expect(events[0]).toMatchObject({ type: "awaiting", hosts: ["a"], limit: 1 });
  });

  it("ends at once on an interrupt", async () => {
    const [a] = hosts as [FleetHost];
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 100);
    const t0 = performance.now();
    await awaitReachable(
      [a],
      [{ state: down, ready: false }],
      async () => ({ state: down, ready: false }),
      {
        waitReachable: 60,
        emit: () => {},
        signal: stop.signal,
      },
    );
    expect((performance.now() - t0) / 1000).toBeLessThan(3);
  });
});
