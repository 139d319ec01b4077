import { readFileSync, readlinkSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { wrapStore } from "../store/wrap-store.js";
import { collectGarbage } from "./gc.js";
import { CacheLease, takeGcLock } from "./gc-lease.js";

let dir: string;
let store: ObjectStore;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-lease-"));
  store = await openStore(`file://${dir}`);
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

const keys = async (prefix: string) => (await store.list(prefix)).objects.map((o) => o.key);

/** Waits until `ready` holds, asking every 10 ms; fails after 10 s (a bound, not a timing). */
async function until(ready: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await ready())) {
    if (Date.now() > deadline) throw new Error("waited 10 s for a condition that never held");
    await sleep(10);
  }
}
const FAST = { pollMs: 20 };

/** The store, whose HEADs of keys `failing` picks fail once each (a network blip past its retries). */
function headFailingOnce(failing: (key: string) => boolean): ObjectStore {
  const failed = new Set<string>();
  return wrapStore(store, {
    head: async (key) => {
      if (failing(key) && !failed.has(key)) {
        failed.add(key);
        throw new Error(`HEAD ${key} failed`);
      }
      return store.head(key);
    },
  });
}

describe("leases and the collection lock", () => {
  it("a store that fails right after the lock is put leaves no lock standing (pushes would wait an hour)", async () => {
    const blip = headFailingOnce((key) => key === "gc/lock.json");
    await expect(takeGcLock(blip, { waitMs: 0, ...FAST })).rejects.toThrow(
      /HEAD gc\/lock.json failed/,
    );
    expect(await keys("gc/")).toEqual([]);
  });

  it("a lock that cannot be removed after a collection is said in its report, not thrown over it", async () => {
    await store.put("nix-cache-info", Buffer.from("StoreDir: /nix/store\n"));
    const refusing = wrapStore(store, {
      delete: async (key) => {
        if (key === "gc/lock.json") throw new Error("AccessDenied: gc/lock.json");
        return store.delete(key);
      },
    });
    const report = await collectGarbage({
      store: refusing,
      readRoots: async () => ({
        roots: new Map(),
        origins: new Map(),
        unreadable: [],
        skipped: [],
      }),
      graceMs: 3600_000,
      dryRun: false,
      waitMs: 1000,
      pricePerGbMonth: 0.023,
    });
    expect(report.problems).toContain(
      "the lock (gc/lock.json) could not be removed: AccessDenied: gc/lock.json; pushes and deploys wait for it until it lapses, 60 minutes after it was put",
    );
    expect(report.reportKey).toMatch(/^gc\/reports\//);
  });

  it("a store that fails right after a lease is put leaves no lease standing (collections would be refused)", async () => {
    const blip = headFailingOnce((key) => key.startsWith("gc/leases/"));
    await expect(CacheLease.take(blip, "push", FAST)).rejects.toThrow(/HEAD gc\/leases\/.* failed/);
    expect(await keys("gc/")).toEqual([]);
  });

  it("a lease whose renewals fail past its life has lapsed, and is taken again only once the collection that ran meanwhile ends", async () => {
    let failing = false;
    // This test's store, whatever later tests make `store`: a renewal never writes into theirs.
    const base = store;
    const flaky = wrapStore(base, {
      put: async (key, body, options) => {
        if (failing && key.startsWith("gc/leases/")) throw new Error(`PUT ${key} failed`);
        return base.put(key, body, options);
      },
    });
    const leaseKeys = async () => (await base.list("gc/leases/")).objects.map((o) => o.key);
    const events: string[] = [];
    const lease = await CacheLease.take(flaky, "push", {
      ...FAST,
      renewMs: 10,
      lapseMs: 100,
      onEvent: (e) => events.push(e.type),
    });
    let lock: Awaited<ReturnType<typeof takeGcLock>> | undefined;
    try {
      expect(lease.lapsed).toBe(false);
      expect(await lease.regain()).toBe(false);
      failing = true;
      // Each wait is for what it waits for (bounded), not for a time: a loaded machine runs
      // the renewals late.
      await until(() => lease.lapsed);
      expect(events).toContain("lease-renew-failed");
      // A collector found the lease lapsed, deleted it and took its lock.
      for (const k of await leaseKeys()) await base.delete(k);
      lock = await takeGcLock(base, { waitMs: 0, ...FAST });
      failing = false;
      // A renewal that succeeds after the gap does not make the lease whole again.
      await until(async () => (await leaseKeys()).length === 1);
      expect(lease.lapsed).toBe(true);
      let regained = false;
      const regaining = lease.regain().then((r) => {
        regained = r;
      });
      // It steps back while the collection holds the lock, and waits.
      await until(async () => (await leaseKeys()).length === 0);
      await sleep(100);
      expect(regained).toBe(false);
      await lock.release();
      lock = undefined;
      await regaining;
      expect(regained).toBe(true);
      expect(lease.lapsed).toBe(false);
      expect(await leaseKeys()).toHaveLength(1);
    } finally {
      await lock?.release();
      await lease.release();
    }
    expect(await keys("gc/")).toEqual([]);
  });

  it("a collection waits for a lease, and fails naming the wait when it does not end", async () => {
    const lease = await CacheLease.take(store, "push", FAST);
    await expect(takeGcLock(store, { waitMs: 100, ...FAST })).rejects.toThrow(
      /push or deploy still holds a lease on the cache after 0 s/,
    );
    expect(await keys("gc/")).toHaveLength(1); // the lease only: the lock was given back
    await lease.release();
    const lock = await takeGcLock(store, { waitMs: 100, ...FAST });
    await lock.release();
    expect(await keys("gc/")).toEqual([]);
  });

  it("a push waits while a collection holds the lock, says so once, and goes on when it ends", async () => {
    const lock = await takeGcLock(store, { waitMs: 0, ...FAST });
    const events: string[] = [];
    let leased = false;
    let waiting: () => void = () => {};
    const told = new Promise<void>((resolve) => {
      waiting = resolve;
    });
    // Polls far apart: between the event (its lease just deleted) and its next try, nothing of
    // it may be in the store.
    const pushing = CacheLease.take(store, "push", {
      pollMs: 2000,
      onEvent: (e) => {
        events.push(e.type);
        waiting();
      },
    }).then(async (lease) => {
      leased = true;
      await lease.release();
    });
    await told;
    expect(leased).toBe(false);
    expect(await keys("gc/leases/")).toEqual([]); // it stepped back while it waits
    await lock.release();
    await pushing;
    expect(leased).toBe(true);
    expect(events).toEqual(["waiting-for-gc"]);
    expect(await keys("gc/")).toEqual([]);
  });

  it("a push waits for collections a bounded time, then fails naming the lock's holder", async () => {
    const lock = await takeGcLock(store, { waitMs: 0, ...FAST });
    await expect(CacheLease.take(store, "push", { ...FAST, waitMs: 200 })).rejects.toMatchObject({
      code: "gc-lock-held",
      message: expect.stringMatching(/its garbage collection lock \(gc\/lock.json, by .+ since /),
    });
    // It stepped back: only the lock is there.
    expect(await keys("gc/")).toEqual(["gc/lock.json"]);
    await lock.release();
  });

  it("two collections: the second is refused while the first holds the lock", async () => {
    const first = await takeGcLock(store, { waitMs: 0, ...FAST });
    await expect(takeGcLock(store, { waitMs: 0, ...FAST })).rejects.toThrow(
      /another garbage collection holds the cache/,
    );
    await first.release();
  });

  it("a lock or a lease whose process in this boot and pid namespace is gone holds nothing", async () => {
    const dead = {
      what: "gc",
      by: "x",
      since: "now",
      host: hostname(),
      pid: 2 ** 22 + 12345,
      boot: readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim(),
      pidns: /\d+/.exec(readlinkSync("/proc/self/ns/pid"))?.[0],
    };
    await store.put("gc/lock.json", Buffer.from(JSON.stringify(dead)));
    await (await CacheLease.take(store, "push", FAST)).release();
    await store.put("gc/leases/dead.json", Buffer.from(JSON.stringify({ ...dead, what: "push" })));
    const lock = await takeGcLock(store, { waitMs: 0, ...FAST });
    expect(await keys("gc/leases/")).toEqual([]); // the dead lease was tidied away
    await lock.release();
  });

  it("a lock's holder, as written by whoever can write the store, is told without its control characters", async () => {
    const planted = {
      what: "gc",
      by: "\u001b]0;pwned\u0007\u001b[2J\u001b[31mFAKE\u001b[0m",
      since: "\u001b[2Jnow",
      host: "elsewhere",
      pid: 1,
    };
    await store.put("gc/lock.json", Buffer.from(JSON.stringify(planted)));
    const holders: string[] = [];
    const pushing = CacheLease.take(store, "push", {
      ...FAST,
      onEvent: (e) => {
        if (e.type === "waiting-for-gc") holders.push(`${e.holder.by} ${e.holder.since}`);
      },
    });
    await vi.waitFor(() => expect(holders.length).toBeGreaterThan(0), { timeout: 30_000 });
    await store.delete("gc/lock.json");
    await (await pushing).release();
    const controls = [...holders.join("")].filter((c) => c.charCodeAt(0) < 0x20 || c === "\u007f");
    expect(controls).toEqual([]);
    expect(holders[0]).toContain("FAKE");
  });

  it("a lease with the same hostname and a pid that is gone, but no boot or pid namespace to prove it, holds until it lapses", async () => {
    const unproven = {
      what: "deploy",
      by: "x",
      since: "now",
      host: hostname(),
      pid: 2 ** 22 + 12345,
    };
    await store.put("gc/leases/unproven.json", Buffer.from(JSON.stringify(unproven)));
    // Its reason is in the refusal itself: a poll slower than the 100 ms wait (a loaded
    // machine) reaches the refusal before it tells any wait.
    await expect(takeGcLock(store, { waitMs: 100, ...FAST })).rejects.toThrow(
      /1 push or deploy still holds a lease.*deploy by x since now \(its holder names no boot or pid namespace[^)]*held until the lease lapses/,
    );
    expect(await keys("gc/leases/")).toEqual(["gc/leases/unproven.json"]);
  });

  it("an interrupt while a push waits for a collection ends it as interrupted", async () => {
    const lock = await takeGcLock(store, { waitMs: 0, ...FAST });
    const controller = new AbortController();
    const pushing = CacheLease.take(store, "push", { ...FAST, signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    await expect(pushing).rejects.toMatchObject({ code: "interrupted" });
    await lock.release();
  });

  describe("judged by the store's clock, not the judge's", () => {
    // This process's clock set ahead; the directory store's times stay the kernel's (a clock
    // the store keeps, as S3 keeps its own).
    const ahead = (minutes: number) => {
      vi.useFakeTimers({ toFake: ["Date"] });
      vi.setSystemTime(Date.now() + minutes * 60_000);
    };
    afterEach(() => vi.useRealTimers());

    it("a collector whose clock is 11 minutes ahead still waits for a lease renewed just now", async () => {
      const lease = await CacheLease.take(store, "push", FAST);
      ahead(11);
      await expect(takeGcLock(store, { waitMs: 100, ...FAST })).rejects.toThrow(
        /1 push or deploy still holds a lease/,
      );
      expect(await keys("gc/leases/")).toHaveLength(1);
      await lease.release();
    });

    it("a writer whose clock is 61 minutes ahead still waits for a lock taken just now", async () => {
      const lock = await takeGcLock(store, { waitMs: 0, ...FAST });
      ahead(61);
      const events: string[] = [];
      const controller = new AbortController();
      const pushing = CacheLease.take(store, "push", {
        ...FAST,
        signal: controller.signal,
        onEvent: (e) => events.push(e.type),
      });
      setTimeout(() => controller.abort(), 200);
      await expect(pushing).rejects.toMatchObject({ code: "interrupted" });
      expect(events).toEqual(["waiting-for-gc"]);
      expect(await keys("gc/leases/")).toEqual([]);
      await lock.release();
    });

    it("a collector stops deleting once its wall clock says it held the lock 50 minutes (a suspend the monotonic clock does not count)", async () => {
      const lock = await takeGcLock(store, { waitMs: 0, ...FAST });
      lock.check();
      ahead(50);
      expect(() => lock.check()).toThrow(/ran 50 min and stopped deleting/);
      await lock.release();
    });
  });
});
