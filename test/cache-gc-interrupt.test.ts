// `cache gc` interrupted between its delete batches: the cache stays whole (cache-gc-races
// tests the kill), and what it deleted before the interrupt is counted in a report it keeps
// under gc/reports/ while it still holds its lock, as an uninterrupted one's is.
import { mkdtemp, rm, utimes } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { collectGarbage, type GcOptions } from "../src/cache/gc.js";
import { gcReportKeys, readGcReport } from "../src/cache/gc-reports.js";
import { OperationError } from "../src/errors.js";
import { generateSecretKey } from "../src/nix/keys.js";
import type { ObjectStore } from "../src/store/object-store.js";
import { openStore } from "../src/store/url.js";
import { sayLastWords } from "../src/util/last-words.js";
import { allKeys, putSyntheticPath, syntheticPath } from "../support/synthetic-cache.js";

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-gc-interrupt-"));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A collection of `store` that keeps nothing but what is younger than an hour. */
const collect = (store: ObjectStore, options: Partial<GcOptions> = {}) =>
  collectGarbage({
    store,
    readRoots: async () => ({ roots: new Map(), origins: new Map(), unreadable: [], skipped: [] }),
    graceMs: 3600_000,
    dryRun: false,
    waitMs: 10_000,
    pricePerGbMonth: 0.023,
    ...options,
  });

describe("cache gc interrupted once it has deleted", () => {
  it("keeps a report counting what it deleted, names it, and leaves the rest for the next run", async () => {
    const dir = join(work, "cache");
    const store = await openStore(`file://${dir}?fsync=false`);
    const key = generateSecretKey("gc-interrupt-1");
    await store.put("nix-cache-info", Buffer.from("StoreDir: /nix/store\n"));
    for (let i = 0; i < 3; i++) {
      await putSyntheticPath(store, key, syntheticPath(`doomed-${i}`, `doomed-${i}`), []);
    }
    const old = new Date(Date.now() - 2 * 86400_000);
    for (const k of await allKeys(store)) await utimes(join(dir, k), old, old);
    const interrupt = new AbortController();
    const gc = collect(store, {
      signal: interrupt.signal,
      // Interrupted once its narinfos are gone, before its NARs go.
      onEvent: (event) => {
        if (event.type === "deleting" && event.kind === "narinfo") interrupt.abort();
      },
    });
    const err = await gc.catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "interrupted" });
    const [reportKey] = await gcReportKeys(store);
    expect((err as Error).message).toBe(
      `cache gc of ${store.url}: interrupted; what it deleted before is counted in ${reportKey}`,
    );
    expect(await readGcReport(store, reportKey as string)).toMatchObject({
      interrupted: true,
      dryRun: false,
      deleted: { narinfo: { objects: 3 }, nar: { objects: 0 } },
    });
    // The NARs stay for the next run, which finishes (its lock is free).
    expect((await allKeys(store, "nar/")).length).toBe(3);
    const again = await collect(store);
    expect(again.deleted.nar.objects).toBe(3);
    await store.close();
  });

  it("a collection that fails midway keeps a report of what it deleted, and its error names it", async () => {
    const dir = join(work, "cache-failed");
    const store = await openStore(`file://${dir}?fsync=false`);
    const key = generateSecretKey("gc-interrupt-1");
    await store.put("nix-cache-info", Buffer.from("StoreDir: /nix/store\n"));
    for (let i = 0; i < 2; i++) {
      await putSyntheticPath(store, key, syntheticPath(`failed-${i}`, `failed-${i}`), []);
    }
    const old = new Date(Date.now() - 2 * 86400_000);
    for (const k of await allKeys(store)) await utimes(join(dir, k), old, old);
    // The store goes away once the narinfos are deleted, before the NARs are.
    const err = await collect(store, {
      betweenSteps: async (step) => {
        if (step === "narinfos-swept")
          throw new OperationError("store-down", "the store went away");
      },
    }).catch((e: unknown) => e);
    const [reportKey] = await gcReportKeys(store);
    expect(reportKey).toBeDefined();
    expect(err).toMatchObject({
      code: "store-down",
      message: `the store went away; what it deleted before is counted in ${reportKey}`,
    });
    expect(await readGcReport(store, reportKey as string)).toMatchObject({
      interrupted: false,
      failed: "the store went away",
      deleted: { narinfo: { objects: 2 } },
    });
    // Its lock is gone: the next run collects the NARs left.
    expect(await allKeys(store, "gc/lock")).toEqual([]);
    expect((await collect(store)).deleted.nar.objects).toBe(2);
    await store.close();
  });

  it("a process made to stop at once (a second interrupt) removes the collection's lock first", async () => {
    const dir = join(work, "cache-last-words");
    const store = await openStore(`file://${dir}?fsync=false`);
    await store.put("nix-cache-info", Buffer.from("StoreDir: /nix/store\n"));
    let held: string[] = [];
    let after: string[] = [];
    await collect(store, {
      betweenSteps: async (step) => {
        if (step !== "locked") return;
        held = await allKeys(store, "gc/lock");
        // What cli/interrupts.ts runs before the process exits at a second interrupt.
        await sayLastWords(10_000);
        after = await allKeys(store, "gc/lock");
        throw new OperationError("stopped", "stopped at once");
      },
    }).catch(() => undefined);
    expect(held).toEqual(["gc/lock.json"]);
    expect(after).toEqual([]);
    await store.close();
  });
});
