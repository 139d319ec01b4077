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
const settledState = async (p: Promise<void>) => {
  let state = "pending";
  p.then(
    () => {
      state = "resolved";
    },
    () => {
      state = "rejected";
    },
  );
  await tick();
  return state;
};

describe("FlushBatches", () => {
  it("flushes once a batch holds enough bytes, and resolves its NARs when that flush ends", async () => {
    const { calls, flush } = controlled();
    const batches = new FlushBatches(flush, 10, 100);
    const a = batches.durable(Promise.resolve(), 60);
    await tick();
    expect(calls).toHaveLength(0);
    const b = batches.durable(Promise.resolve(), 50);
    await tick();
    expect(calls).toHaveLength(1);
    expect(await settledState(a)).toBe("pending");
    calls[0]?.settle();
    await expect(Promise.all([a, b])).resolves.toEqual([undefined, undefined]);
    // The next NAR starts a new batch: the first flush does not cover it.
    const c = batches.durable(Promise.resolve(), 1);
    await tick();
    expect(calls).toHaveLength(1);
    expect(await settledState(c)).toBe("pending");
  });

  it("flushes the last batch as soon as every NAR has settled, failed ones included", async () => {
    const { calls, flush } = controlled();
    const batches = new FlushBatches(flush, 3, 1 << 30);
    const ok = [batches.durable(Promise.resolve(), 5), batches.durable(Promise.resolve(), 5)];
    await tick();
    expect(calls).toHaveLength(0);
    const failed = batches.durable(Promise.reject(new Error("upload failed")), 5);
    await expect(failed).rejects.toThrow("upload failed");
    expect(calls).toHaveLength(1);
    calls[0]?.settle();
    await expect(Promise.all(ok)).resolves.toHaveLength(2);
  });

  it("fails the NARs of a batch whose flush fails", async () => {
    const { calls, flush } = controlled();
    const batches = new FlushBatches(flush, 1, 1 << 30);
    const a = batches.durable(Promise.resolve(), 5);
    await tick();
    calls[0]?.settle(new Error("EIO"));
    await expect(a).rejects.toThrow("EIO");
  });
});
