import { describe, expect, it } from "vitest";
import { mapLimit, Semaphore } from "./pool.js";

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
