import { describe, expect, it, vi } from "vitest";
import type { BuildProgress } from "../cache/nix-activity.js";
import { reportBuildProgress } from "./build-progress.js";
import type { DeployEvent } from "./events.js";

const build = (name: string, since: number) => ({
  drv: `/nix/store/${"a".repeat(32)}-${name}.drv`,
  name,
  machine: undefined,
  since,
});
const progress = (done: number, running: BuildProgress["running"]): BuildProgress => ({
  done,
  expected: 2,
  failed: 0,
  running,
});

describe("build progress events", () => {
  it("says changes at most every 2 s, every 15 s while nothing changes, and the end", () => {
    vi.useFakeTimers();
    try {
      const events: DeployEvent[] = [];
      const reporter = reportBuildProgress(
        (e) => events.push(e),
        () => Date.now(),
      );
      const t0 = Date.now();
      reporter.onProgress(progress(0, [build("a", t0)]));
      expect(events).toHaveLength(1);
      // A change 1 s later waits for the 2 s mark; a quiet build is named again at 15 s.
      vi.advanceTimersByTime(1000);
      reporter.onProgress(progress(0, [build("a", t0), build("b", t0 + 1000)]));
      expect(events).toHaveLength(1);
      vi.advanceTimersByTime(1000);
      expect(events).toHaveLength(2);
      vi.advanceTimersByTime(15_000);
      expect(events).toHaveLength(3);
      expect(events[2]).toMatchObject({
        type: "build-progress",
        building: 2,
        running: [
          { name: "a", seconds: 17 },
          { name: "b", seconds: 16 },
        ],
      });
      // The end, said although it came within 2 s of the last event.
      vi.advanceTimersByTime(500);
      reporter.onProgress(progress(2, []));
      reporter.stop();
      expect(events.at(-1)).toMatchObject({ done: 2, building: 0, running: [] });
      const count = events.length;
      vi.advanceTimersByTime(60_000);
      expect(events).toHaveLength(count);
    } finally {
      vi.useRealTimers();
    }
  });

  it("says nothing while Nix finds its work, and a whole that never shrinks", () => {
    vi.useFakeTimers();
    try {
      const events: DeployEvent[] = [];
      const reporter = reportBuildProgress((e) => events.push(e));
      const at = (done: number, expected: number, failed: number, running = 0) =>
        ({
          done,
          expected,
          failed,
          running: Array.from({ length: running }, (_, i) => build(`d${i}`, Date.now())),
        }) satisfies BuildProgress;
      // Nix counting the goals it finds (1, 2, 3, 4): nothing built yet, nothing said.
      for (const expected of [1, 2, 3, 4]) reporter.onProgress(at(0, expected, 0));
      expect(events).toEqual([]);
      reporter.onProgress(at(0, 4, 0, 1));
      expect(events).toMatchObject([{ done: 0, expected: 4, failed: 0, building: 1 }]);
      // A failure makes two goals moot: Nix expects 1 more, 1 failed; the whole stays 4.
      vi.advanceTimersByTime(2000);
      reporter.onProgress(at(0, 1, 1, 1));
      expect(events.at(-1)).toMatchObject({ done: 0, expected: 3, failed: 1 });
      // Nix finding work again (1, then 2): the whole stays the largest said.
      vi.advanceTimersByTime(2000);
      reporter.onProgress(at(0, 2, 1, 1));
      expect(events.at(-1)).toMatchObject({ expected: 3, failed: 1 });
      // The end, said at stop (a change not said yet): the whole still does not shrink.
      reporter.onProgress(at(1, 1, 1, 0));
      reporter.stop();
      expect(events.at(-1)).toMatchObject({ done: 1, expected: 3, failed: 1 });
    } finally {
      vi.useRealTimers();
    }
  });

  it("says nothing at all for a build that built nothing (all there already)", () => {
    const events: DeployEvent[] = [];
    const reporter = reportBuildProgress((e) => events.push(e));
    reporter.onProgress({ done: 0, expected: 1, failed: 0, running: [] });
    reporter.onProgress({ done: 0, expected: 0, failed: 0, running: [] });
    reporter.stop();
    expect(events).toEqual([]);
  });
});
