// withDeadline: the deadline holds through garbage collections (the reason it exists: an
// AbortSignal.timeout held only by AbortSignal.any is collected on Node 20, and the wait then
// has none), the caller's signal still stops the work, and the deadline ends with the work.
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it, vi } from "vitest";
import { startIdleDeadline, timedOut, withDeadline } from "./deadline.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

/** Work that ends only when its signal aborts, with the signal's reason. */
const untilAborted = (signal: AbortSignal) =>
  new Promise<never>((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    signal.addEventListener("abort", () => reject(signal.reason), { once: true });
  });

describe("withDeadline", () => {
  it("aborts at its deadline though the garbage collector runs meanwhile", async () => {
    const collecting = setInterval(gc, 20);
    try {
      const caller = new AbortController();
      let seen: AbortSignal | undefined;
      const error = await withDeadline(300, caller.signal, (signal) => {
        seen = signal;
        return untilAborted(signal);
      }).catch((err: unknown) => err);
      expect((error as DOMException).name).toBe("TimeoutError");
      expect(seen && timedOut(seen)).toBe(true);
    } finally {
      clearInterval(collecting);
    }
  }, 10_000);

  it("aborts with the caller's reason when the caller's signal does", async () => {
    const caller = new AbortController();
    setTimeout(() => caller.abort(new Error("interrupted")), 50);
    const error = await withDeadline(60_000, caller.signal, untilAborted).catch((e: unknown) => e);
    expect((error as Error).message).toBe("interrupted");
    const already = await withDeadline(60_000, caller.signal, untilAborted).catch((e) => e);
    expect((already as Error).message).toBe("interrupted");
  });

  it("gives the work's result, and its deadline ends with it", async () => {
    let inner: AbortSignal | undefined;
    const result = await withDeadline(50, undefined, async (signal) => {
      inner = signal;
      return 42;
    });
    expect(result).toBe(42);
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(inner?.aborted).toBe(false);
  });
});

describe("startIdleDeadline", () => {
  it("aborts only once the work has been silent for its time: each word puts it off", () => {
    vi.useFakeTimers();
    try {
      const idle = startIdleDeadline(1000);
      for (let i = 0; i < 5; i++) {
        vi.advanceTimersByTime(900);
        idle.touch();
      }
      // 4.5 s in all, never 1 s of silence.
      expect(idle.signal.aborted).toBe(false);
      vi.advanceTimersByTime(999);
      expect(idle.signal.aborted).toBe(false);
      vi.advanceTimersByTime(1);
      expect(timedOut(idle.signal)).toBe(true);
      // A word after it fired does not bring it back.
      idle.touch();
      expect(idle.signal.aborted).toBe(true);
      const cleared = startIdleDeadline(1000);
      cleared.clear();
      vi.advanceTimersByTime(5000);
      expect(cleared.signal.aborted).toBe(false);
    } finally {
      vi.useRealTimers();
    }
  });
});
