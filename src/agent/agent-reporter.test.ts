import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FsStore } from "../store/fs-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { AgentReporter } from "./agent-reporter.js";

let dir: string;
let store: FsStore;
/** When (the faked performance.now()) each PUT to the store finished. */
let puts: number[];

/** The directory store, its PUTs noted as they finish. */
function recording(inner: FsStore): ObjectStore {
  return new Proxy(inner, {
    get(target, property) {
      if (property === "put") {
        return async (...args: Parameters<FsStore["put"]>) => {
          const r = await target.put(...args);
          puts.push(performance.now());
          return r;
        };
      }
      const value = Reflect.get(target, property) as unknown;
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/**
 * Real I/O settles while the faked clock stands still: the PUTs come, or 10 s of real time
 * (hrtime, not faked) pass. Then a moment more, so that a PUT too many is seen.
 */
async function untilPuts(count: number): Promise<void> {
  const end = process.hrtime.bigint() + 10_000_000_000n;
  while (puts.length < count && process.hrtime.bigint() < end) {
    await new Promise((resolve) => setImmediate(resolve));
  }
  for (let i = 0; i < 100; i++) await new Promise((resolve) => setImmediate(resolve));
  expect(puts.length).toBe(count);
}

/** A reporter of one poll a second, no jitter, a heartbeat every poll: a period of 1 s. */
function reporterOf(
  lastSeq: number | null,
  polls: { pollInterval: number; heartbeatEvery: number } = { pollInterval: 1, heartbeatEvery: 1 },
): AgentReporter {
  return new AgentReporter({
    store: recording(store),
    channel: "prod",
    host: "web1",
    ...polls,
    jitter: 0,
    lastSeq: () => lastSeq,
    now: () => new Date().toISOString(),
    warn: () => {},
    storeError: (message) => {
      throw new Error(message);
    },
  });
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-reporter-"));
  store = new FsStore(dir);
  puts = [];
  vi.useFakeTimers({
    toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "performance", "Date"],
  });
});

afterEach(async () => {
  vi.useRealTimers();
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

describe("AgentReporter.heartbeat", () => {
  it("beats at least every two days: a poll an hour and heartbeatEvery 1000 beat every 48 polls", async () => {
    const reporter = reporterOf(1, { pollInterval: 3600, heartbeatEvery: 1000 });
    expect(reporter.heartbeatPeriod).toBe(2 * 86_400);
    await reporter.heartbeat("running", true);
    const beats: number[] = [];
    for (let poll = 1; poll <= 100; poll++) {
      if (await reporter.heartbeat("running")) beats.push(poll);
    }
    expect(beats).toEqual([48, 96]);
    await untilPuts(3);
  });
});

describe("AgentReporter.whileBeating", () => {
  it("beats one period after the last heartbeat, not one period after the work began", async () => {
    const reporter = reporterOf(1);
    expect(reporter.heartbeatPeriod).toBe(1);
    await reporter.heartbeat("running", true);
    await untilPuts(1);
    const first = puts[0] as number;
    // The poll reads the channel and inspects the host for 0.6 s, then activates for 1.5 s.
    await vi.advanceTimersByTimeAsync(600);
    let done = false;
    const working = reporter
      .whileBeating(() => new Promise<void>((resolve) => setTimeout(resolve, 1500)))
      .then(() => {
        done = true;
      });
    await vi.advanceTimersByTimeAsync(399);
    await untilPuts(1);
    // One period after the last heartbeat (before: one period after the work began, 1.6 s
    // after it, and a reader could find the agent a period without one).
    await vi.advanceTimersByTimeAsync(1);
    await untilPuts(2);
    expect((puts[1] as number) - first).toBe(1000);
    await vi.advanceTimersByTimeAsync(1000);
    await untilPuts(3);
    expect((puts[2] as number) - first).toBe(2000);
    // The work ends at 2.1 s: no heartbeat after it.
    await vi.advanceTimersByTimeAsync(100);
    await working;
    expect(done).toBe(true);
    // Nothing left to beat later.
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(5000);
    await untilPuts(3);
  });

  it("beats one period after the work began when none was written before", async () => {
    const reporter = reporterOf(null);
    const started = performance.now();
    const working = reporter.whileBeating(
      () => new Promise<void>((resolve) => setTimeout(resolve, 1200)),
    );
    await vi.advanceTimersByTimeAsync(999);
    await untilPuts(0);
    await vi.advanceTimersByTimeAsync(1);
    await untilPuts(1);
    expect((puts[0] as number) - started).toBe(1000);
    await vi.advanceTimersByTimeAsync(200);
    await working;
    expect(vi.getTimerCount()).toBe(0);
  });
});
