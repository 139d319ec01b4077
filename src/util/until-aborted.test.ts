import { describe, expect, it } from "vitest";
import { untilAborted } from "./until-aborted.js";

describe("untilAborted", () => {
  it("gives the work's value, or its error, when the signal does not abort", async () => {
    const signal = new AbortController().signal;
    await expect(untilAborted(Promise.resolve(7), signal)).resolves.toBe(7);
    await expect(untilAborted(Promise.reject(new Error("no")), signal)).rejects.toThrow("no");
  });

  it("rejects with the signal's reason as it aborts, while the work still runs", async () => {
    const stop = new AbortController();
    let finish: (v: number) => void = () => {};
    const work = new Promise<number>((resolve) => {
      finish = resolve;
    });
    const waited = untilAborted(work, stop.signal);
    stop.abort(new Error("deadline"));
    await expect(waited).rejects.toThrow("deadline");
    finish(1);
    await expect(work).resolves.toBe(1);
  });

  it("rejects at once for a signal already aborted, and a late failure is not unhandled", async () => {
    const stop = new AbortController();
    stop.abort(new Error("gone"));
    const work = new Promise<never>((_, reject) => setTimeout(() => reject(new Error("late")), 5));
    await expect(untilAborted(work, stop.signal)).rejects.toThrow("gone");
    await new Promise((r) => setTimeout(r, 20));
  });
});
