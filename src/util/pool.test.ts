import { describe, expect, it } from "vitest";
import { ByteBudget, mapLimit, Semaphore } from "./pool.js";

describe("mapLimit", () => {
  it("keeps order and never exceeds the limit", async () => {
    let running = 0;
    let peak = 0;
    const out = await mapLimit([5, 1, 4, 2, 3, 0, 6], 3, async (n) => {
      running++;
      peak = Math.max(peak, running);
      await new Promise((r) => setTimeout(r, n * 3));
      running--;
      return n * 10;
    });
    expect(out).toEqual([50, 10, 40, 20, 30, 0, 60]);
    expect(peak).toBe(3);
  });

  it("stops starting new work after a failure, lets running work finish, then rejects", async () => {
    const started: number[] = [];
    const finished: number[] = [];
    await expect(
      mapLimit([1, 2, 3, 4, 5, 6], 2, async (n) => {
        started.push(n);
        if (n === 2) throw new Error("boom");
        await new Promise((r) => setTimeout(r, 20));
        finished.push(n);
      }),
    ).rejects.toThrow("boom");
    expect(started).toEqual([1, 2]);
    expect(finished).toEqual([1]);
  });
});

describe("Semaphore", () => {
  it("lets at most N holders in, in arrival order, and ignores double releases", async () => {
    const sem = new Semaphore(2);
    const order: number[] = [];
    const a = await sem.acquire();
    const b = await sem.acquire();
    const c = sem.acquire().then((release) => {
      order.push(3);
      return release;
    });
    const d = sem.acquire().then((release) => {
      order.push(4);
      return release;
    });
    await new Promise((r) => setTimeout(r, 5));
    expect(order).toEqual([]);
    a();
    a();
    (await c)();
    expect(order).toEqual([3]);
    b();
    (await d)();
    expect(order).toEqual([3, 4]);
  });
});

describe("ByteBudget", () => {
  /** Whether `p` has settled after the pending callbacks ran. */
  const settled = async (p: Promise<unknown>) => {
    let done = false;
    p.then(
      () => {
        done = true;
      },
      () => {
        done = true;
      },
    );
    await new Promise((r) => setImmediate(r));
    return done;
  };

  it("lets work in while its bytes fit, and the rest in the order it came as bytes are freed", async () => {
    const budget = new ByteBudget(100);
    const a = await budget.take(40);
    const b = await budget.take(50);
    const c = budget.take(30);
    const d = budget.take(10);
    // 10 bytes are free: c does not fit, and d, which would, waits behind it.
    expect(await settled(c)).toBe(false);
    expect(await settled(d)).toBe(false);
    a();
    a();
    expect(await settled(c)).toBe(true);
    expect(await settled(d)).toBe(true);
    b();
    (await c)();
    (await d)();
    expect(await settled(budget.take(100))).toBe(true);
  });

  it("runs a request larger than the whole budget alone, once nothing holds any", async () => {
    const budget = new ByteBudget(100);
    const small = await budget.take(1);
    const large = budget.take(5000);
    expect(await settled(large)).toBe(false);
    small();
    const release = await large;
    const next = budget.take(1);
    expect(await settled(next)).toBe(false);
    release();
    expect(await settled(next)).toBe(true);
  });

  it("drops a request whose signal aborts while it waits, and lets the next one in", async () => {
    const budget = new ByteBudget(100);
    const held = await budget.take(90);
    const stop = new AbortController();
    const aborted = budget.take(50, stop.signal);
    const after = budget.take(10);
    expect(await settled(after)).toBe(false);
    stop.abort(new Error("interrupted"));
    await expect(aborted).rejects.toThrow("interrupted");
    expect(await settled(after)).toBe(true);
    held();
    await expect(budget.take(1, stop.signal)).rejects.toThrow("interrupted");
  });
});
