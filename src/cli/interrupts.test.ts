// The interrupt trap, driven by emitting the signals' events on this process (no real signal
// is sent, and process.exit is stubbed).
import { afterEach, describe, expect, it, vi } from "vitest";
import { INTERRUPTED_EXIT, trapInterrupts } from "./interrupts.js";

afterEach(() => {
  vi.restoreAllMocks();
});

describe("trapInterrupts", () => {
  it("the first SIGINT or SIGTERM aborts with its name; a second exits 130 at once", () => {
    const exit = vi.spyOn(process, "exit").mockImplementation((() => undefined) as never);
    const said: string[] = [];
    const trap = trapInterrupts({
      first: (signal) => said.push(`first ${signal}`),
      second: (signal) => said.push(`second ${signal}`),
    });
    try {
      expect(trap.signal.aborted).toBe(false);
      process.emit("SIGTERM", "SIGTERM");
      expect(trap.signal.aborted).toBe(true);
      expect(trap.signal.reason).toBe("interrupted (SIGTERM)");
      expect(exit).not.toHaveBeenCalled();
      process.emit("SIGINT", "SIGINT");
      expect(exit).toHaveBeenCalledWith(INTERRUPTED_EXIT);
      expect(said).toEqual(["first SIGTERM", "second SIGINT"]);
    } finally {
      trap.release();
    }
  });

  it("SIGHUP (the terminal closed) stops it as the others do", () => {
    const trap = trapInterrupts({ first: () => {}, second: () => {} });
    try {
      process.emit("SIGHUP", "SIGHUP");
      expect(trap.signal.reason).toBe("interrupted (SIGHUP)");
    } finally {
      trap.release();
    }
    expect(process.listenerCount("SIGHUP")).toBe(0);
  });

  it("takes a listener from each of many hosts in flight without a MaxListenersExceededWarning", async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
    process.on("warning", onWarning);
    const trap = trapInterrupts({ first: () => {}, second: () => {} });
    const listeners = Array.from({ length: 50 }, () => () => {});
    try {
      for (const l of listeners) trap.signal.addEventListener("abort", l, { once: true });
      // Node emits its warnings on a later tick.
      await new Promise((resolve) => setImmediate(resolve));
      expect(warnings.filter((w) => w.startsWith("MaxListenersExceededWarning"))).toEqual([]);
    } finally {
      for (const l of listeners) trap.signal.removeEventListener("abort", l);
      process.off("warning", onWarning);
      trap.release();
    }
  });

  it("removes its listeners when released", () => {
    const before = [process.listenerCount("SIGINT"), process.listenerCount("SIGTERM")];
    const trap = trapInterrupts({ first: () => {}, second: () => {} });
    expect(process.listenerCount("SIGINT")).toBe((before[0] ?? 0) + 1);
    trap.release();
    expect([process.listenerCount("SIGINT"), process.listenerCount("SIGTERM")]).toEqual(before);
  });
});
