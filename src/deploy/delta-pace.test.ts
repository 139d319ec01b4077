import { describe, expect, it } from "vitest";
import { PACE_HOSTS_KEPT } from "../status/rollout.js";
import {
  DELTA_APPLY_PACE,
  DELTA_PACE_MIN_BYTES,
  DELTA_WAIT_MAX_MS,
  deltaWaitMs,
  FetchPace,
} from "./delta-pace.js";
import type { DeployEvent } from "./events.js";

describe("deltaWaitMs", () => {
  it("waits as long as fetching the pending bytes whole takes, and never before a fetch was seen", () => {
    expect(deltaWaitMs(10_000_000, undefined)).toBe(0);
    expect(deltaWaitMs(0, 1_000_000)).toBe(0);
    expect(deltaWaitMs(10_000_000, 5_000_000)).toBe(2000);
    expect(deltaWaitMs(1e15, 1)).toBe(DELTA_WAIT_MAX_MS);
    // Less what rebuilding them from deltas takes: none when that is no faster.
    expect(deltaWaitMs(10_000_000, 5_000_000, 20_000_000)).toBe(1500);
    expect(deltaWaitMs(10_000_000, 5_000_000, 5_000_000)).toBe(0);
    expect(deltaWaitMs(10_000_000, 5_000_000, 1_000_000)).toBe(0);
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

  const fetched = (pace: FetchPace, host: string, seconds: number, delta: unknown) => {
    pace.observe(phase(host, "connect", 0));
    pace.observe(phase(host, "switch", seconds));
    pace.observe(done(host, delta));
  };
  const whole = (nar: number) => ({
    paths: 0,
    bytes: 0,
    narBytes: 0,
    wholePaths: 5,
    wholeNarBytes: nar,
    failed: 0,
  });
  const byDelta = (nar: number) => ({
    paths: 5,
    bytes: 40_000,
    narBytes: nar,
    wholePaths: 0,
    wholeNarBytes: 0,
    failed: 0,
  });

  it("takes a whole fetch's pace from the hosts that fetched whole, once enough were seen", () => {
    const pace = new FetchPace();
    // A host by delta moved 40 kB of deltas in 4 s: a lower bound of the link, all there is.
    fetched(pace, "a", 4, byDelta(80_000_000));
    expect(pace.bytesPerSecond()).toBe(10_000);
    // A host that fetched 64 MB whole in 8 s: that is the pace a whole fetch goes at.
    fetched(pace, "b", 8, whole(64_000_000));
    expect(pace.bytesPerSecond()).toBe(8_000_000);
  });

  it("favours whole fetches once they were seen faster than a host rebuilt its paths by delta", () => {
    const pace = new FetchPace();
    expect(pace.favoursWhole()).toBe(false);
    // A host by delta alone says nothing of a whole fetch: deltas stay.
    fetched(pace, "a", 4, byDelta(80_000_000));
    expect(pace.favoursWhole()).toBe(false);
    // Whole at 40 MB/s against 20 MB/s by delta: the link is fast, whole wins.
    fetched(pace, "b", 2, whole(80_000_000));
    expect(pace.favoursWhole()).toBe(true);
  });

  it("keeps deltas when the whole fetches seen were slower than rebuilding by delta", () => {
    const pace = new FetchPace((host) => (host === "c" ? 80_000_000 : undefined));
    fetched(pace, "c", 16, undefined);
    fetched(pace, "d", 4, byDelta(80_000_000));
    expect(pace.favoursWhole()).toBe(false);
  });

  it("counts what a host says it fetched only up to what the plan says it lacked", () => {
    // A host that claims 2^53 bytes in 4 s would make the link look fast for every host after
    // it (and, through the record, for the next deploys): it counts as its planned 80 MB.
    const pace = new FetchPace(() => 80_000_000);
    fetched(pace, "liar", 4, whole(2 ** 53 - 1));
    expect(pace.bytesPerSecond()).toBe(20_000_000);
    expect(pace.favoursWhole()).toBe(false);
    expect(pace.seen().whole?.bytes).toBe(80_000_000);
  });

  it("before any host rebuilt by delta, judges a whole fetch against DELTA_APPLY_PACE", () => {
    const fast = new FetchPace();
    fetched(fast, "e", 1, whole(DELTA_APPLY_PACE * 2));
    expect(fast.favoursWhole()).toBe(true);
    const slow = new FetchPace();
    fetched(slow, "f", 4, whole(DELTA_APPLY_PACE * 2));
    expect(slow.favoursWhole()).toBe(false);
  });

  it("judges nothing from fetches too small for the link to show past each host's fixed costs", () => {
    const pace = new FetchPace();
    // A megabyte in a tenth of a second, and a rebuild slower: too few bytes to say.
    fetched(pace, "g", 0.1, whole(1_000_000));
    fetched(pace, "h", 10, byDelta(1_000_000));
    expect(pace.favoursWhole()).toBe(false);
    fetched(pace, "i", 1, whole(DELTA_PACE_MIN_BYTES));
    expect(pace.favoursWhole()).toBe(true);
  });

  describe("with the pace the previous deploy recorded", () => {
    const slowLink = {
      whole: { bytes: 80_000_000, seconds: 64 },
      rebuilt: { bytes: 80_000_000, seconds: 8 },
    };

    it("judges the first wave by it: a wait as long as the bytes take whole, deltas kept", () => {
      const pace = new FetchPace(undefined, slowLink);
      expect(pace.bytesPerSecond()).toBe(80_000_000 / 64);
      // Without a whole pace recorded, the bytes a second of every host it recorded.
      expect(new FetchPace(undefined, { rebuilt: slowLink.rebuilt }).bytesPerSecond()).toBe(
        10_000_000,
      );
      expect(pace.favoursWhole()).toBe(false);
      expect(new FetchPace().bytesPerSecond()).toBeUndefined();
    });

    it("favours whole fetches on a link the previous deploy saw fast", () => {
      const fast = new FetchPace(undefined, { whole: { bytes: 80_000_000, seconds: 2 } });
      expect(fast.favoursWhole()).toBe(true);
    });

    it("gives way to this deploy's own figures, kind by kind, and keeps the rest for the next", () => {
      const pace = new FetchPace(undefined, slowLink);
      // This deploy's first host fetched whole fast: the link changed.
      fetched(pace, "j", 1, whole(DELTA_PACE_MIN_BYTES * 2));
      expect(pace.favoursWhole()).toBe(true);
      expect(pace.bytesPerSecond()).toBe(DELTA_PACE_MIN_BYTES * 2);
      expect(pace.seen()).toEqual({
        whole: { bytes: DELTA_PACE_MIN_BYTES * 2, seconds: 1, hosts: ["j"] },
        rebuilt: slowLink.rebuilt,
      });
    });

    it(`names the hosts each kind was seen on, sorted, at most ${PACE_HOSTS_KEPT}`, () => {
      const pace = new FetchPace();
      for (let i = PACE_HOSTS_KEPT + 4; i >= 0; i--)
        fetched(pace, `h${String(i).padStart(5, "0")}`, 1, whole(DELTA_PACE_MIN_BYTES));
      fetched(pace, "b", 8, byDelta(DELTA_PACE_MIN_BYTES));
      const seen = pace.seen();
      expect(seen.rebuilt?.hosts).toEqual(["b"]);
      expect(seen.whole?.hosts).toHaveLength(PACE_HOSTS_KEPT);
      expect(seen.whole?.hosts?.[0]).toBe("h00000");
      expect(seen.whole?.hosts?.at(-1)).toBe(`h${String(PACE_HOSTS_KEPT - 1).padStart(5, "0")}`);
      expect(seen.whole?.bytes).toBe(DELTA_PACE_MIN_BYTES * (PACE_HOSTS_KEPT + 5));
    });

    it("takes the rebuilding pace from this deploy, else the previous one, else DELTA_APPLY_PACE", () => {
      expect(new FetchPace().rebuiltBytesPerSecond()).toBe(DELTA_APPLY_PACE);
      const pace = new FetchPace(undefined, slowLink);
      expect(pace.rebuiltBytesPerSecond()).toBe(10_000_000);
      fetched(pace, "k", 1, byDelta(DELTA_PACE_MIN_BYTES * 3));
      expect(pace.rebuiltBytesPerSecond()).toBe(DELTA_PACE_MIN_BYTES * 3);
    });

    it("ignores a recorded kind of too few bytes to judge by", () => {
      const pace = new FetchPace(undefined, { whole: { bytes: 1_000_000, seconds: 0.01 } });
      expect(pace.favoursWhole()).toBe(false);
      expect(pace.bytesPerSecond()).toBeUndefined();
    });
  });
});
