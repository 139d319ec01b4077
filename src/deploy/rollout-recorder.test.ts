// The rollout recorder over a real directory store: what it writes as a deploy's events come
// in, when it writes (at once for waves and finished hosts, throttled for phases), and that a
// store that refuses writes is told once and never stops the deploy.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { DeployPlan } from "../fleet/plan.js";
import {
  parseRolloutRecord,
  ROLLOUT_HEARTBEAT_SECONDS,
  type RolloutRecord,
  rolloutKey,
} from "../status/rollout.js";
import { listNewestRollouts, readRollout } from "../status/rollout-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { wrapStore } from "../store/wrap-store.js";
import type { DeployEvent, HostResult } from "./events.js";
import { RolloutRecorder, recordRollout } from "./rollout-recorder.js";

const V1 = "/nix/store/11111111111111111111111111111111-nixos-system-web-v1";
const V2 = "/nix/store/22222222222222222222222222222222-nixos-system-db-v2";
const START = new Date("2026-11-25T10:00:00.000Z");
const LATER = new Date("2026-11-25T10:03:00.000Z");

let dir: string;
let store: ObjectStore;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-recorder-"));
  store = await openStore(`file://${dir}?fsync=false`);
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

/** A plan as the recorder reads it: each host (activated) and its desired system. */
function plan(hosts: Record<string, string>): DeployPlan {
  return {
    action: "switch",
    hosts: Object.entries(hosts).map(([host, desired]) => ({ host, desired, action: "activate" })),
    waves: [],
  } as unknown as DeployPlan;
}

const planned = (hosts: Record<string, string>): DeployEvent => ({
  type: "plan",
  plan: plan(hosts),
});
const waveStart = (wave: number, kind: "canary" | "main", hosts: string[]): DeployEvent => ({
  type: "wave-start",
  wave,
  kind,
  hosts,
});
const phase = (host: string, p: "connect" | "copy" | "switch" | "health" | "confirm") =>
  ({ type: "host-phase", host, phase: p, elapsed: 1 }) as const satisfies DeployEvent;
const done = (host: string, outcome: HostResult["outcome"]): DeployEvent => ({
  type: "host-done",
  result: { host, outcome, desired: V1, seconds: 2 },
});
const activated = { status: "activated", generation: 4, previous: undefined } as const;

/** `inner` with its puts counted: started, and ended (written or failed). */
function countPuts(inner: ObjectStore, fail?: () => Error | undefined) {
  const puts = { started: 0, ended: 0 };
  const wrapped = wrapStore(inner, {
    put: async (key, body, options) => {
      puts.started++;
      try {
        const error = fail?.();
        if (error !== undefined) throw error;
        return await inner.put(key, body, options);
      } finally {
        puts.ended++;
      }
    },
  });
  return { store: wrapped, puts };
}

/** The one rollout record in the store, read back as the dashboard reads it. */
async function storedRecord(): Promise<{ key: string; record: RolloutRecord | undefined }> {
  const listed = await listNewestRollouts(store, 10);
  expect(listed).toHaveLength(1);
  const key = listed[0]?.key ?? "";
  return { key, record: await readRollout(store, key) };
}

/** A clock the test moves: the recorder's `now`. */
function clock(start: Date) {
  let at = start;
  return {
    now: () => at,
    set: (d: Date) => {
      at = d;
    },
  };
}

describe("the rollout recorder", () => {
  it("records every host state, the systems from the plan, and the final state", async () => {
    const time = clock(START);
    const recorder = new RolloutRecorder(store, { mode: "ssh", action: "switch", now: time.now });
    recorder.onEvent(
      planned({
        canary: V1,
        waiting: V1,
        connecting: V1,
        copying: V1,
        switching: V2,
        checking: V2,
        confirming: V2,
        ok: V1,
        undone: V1,
        broken: V2,
        skipped: V2,
      }),
    );
    recorder.onEvent(waveStart(1, "canary", ["canary"]));
    recorder.onEvent(phase("canary", "switch"));
    recorder.onEvent(done("canary", activated));
    recorder.onEvent(
      waveStart(2, "main", [
        "waiting",
        "connecting",
        "copying",
        "switching",
        "checking",
        "confirming",
        "ok",
        "undone",
        "broken",
        "skipped",
        "unplanned",
      ]),
    );
    recorder.onEvent(phase("connecting", "connect"));
    recorder.onEvent(phase("copying", "copy"));
    recorder.onEvent(phase("switching", "switch"));
    recorder.onEvent(phase("checking", "health"));
    recorder.onEvent(phase("confirming", "confirm"));
    recorder.onEvent(phase("ok", "health"));
    recorder.onEvent(done("ok", activated));
    recorder.onEvent(phase("undone", "health"));
    recorder.onEvent(
      done("undone", { status: "failed", phase: "health", message: "HTTP 503", rolledBack: true }),
    );
    recorder.onEvent(phase("broken", "switch"));
    recorder.onEvent(
      done("broken", {
        status: "failed",
        phase: "switch",
        message: "switch-to-configuration failed",
        rolledBack: false,
      }),
    );
    recorder.onEvent(done("skipped", { status: "skipped", reason: "unreachable" }));
    // A host no wave names is not recorded.
    recorder.onEvent(done("stranger", activated));
    recorder.onEvent({ type: "stopped", reason: "the failure budget is spent", notStarted: [] });
    time.set(LATER);
    await recorder.finish("failed");

    const { key, record } = await storedRecord();
    expect(key).toBe(rolloutKey(START, record?.id ?? ""));
    expect(record?.id).toMatch(/^[0-9a-f]{12}$/);
    const host = (
      name: string,
      state: string,
      p: string | null,
      system: string | null,
      message: string | null = null,
      // Planned hosts: what they ran before, as the plan says (unknown here).
    ) => ({
      host: name,
      state,
      phase: p,
      system,
      ...(system === null ? {} : { before: null }),
      message,
    });
    expect(record).toEqual({
      version: 1,
      id: record?.id,
      mode: "ssh",
      action: "switch",
      state: "failed",
      stopped: "the failure budget is spent",
      waves: [
        { index: 1, kind: "canary", hosts: [host("canary", "confirmed", null, V1)] },
        {
          index: 2,
          kind: "main",
          hosts: [
            // Still pending when the rollout ended: never started.
            host("waiting", "not-started", null, V1),
            host("connecting", "activating", "connect", V1),
            host("copying", "activating", "copy", V1),
            host("switching", "activating", "switch", V2),
            host("checking", "health", "health", V2),
            host("confirming", "health", "confirm", V2),
            host("ok", "confirmed", null, V1),
            host("undone", "rolled-back", "health", V1, "HTTP 503"),
            host("broken", "failed", "switch", V2, "switch-to-configuration failed"),
            host("skipped", "unreachable", null, V2, "unreachable"),
            host("unplanned", "not-started", null, null),
          ],
        },
      ],
      startedAt: START.toISOString(),
      updatedAt: LATER.toISOString(),
    });
  });

  it("a skipped host's message is its own when it gives one", async () => {
    const recorder = new RolloutRecorder(store, { mode: "agent", action: "boot" });
    recorder.onEvent(waveStart(1, "main", ["web1"]));
    recorder.onEvent(
      done("web1", { status: "skipped", reason: "not-started", message: "the rollout stopped" }),
    );
    await recorder.finish("interrupted");
    const { record } = await storedRecord();
    expect(record?.mode).toBe("agent");
    expect(record?.action).toBe("boot");
    expect(record?.state).toBe("interrupted");
    expect(record?.waves[0]?.hosts[0]).toEqual({
      host: "web1",
      state: "not-started",
      phase: null,
      system: null,
      message: "the rollout stopped",
    });
  });

  it("moves a host pending → activating → health → confirmed, writing the wave and the end at once", async () => {
    const recorder = new RolloutRecorder(store, { mode: "ssm", action: "switch" });
    recorder.onEvent(planned({ web1: V1 }));
    recorder.onEvent(waveStart(1, "canary", ["web1"]));
    // At once: well before the throttle (1 s) would let a write through.
    await vi.waitFor(
      async () => {
        const { record } = await storedRecord();
        expect(record?.waves[0]?.hosts[0]).toMatchObject({ state: "pending", phase: null });
      },
      { timeout: 500, interval: 10 },
    );
    const entry = () => recorder.record().waves[0]?.hosts[0];
    recorder.onEvent(phase("web1", "connect"));
    expect(entry()).toEqual({
      host: "web1",
      state: "activating",
      phase: "connect",
      system: V1,
      before: null,
      message: null,
    });
    recorder.onEvent(phase("web1", "copy"));
    expect(entry()).toMatchObject({ state: "activating", phase: "copy" });
    recorder.onEvent(phase("web1", "switch"));
    expect(entry()).toMatchObject({ state: "activating", phase: "switch" });
    recorder.onEvent(phase("web1", "health"));
    expect(entry()).toMatchObject({ state: "health", phase: "health" });
    recorder.onEvent(phase("web1", "confirm"));
    expect(entry()).toMatchObject({ state: "health", phase: "confirm" });
    recorder.onEvent(done("web1", activated));
    await vi.waitFor(
      async () => {
        const { record } = await storedRecord();
        expect(record?.waves[0]?.hosts[0]).toEqual({
          host: "web1",
          state: "confirmed",
          phase: null,
          system: V1,
          before: null,
          message: null,
        });
        expect(record?.state).toBe("running");
      },
      { timeout: 500, interval: 10 },
    );
    await recorder.finish("succeeded");
    const { record } = await storedRecord();
    expect(record?.state).toBe("succeeded");
    expect(record?.mode).toBe("ssm");
  });

  it("writes nothing when the deploy ends before any wave", async () => {
    const { store: counted, puts } = countPuts(store);
    const recorder = new RolloutRecorder(counted, { mode: "ssh", action: "switch" });
    recorder.onEvent(planned({ web1: V1 }));
    await recorder.finish("succeeded");
    expect(puts.started).toBe(0);
    expect(await listNewestRollouts(store, 10)).toEqual([]);
  });

  it("throttles phase changes: several in a row make one write, a second later", async () => {
    const { store: counted, puts } = countPuts(store);
    const recorder = new RolloutRecorder(counted, { mode: "ssh", action: "switch" });
    recorder.onEvent(planned({ web1: V1, web2: V1 }));
    recorder.onEvent(waveStart(1, "main", ["web1", "web2"]));
    await vi.waitFor(() => expect(puts.ended).toBe(1), { timeout: 500, interval: 5 });
    expect(puts.started).toBe(1);

    const changed = performance.now();
    recorder.onEvent(phase("web1", "connect"));
    recorder.onEvent(phase("web2", "connect"));
    recorder.onEvent(phase("web1", "copy"));
    recorder.onEvent(phase("web1", "switch"));
    await sleep(500);
    expect(puts.started).toBe(1);
    const { record: before } = await storedRecord();
    expect(before?.waves[0]?.hosts.map((h) => h.state)).toEqual(["pending", "pending"]);

    await vi.waitFor(() => expect(puts.ended).toBe(2), { timeout: 3000, interval: 10 });
    expect(performance.now() - changed).toBeGreaterThanOrEqual(950);
    const { record: after } = await storedRecord();
    expect(after?.waves[0]?.hosts.map((h) => [h.host, h.state, h.phase])).toEqual([
      ["web1", "activating", "switch"],
      ["web2", "activating", "connect"],
    ]);
    // Nothing changed since: no more writes.
    await sleep(1200);
    expect(puts.started).toBe(2);
    await recorder.finish("succeeded");
    expect(puts.started).toBe(3);
  });

  it("writes the record every heartbeat while the rollout runs, changed or not, and stops when it ends", async () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    try {
      const time = clock(START);
      const { store: counted, puts } = countPuts(store);
      const recorder = new RolloutRecorder(counted, {
        mode: "ssh",
        action: "switch",
        now: time.now,
      });
      recorder.onEvent(waveStart(1, "main", ["web1"]));
      await vi.waitFor(() => expect(puts.ended).toBe(1), { timeout: 500, interval: 5 });
      time.set(new Date(START.getTime() + ROLLOUT_HEARTBEAT_SECONDS * 1000));
      vi.advanceTimersByTime(ROLLOUT_HEARTBEAT_SECONDS * 1000);
      await vi.waitFor(() => expect(puts.ended).toBe(2), { timeout: 500, interval: 5 });
      const { record } = await storedRecord();
      expect(record?.state).toBe("running");
      expect(record?.updatedAt).toBe(time.now().toISOString());
      await recorder.finish("succeeded");
      const written = puts.started;
      vi.advanceTimersByTime(5 * ROLLOUT_HEARTBEAT_SECONDS * 1000);
      await sleep(50);
      expect(puts.started).toBe(written);
    } finally {
      vi.useRealTimers();
    }
  });

  it("writes nothing more once finished", async () => {
    const { store: counted, puts } = countPuts(store);
    const recorder = new RolloutRecorder(counted, { mode: "ssh", action: "switch" });
    recorder.onEvent(waveStart(1, "main", ["web1"]));
    recorder.onEvent(done("web1", activated));
    await recorder.finish("succeeded");
    const written = puts.started;
    recorder.onEvent(phase("web1", "connect"));
    recorder.onEvent(waveStart(2, "main", ["web2"]));
    await sleep(1200);
    expect(puts.started).toBe(written);
    const { record } = await storedRecord();
    expect(record?.state).toBe("succeeded");
    expect(record?.waves).toHaveLength(1);
  });

  it("steps of hosts while a write is in flight wait for the throttle, not the write's end", async () => {
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const { store: slow, puts } = countPuts(
      wrapStore(store, {
        put: async (key, body, options) => {
          await held;
          return await store.put(key, body, options);
        },
      }),
    );
    const recorder = new RolloutRecorder(slow, { mode: "ssh", action: "switch" });
    recorder.onEvent(waveStart(1, "main", ["web1", "web2"]));
    recorder.onEvent(phase("web1", "connect"));
    recorder.onEvent(phase("web2", "connect"));
    release();
    await sleep(300);
    // The wave's write only: the steps come with the throttle's next write.
    expect(puts.started).toBe(1);
    await vi.waitFor(() => expect(puts.ended).toBe(2), { timeout: 2000, interval: 20 });
    const { record } = await storedRecord();
    expect(record?.waves[0]?.hosts.map((h) => h.state)).toEqual(["activating", "activating"]);
    await recorder.finish("succeeded");
  });

  it("paces writes as hosts end by how long a write takes: a large record is not written back to back", async () => {
    const { store: slow, puts } = countPuts(
      wrapStore(store, {
        put: async (key, body, options) => {
          await sleep(50);
          return await store.put(key, body, options);
        },
      }),
    );
    const hosts = Array.from({ length: 30 }, (_, i) => `web${i + 1}`);
    const recorder = new RolloutRecorder(slow, { mode: "ssh", action: "switch" });
    recorder.onEvent(waveStart(1, "main", hosts));
    // 30 hosts end 10 ms apart: written back to back, that would be a write every 50 ms.
    for (const host of hosts) {
      recorder.onEvent(done(host, activated));
      await sleep(10);
    }
    await vi.waitFor(
      async () => {
        const { record } = await storedRecord();
        expect(record?.waves[0]?.hosts.every((h) => h.state === "confirmed")).toBe(true);
      },
      { timeout: 3000, interval: 20 },
    );
    // The wave's write, then one at most every 200 ms (4 × 50 ms) while ~300 ms of ends go by.
    expect(puts.started).toBeLessThanOrEqual(4);
    await recorder.finish("succeeded");
  });

  it("tells a failed write once and never throws, to the last write", async () => {
    const { store: counted, puts } = countPuts(store, () => new Error("the disk is full"));
    const warnings: string[] = [];
    const recorder = new RolloutRecorder(counted, {
      mode: "ssh",
      action: "switch",
      onWarning: (message) => warnings.push(message),
    });
    recorder.onEvent(waveStart(1, "main", ["web1", "web2"]));
    recorder.onEvent(done("web1", activated));
    // The wave's write, then (one at a time) the host's.
    await vi.waitFor(() => expect(puts.ended).toBe(2), { timeout: 500, interval: 5 });
    expect(warnings).toEqual(["the rollout record could not be written: the disk is full"]);
    await expect(recorder.finish("failed")).resolves.toBeUndefined();
    expect(puts.started).toBe(3);
    expect(warnings).toEqual(["the rollout record could not be written: the disk is full"]);
    expect(await listNewestRollouts(store, 10)).toEqual([]);
  });

  it("after a failed write, writes again on the next change", async () => {
    let failing = true;
    const { store: counted, puts } = countPuts(store, () =>
      failing ? new Error("access denied") : undefined,
    );
    const warnings: string[] = [];
    const recorder = new RolloutRecorder(counted, {
      mode: "ssh",
      action: "switch",
      onWarning: (message) => warnings.push(message),
    });
    recorder.onEvent(waveStart(1, "main", ["web1", "web2"]));
    await vi.waitFor(() => expect(puts.ended).toBe(1), { timeout: 500, interval: 5 });
    expect(await listNewestRollouts(store, 10)).toEqual([]);
    failing = false;
    recorder.onEvent(done("web1", activated));
    await vi.waitFor(() => expect(puts.ended).toBe(2), { timeout: 500, interval: 5 });
    const { record } = await storedRecord();
    expect(record?.state).toBe("running");
    expect(record?.waves[0]?.hosts.map((h) => h.state)).toEqual(["confirmed", "pending"]);
    recorder.onEvent(done("web2", activated));
    await recorder.finish("succeeded");
    expect(warnings).toEqual(["the rollout record could not be written: access denied"]);
    expect((await storedRecord()).record?.state).toBe("succeeded");
  });
});

describe("recordRollout", () => {
  it("records nothing without a cache", async () => {
    expect(await recordRollout(undefined, { mode: "ssh", action: "switch" })).toBeUndefined();
  });

  it("opens the cache's store and writes the record a last time on finish", async () => {
    const recording = await recordRollout(`file://${dir}?fsync=false`, {
      mode: "agent",
      action: "test",
    });
    expect(recording).toBeDefined();
    recording?.recorder.onEvent(waveStart(1, "canary", ["web1"]));
    recording?.recorder.onEvent(done("web1", activated));
    await recording?.finish("succeeded");
    const { key, record } = await storedRecord();
    expect(key).toBe(
      rolloutKey(new Date(record?.startedAt ?? 0), recording?.recorder.record().id ?? ""),
    );
    expect(record).toMatchObject({ mode: "agent", action: "test", state: "succeeded" });
    expect(record?.waves[0]?.hosts[0]?.state).toBe("confirmed");
  });
});

describe("the rollout record from the plan", () => {
  it("lists every wave and host of the plan, pending until it starts, the skipped ones, and who started it from what", () => {
    const recorder = new RolloutRecorder(store, {
      mode: "ssh",
      action: "switch",
      origin: {
        by: "alice@deployer",
        sources: [{ flake: "/src/fleet", rev: "a".repeat(40), dirty: true }],
      },
    });
    recorder.onEvent({
      type: "plan",
      plan: {
        action: "switch",
        hosts: [
          { host: "web1", desired: V1, action: "activate" },
          { host: "db1", desired: V1, action: "activate" },
          { host: "web2", desired: V1, action: "activate" },
          { host: "db2", desired: V1, action: "skip" },
          { host: "db3", desired: V1, action: "unreachable", error: "ssh: no route to host" },
        ],
        waves: [
          { wave: 1, kind: "canary", hosts: ["web1", "db1"] },
          { wave: 2, kind: "main", hosts: ["web2"] },
        ],
      } as unknown as DeployPlan,
    });
    const record = recorder.record();
    expect(
      record.waves.map((w) => [w.index, w.kind, w.hosts.map((h) => [h.host, h.state])]),
    ).toEqual([
      [
        1,
        "canary",
        [
          ["web1", "pending"],
          ["db1", "pending"],
        ],
      ],
      [2, "main", [["web2", "pending"]]],
    ]);
    expect(record.skipped?.map((h) => [h.host, h.state, h.message])).toEqual([
      ["db2", "up-to-date", "up to date"],
      ["db3", "unreachable", "ssh: no route to host"],
    ]);
    expect(record).toMatchObject({
      by: "alice@deployer",
      sources: [{ flake: "/src/fleet", rev: "a".repeat(40), dirty: true }],
    });
    // Read back as the dashboard reads it.
    const text = Buffer.from(JSON.stringify(record));
    expect(parseRolloutRecord(text, "test")).toEqual(record);
  });
});

describe("what came of each selected host", () => {
  it("ends partial when a host was unreachable or never started, each named with what it ran before", async () => {
    const recorder = new RolloutRecorder(store, {
      mode: "ssh",
      action: "switch",
      rollback: {
        undoes: "0123456789ab",
        left: [
          { host: "gone", state: "refused", phase: null, system: null, message: "changed since" },
        ],
      },
    });
    const p = {
      action: "switch",
      hosts: [
        { host: "a", desired: V2, current: V1, action: "activate" },
        { host: "b", desired: V2, current: V1, action: "activate" },
        { host: "away", desired: V1, current: undefined, action: "unreachable", error: "no route" },
      ],
      waves: [
        { wave: 1, kind: "main", hosts: ["a"] },
        { wave: 2, kind: "main", hosts: ["b"] },
      ],
    } as unknown as DeployPlan;
    recorder.onEvent({ type: "plan", plan: p });
    recorder.onEvent(waveStart(1, "main", ["a"]));
    recorder.onEvent(done("a", activated));
    recorder.onEvent({ type: "stopped", reason: "interrupted", notStarted: ["b"] });
    await recorder.finish("succeeded");
    const { record } = await storedRecord();
    expect(record?.state).toBe("partial");
    expect(record?.undoes).toBe("0123456789ab");
    expect(record?.waves.flatMap((w) => w.hosts.map((h) => [h.host, h.state, h.before]))).toEqual([
      ["a", "confirmed", V1],
      ["b", "not-started", V1],
    ]);
    expect(record?.skipped?.map((h) => [h.host, h.state, h.message])).toEqual([
      ["gone", "refused", "changed since"],
      ["away", "unreachable", "no route"],
    ]);
  });
});

describe("a rollout in which no host activates", () => {
  const planOf = (hosts: unknown[]) =>
    ({ action: "switch", hosts, waves: [] }) as unknown as DeployPlan;

  it("is recorded when it names a host it could not reach (that host is behind it)", async () => {
    const recorder = new RolloutRecorder(store, { mode: "ssh", action: "switch" });
    recorder.onEvent({
      type: "plan",
      plan: planOf([
        { host: "a", desired: V2, current: V2, action: "skip" },
        { host: "away", desired: V2, current: undefined, action: "unreachable", error: "no route" },
      ]),
    });
    expect(recorder.recorded).toBe(true);
    await recorder.finish("succeeded");
    const { record } = await storedRecord();
    expect(record?.state).toBe("partial");
    expect(record?.skipped?.map((h) => [h.host, h.state])).toEqual([
      ["a", "up-to-date"],
      ["away", "unreachable"],
    ]);
  });

  it("is not recorded when every host was up to date", async () => {
    const recorder = new RolloutRecorder(store, { mode: "ssh", action: "switch" });
    recorder.onEvent({
      type: "plan",
      plan: planOf([{ host: "a", desired: V2, current: V2, action: "skip" }]),
    });
    expect(recorder.recorded).toBe(false);
    await recorder.finish("succeeded");
    expect(await listNewestRollouts(store, 10)).toEqual([]);
  });
});

describe("a long bake in the record", () => {
  const measure = (host: string, name: string, i: number): DeployEvent => ({
    type: "bake-measure",
    host,
    name,
    query: `sum(rate(http_requests_total{status=~"5..",host="${host}"}[1m])) / sum(rate(http_requests_total{host="${host}"}[1m]))`,
    condition: "at most 0.05",
    measurement: { at: i * 10, value: 0.001, verdict: "pass", why: "0.001 is at most 0.05" },
  });

  it("keeps the latest measurements while a host bakes, a few once it passed, and stays readable at 50 hosts × 5 queries × 360 rounds", async () => {
    const hosts = Array.from({ length: 50 }, (_, i) => `web${i + 1}`);
    const queries = ["errors", "latency", "saturation", "restarts", "traffic"];
    const recorder = new RolloutRecorder(store, { mode: "ssh", action: "switch" });
    recorder.onEvent(planned(Object.fromEntries(hosts.map((h) => [h, V1]))));
    recorder.onEvent(waveStart(1, "main", hosts));
    for (const h of hosts) recorder.onEvent(done(h, activated));
    recorder.onEvent({
      type: "bake-start",
      wave: 1,
      hosts,
      seconds: 3600,
      interval: 10,
      analysis: queries,
    });
    for (let i = 1; i <= 360; i++) {
      for (const h of hosts) for (const q of queries) recorder.onEvent(measure(h, q, i));
    }
    const baking = recorder.record().waves[0]?.hosts[0]?.bake;
    expect(baking?.analysis.map((a) => a.measurements.length)).toEqual([30, 30, 30, 30, 30]);
    expect(baking?.analysis[0]?.measurements.at(-1)?.at).toBe(3600);
    for (const h of hosts) {
      recorder.onEvent({ type: "bake-done", host: h, ok: true, seconds: 3600 });
    }
    await recorder.finish("succeeded");
    const { record } = await storedRecord();
    const ended = record?.waves[0]?.hosts[0]?.bake;
    expect(ended?.state).toBe("passed");
    expect(ended?.analysis.map((a) => a.measurements.length)).toEqual([3, 3, 3, 3, 3]);
  });
});
