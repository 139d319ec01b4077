import { describe, expect, it } from "vitest";
import { FlushBatches } from "./flush-batch.js";

/** A flush that records each call and settles only when told to. */
function controlled() {
  const calls: { settle: (err?: Error) => void }[] = [];
  const flush = () =>
    new Promise<void>((resolve, reject) => {
      calls.push({ settle: (err) => (err ? reject(err) : resolve()) });
    });
  return { calls, flush };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe("FlushBatches", () => {
  it("flushes per batch of bytes, in smaller batches near the end, and once more at the end", async () => {
    const { calls, flush } = controlled();
    // 1000 bytes to store, batches of at most 100 and at least 10.
    const batches = new FlushBatches(flush, 1000, 100, 10);
    batches.stored(60);
    expect(calls).toHaveLength(0);
    batches.stored(50); // 110 unflushed: a batch
    expect(calls).toHaveLength(1);
    batches.stored(700); // 810 stored, 190 left: the batch is now half of what is left, 95
    expect(calls).toHaveLength(2);
    batches.stored(60); // 130 left: 60 < 65
    expect(calls).toHaveLength(2);
    batches.stored(20); // 80 unflushed, 110 left: 80 >= 55
    expect(calls).toHaveLength(3);
    batches.stored(12); // 98 left: 12 < 49
    batches.stored(90); // 102 unflushed, 8 left: the floor, 10
    expect(calls).toHaveLength(4);
    batches.stored(8); // nothing left: finish() flushes it
    expect(calls).toHaveLength(4);
    const finished = batches.finish();
    await tick();
    // The last flush starts only once the earlier ones are done.
    expect(calls).toHaveLength(4);
    for (const call of calls) call.settle();
    await tick();
    expect(calls).toHaveLength(5);
    calls[4]?.settle();
    await finished;
  });

  it("reports a failed flush along the way at the end, after the last flush", async () => {
    const { calls, flush } = controlled();
    const batches = new FlushBatches(flush, 300, 100, 10);
    batches.stored(150);
    calls[0]?.settle(new Error("disk on fire"));
    const finished = batches.finish();
    await tick();
    expect(calls).toHaveLength(2);
    calls[1]?.settle();
    await expect(finished).rejects.toThrow("disk on fire");
  });

  it("fails with the last flush's error", async () => {
    const { calls, flush } = controlled();
    const batches = new FlushBatches(flush, 50, 100, 10);
    batches.stored(50);
    const finished = batches.finish();
    await tick();
    expect(calls).toHaveLength(1);
    calls[0]?.settle(new Error("no space left"));
    await expect(finished).rejects.toThrow("no space left");
  });
});
