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
});
