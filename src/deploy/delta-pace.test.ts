import { describe, expect, it } from "vitest";
import { DELTA_WAIT_MAX_MS, deltaWaitMs, FetchPace } from "./delta-pace.js";
import type { DeployEvent } from "./events.js";

describe("deltaWaitMs", () => {
  it("waits as long as fetching the pending bytes whole takes, and never before a fetch was seen", () => {
    expect(deltaWaitMs(10_000_000, undefined)).toBe(0);
    expect(deltaWaitMs(0, 1_000_000)).toBe(0);
    expect(deltaWaitMs(10_000_000, 5_000_000)).toBe(2000);
    expect(deltaWaitMs(1e15, 1)).toBe(DELTA_WAIT_MAX_MS);
  });
});

describe("FetchPace", () => {
  const phase = (host: string, p: string, elapsed: number): DeployEvent =>
    ({ type: "host-phase", host, phase: p, elapsed }) as DeployEvent;
  const done = (host: string, delta: unknown): DeployEvent =>
    ({
      type: "host-done",
      result: { host, desired: "/x", seconds: 9, outcome: { status: "activated", delta } },
    }) as DeployEvent;

  it("measures from a host's first phase to the first after its realise, over what it fetched", () => {
    const pace = new FetchPace();
    expect(pace.bytesPerSecond()).toBeUndefined();
    pace.observe({ type: "wave-start", wave: 1, kind: "main", hosts: ["a", "b"] });
    for (const e of [
      phase("a", "connect", 0.5),
      phase("a", "realise", 1),
      phase("a", "switch", 2.5),
      phase("a", "health", 3),
      done("a", {
        paths: 0,
        bytes: 0,
        narBytes: 0,
        wholePaths: 3,
        wholeNarBytes: 8_000_000,
        failed: 0,
      }),
      // A host that did not use deltas says nothing of its bytes: not counted.
      phase("b", "realise", 1),
      phase("b", "switch", 9),
      done("b", { skipped: "no substituter" }),
    ]) {
      pace.observe(e);
    }
    expect(pace.bytesPerSecond()).toBe(4_000_000);
  });

  it("takes what the plan says a host lacked when it has no delta report (it fetched whole)", () => {
    const pace = new FetchPace((host) => (host === "c" ? 6_000_000 : undefined));
    pace.observe(phase("c", "connect", 0));
    pace.observe(phase("c", "switch", 2));
    pace.observe(done("c", undefined));
    expect(pace.bytesPerSecond()).toBe(3_000_000);
  });
});
