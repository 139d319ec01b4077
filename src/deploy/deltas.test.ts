import { rm, symlink } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { syntheticPath } from "../../support/synthetic-cache.js";
import { type DeltaPlanCache, deltaPlanCache } from "../../test/support/delta-plan-cache.js";
import { deltaPathOf, deltaSkipKey } from "../cache/delta-path.js";
import type { DeltaPair } from "../cache/delta-publish.js";
import { formatSkipNote } from "../cache/delta-trust.js";
import { narInfoKey } from "../cache/layout.js";
import { generateSecretKey, publicKeyOf } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import { planDeltas, publishPlanDeltas } from "./deltas.js";
import type { DeployEvent } from "./events.js";

let cache: DeltaPlanCache;
/** The cache as the plan reads it: its URL and the fleet's keys. */
const at = (c: DeltaPlanCache) => ({ url: c.url, trusted: [publicKeyOf(c.key)] });
beforeEach(async () => {
  cache = await deltaPlanCache();
});
afterEach(async () => {
  await cache.close();
});

describe("publishPlanDeltas", () => {
  it("publishes the plan's pairs and tells it as deltas-start, delta-progress and deltas-done", async () => {
    const events: DeployEvent[] = [];
    const tally = await publishPlanDeltas({
      cacheUrl: cache.url,
      key: cache.key,
      planned: cache.planned,
      emit: (e) => events.push(e),
    });
    expect(tally).toMatchObject({ published: 2, failed: 0 });
    // Progress at most once a second and at the last pair: one event, or two on a machine slow
    // enough that the first pair took over a second.
    const types = events.map((e) => e.type);
    expect(types[0]).toBe("deltas-start");
    expect(types.slice(1, -1)).toEqual(
      types.length === 4 ? ["delta-progress", "delta-progress"] : ["delta-progress"],
    );
    expect(events.at(-2)).toMatchObject({ type: "delta-progress", done: 2, total: 2 });
    expect(events.at(-1)).toMatchObject({ type: "deltas-done", published: 2 });
  });

  it("tells a pair whose base the cache lacks only in the count, not one by one", async () => {
    const gone = syntheticPath("gone", "app-0.9");
    const app1 = cache.planned.pairs[0]?.target as StorePath;
    const events: DeployEvent[] = [];
    const tally = await publishPlanDeltas({
      cacheUrl: cache.url,
      key: cache.key,
      planned: { ...cache.planned, pairs: [{ target: app1, base: gone }, ...cache.planned.pairs] },
      emit: (e) => events.push(e),
    });
    expect(tally).toMatchObject({ published: 2, failed: 1 });
    expect(events.filter((e) => e.type === "delta-progress" && e.failed !== undefined)).toEqual([]);
  });
});

describe("planDeltas", () => {
  it("says what the host fetches with deltas and without: counted whole until they are computed", async () => {
    const before = await planDeltas(at(cache), cache.planned);
    expect(before).toMatchObject({ pending: 2, unread: [] });
    const [host] = before?.hosts ?? [];
    expect(host).toMatchObject({
      host: "web1",
      paths: 2,
      byDelta: 0,
      pending: 2,
      upperBound: false,
    });
    // Whole: the targets' compressed NARs as the cache has them.
    expect(host?.whole).toBeGreaterThan(60_000);
    expect(host?.withDeltas).toBe(host?.whole);

    await publishPlanDeltas({
      cacheUrl: cache.url,
      key: cache.key,
      planned: cache.planned,
      emit: () => {},
    });
    const after = await planDeltas(at(cache), cache.planned);
    expect(after).toMatchObject({ pending: 0 });
    const [now] = after?.hosts ?? [];
    expect(now).toMatchObject({ paths: 2, byDelta: 2, pending: 0, whole: host?.whole });
    expect(now?.withDeltas).toBeLessThan((host?.whole ?? 0) / 4);
  });

  it("counts a delta whose narinfo the cache holds malformed as pending: the deploy replaces it", async () => {
    await publishPlanDeltas({
      cacheUrl: cache.url,
      key: cache.key,
      planned: cache.planned,
      emit: () => {},
    });
    const pair = cache.planned.pairs[0] as DeltaPair;
    await cache.store.put(
      narInfoKey(deltaPathOf(pair.target, pair.base)),
      Buffer.from("StorePath: nonsense\n"),
    );
    const plan = await planDeltas(at(cache), cache.planned);
    expect(plan).toMatchObject({ pending: 1, hosts: [{ byDelta: 1, pending: 1 }] });
    expect(plan?.error).toBeUndefined();
    const tally = await publishPlanDeltas({
      cacheUrl: cache.url,
      key: cache.key,
      planned: cache.planned,
      emit: () => {},
    });
    expect(tally).toMatchObject({ published: 1, replaced: 1, existing: 1 });
    expect(await planDeltas(at(cache), cache.planned)).toMatchObject({
      pending: 0,
      hosts: [{ byDelta: 2 }],
    });
  });

  it("believes no skip note and no delta the fleet's keys did not sign: those pairs are pending", async () => {
    const [app, lib] = cache.planned.pairs as [DeltaPair, DeltaPair];
    // A note written by hand (no signature), and one signed by a key the fleet does not trust.
    await cache.store.put(
      deltaSkipKey(app.target, app.base),
      Buffer.from(
        JSON.stringify({ engine: "zstd-patch", level: 19, ...app, deltaBytes: 9, targetBytes: 10 }),
      ),
    );
    const stranger = generateSecretKey("stranger-1");
    await cache.store.put(
      deltaSkipKey(lib.target, lib.base),
      formatSkipNote(
        { engine: "zstd-patch", level: 19, ...lib, deltaBytes: 9, targetBytes: 10 },
        stranger,
      ),
    );
    const plan = await planDeltas(at(cache), cache.planned);
    expect(plan).toMatchObject({ pending: 2, hosts: [{ byDelta: 0, pending: 2 }] });
    const tally = await publishPlanDeltas({
      cacheUrl: cache.url,
      key: cache.key,
      trusted: [publicKeyOf(cache.key)],
      planned: cache.planned,
      emit: () => {},
    });
    expect(tally).toMatchObject({ published: 2, replaced: 2, skipped: 0, existing: 0 });
    expect(await planDeltas(at(cache), cache.planned)).toMatchObject({
      pending: 0,
      hosts: [{ byDelta: 2 }],
    });
  });

  it("never fails the plan when the cache cannot be read: it says why, without figures", async () => {
    const target = cache.planned.pairs[0]?.target as StorePath;
    // The target's narinfo is a link to itself: reading it fails (ELOOP).
    const key = join(cache.dir, "cache", narInfoKey(target));
    await rm(key);
    await symlink(key, key);
    const plan = await planDeltas(at(cache), cache.planned);
    expect(plan).toMatchObject({ hosts: [], pending: 0, unread: [] });
    expect(plan?.error).toMatch(/narinfo/);
  });

  it("has nothing to say when no host changes with deltas on", async () => {
    const none = { hosts: [], pairs: [], unread: [], noDelta: [], tools: new Map() };
    expect(await planDeltas(at(cache), none)).toBeUndefined();
  });
});
