import { afterEach, describe, expect, it, vi } from "vitest";
import { refusalText, type Slot, streamSlots } from "./serve-slots.js";

const staying = () => new AbortController().signal;

function released(slot: Slot): () => void {
  if ("refused" in slot) throw new Error(`refused: ${slot.refused}`);
  return slot.release;
}

describe("streamSlots", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("gives free slots at once, then each one given back to the first in line", async () => {
    const slots = streamSlots({ slots: 2, waiting: 8, waitMs: 10_000 });
    const first = released(await slots.take(staying()));
    const second = released(await slots.take(staying()));
    const order: string[] = [];
    const inLine = async (name: string) => {
      const slot = await slots.take(staying());
      order.push(name);
      return slot;
    };
    const third = inLine("third");
    const fourth = inLine("fourth");
    expect([slots.held(), slots.waiting()]).toEqual([2, 2]);
    first();
    const thirdRelease = released(await third);
    expect(order).toEqual(["third"]);
    // Given back twice, a slot frees one place only.
    first();
    expect([slots.held(), slots.waiting()]).toEqual([2, 1]);
    second();
    released(await fourth)();
    thirdRelease();
    expect(order).toEqual(["third", "fourth"]);
    expect([slots.held(), slots.waiting()]).toEqual([0, 0]);
  });

  it("refuses at once past the line's bound", async () => {
    const slots = streamSlots({ slots: 1, waiting: 1, waitMs: 10_000 });
    const holder = released(await slots.take(staying()));
    const waiter = slots.take(staying());
    expect(await slots.take(staying())).toEqual({ refused: "line-full" });
    holder();
    released(await waiter)();
    expect(slots.held()).toBe(0);
  });

  it("refuses a request that waited past waitMs, and leaves the line to the rest", async () => {
    vi.useFakeTimers();
    const slots = streamSlots({ slots: 1, waiting: 4, waitMs: 1_000 });
    const holder = released(await slots.take(staying()));
    const early = slots.take(staying());
    await vi.advanceTimersByTimeAsync(600);
    const late = slots.take(staying());
    await vi.advanceTimersByTimeAsync(400);
    expect(await early).toEqual({ refused: "timed-out" });
    expect(slots.waiting()).toBe(1);
    holder();
    released(await late)();
    expect([slots.held(), slots.waiting()]).toEqual([0, 0]);
  });

  it("lets a request whose client left go from the line at once, and gives it no slot", async () => {
    const slots = streamSlots({ slots: 1, waiting: 4, waitMs: 10_000 });
    const holder = released(await slots.take(staying()));
    const client = new AbortController();
    const leaving = slots.take(client.signal);
    const after = slots.take(staying());
    client.abort();
    expect(await leaving).toEqual({ refused: "client-left" });
    expect(slots.waiting()).toBe(1);
    holder();
    released(await after)();
    const gone = new AbortController();
    gone.abort();
    expect(await slots.take(gone.signal)).toEqual({ refused: "client-left" });
    expect(slots.held()).toBe(0);
  });

  it.each([0, -1, 1.5, Number.NaN])("refuses %s slots", (n) => {
    expect(() => streamSlots({ slots: n, waiting: 0, waitMs: 0 })).toThrow(RangeError);
  });

  it("says why a request was refused", () => {
    const limits = { slots: 32, waiting: 128, waitMs: 10_000 };
    expect(refusalText("timed-out", limits)).toBe(
      "waited 10000 ms for one of the 32 NAR streams it may send at once",
    );
    expect(refusalText("line-full", limits)).toBe(
      "128 requests were waiting already for one of the 32 NAR streams it may send at once",
    );
  });
});
