import { randomBytes } from "node:crypto";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { putSyntheticPath, syntheticPath } from "../../support/synthetic-cache.js";
import { generateSecretKey } from "../nix/keys.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { ByteBudget } from "../util/pool.js";
import { deltaPairsFor } from "./delta-bases.js";
import { computeDeltas, type DeltaEvent } from "./delta-compute.js";

let dir: string;
let store: ObjectStore;
const key = generateSecretKey("delta-compute-1");
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-delta-compute-"));
  store = await openStore(`file://${dir}/cache?fsync=false`);
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

const text = randomBytes(60_000).toString("base64");
const version = (v: string) => `${text.slice(0, 40_000)}version ${v}${text.slice(40_000)}`;

describe("computeDeltas", () => {
  it("computes each pair once across hosts, two at a time, and tells each step", async () => {
    // Two hosts on app 1.0 (one also has lib 1.0), both updated to app 1.1 and lib 1.1.
    const app0 = syntheticPath("app0", "app-1.0");
    const app1 = syntheticPath("app1", "app-1.1");
    const lib0 = syntheticPath("lib0", "lib-1.0");
    const lib1 = syntheticPath("lib1", "lib-1.1");
    const tool0 = syntheticPath("tool0", "tool-1.0");
    const tool1 = syntheticPath("tool1", "tool-1.1");
    for (const [path, v] of [
      [app0, "a0"],
      [app1, "a1"],
      [lib0, "l0"],
      [lib1, "l1"],
      [tool0, "t0"],
      [tool1, "t1"],
    ] as const) {
      await putSyntheticPath(store, key, path, [], version(v));
    }
    const pairs = [
      ...deltaPairsFor([app0, lib0, tool0], [app1, lib1, tool1]),
      ...deltaPairsFor([app0, lib0, tool0], [app1, lib1, tool1]),
      ...deltaPairsFor([app0], [app1, lib1]),
    ];
    expect(pairs).toHaveLength(7);
    const events: DeltaEvent[] = [];
    let inFlight = 0;
    let most = 0;
    const tally = await computeDeltas(store, key, pairs, {
      emit: (e) => {
        events.push(e);
        if (e.type === "delta-start") most = Math.max(most, ++inFlight);
        if (e.type === "delta-done" || e.type === "delta-failed") inFlight--;
      },
    });
    expect(events[0]).toEqual({ type: "delta-plan", pairs: 3 });
    expect(events.filter((e) => e.type === "delta-start")).toHaveLength(3);
    expect(most).toBe(2);
    expect(tally).toMatchObject({ published: 3, skipped: 0, existing: 0, failed: 0 });
    expect(tally.deltaBytes).toBeLessThan(tally.targetBytes / 10);

    const again = await computeDeltas(store, key, pairs);
    expect(again).toMatchObject({ published: 0, existing: 3, deltaBytes: 0 });
  });

  it("reports a pair that fails and goes on with the others", async () => {
    const app0 = syntheticPath("app0", "app-1.0");
    const app1 = syntheticPath("app1", "app-1.1");
    const gone = syntheticPath("gone", "lib-1.0");
    const lib1 = syntheticPath("lib1", "lib-1.1");
    await putSyntheticPath(store, key, app0, [], version("a0"));
    await putSyntheticPath(store, key, app1, [], version("a1"));
    await putSyntheticPath(store, key, lib1, [], version("l1"));
    const events: DeltaEvent[] = [];
    const tally = await computeDeltas(
      store,
      key,
      [
        { target: lib1, base: gone },
        { target: app1, base: app0 },
      ],
      { emit: (e) => events.push(e) },
    );
    expect(tally).toMatchObject({ published: 1, failed: 1 });
    expect(events).toContainEqual({
      type: "delta-failed",
      pair: { target: lib1, base: gone },
      code: "delta-path-missing",
      message: expect.stringContaining(`the delta's base ${gone} is not in the cache`),
    });
  });
});

describe("computeDeltas, within a budget of NAR bytes", () => {
  /** The most zstd runs at once, from the log of a zstd that notes each run's start and end. */
  const mostAtOnce = (log: string) => {
    let now = 0;
    let most = 0;
    for (const line of log.trim().split("\n")) {
      now += line === "start" ? 1 : -1;
      most = Math.max(most, now);
    }
    return most;
  };

  it("computes several pairs at once while their NARs fit the budget, one at a time when one pair fills it", async () => {
    /** Four pairs of packages named after `prefix`, in the cache. */
    const pairsOf = async (prefix: string) => {
      const pairs = [];
      for (const n of ["a", "b", "c", "d"]) {
        const base = syntheticPath(`${prefix}${n}0`, `${prefix}${n}-1.0`);
        const target = syntheticPath(`${prefix}${n}1`, `${prefix}${n}-1.1`);
        await putSyntheticPath(store, key, base, [], version(`${prefix}${n}0`));
        await putSyntheticPath(store, key, target, [], version(`${prefix}${n}1`));
        pairs.push({ target, base });
      }
      return pairs;
    };
    // A zstd that notes its runs and takes a while over each (the --version check aside).
    const log = join(dir, "zstd.log");
    const zstd = join(dir, "zstd-noting");
    await writeFile(
      zstd,
      `#!/bin/sh\ncase $1 in --version) exec zstd --version ;; esac\necho start >>${log}\nsleep 0.2\nzstd "$@"\ns=$?\necho end >>${log}\nexit $s\n`,
    );
    await chmod(zstd, 0o755);
    // Each pair's two NARs are about 160 kB.
    const wide = await computeDeltas(store, key, await pairsOf("wide"), {
      zstd,
      concurrency: 4,
      budget: new ByteBudget(10_000_000),
    });
    expect(wide).toMatchObject({ published: 4, failed: 0 });
    expect(mostAtOnce(await readFile(log, "utf8"))).toBeGreaterThan(1);
    await rm(log);
    const narrow = await computeDeltas(store, key, await pairsOf("narrow"), {
      zstd,
      concurrency: 4,
      budget: new ByteBudget(100_000),
    });
    expect(narrow).toMatchObject({ published: 4, failed: 0 });
    expect(mostAtOnce(await readFile(log, "utf8"))).toBe(1);
  });
});

describe("computeDeltas, interrupted", () => {
  it("starts no pair after the interrupt and ends with it, not with a tally", async () => {
    const a0 = syntheticPath("a0", "app-1.0");
    const a1 = syntheticPath("a1", "app-1.1");
    const b0 = syntheticPath("b0", "bin-1.0");
    const b1 = syntheticPath("b1", "bin-1.1");
    for (const [path, v] of [
      [a0, "a0"],
      [a1, "a1"],
      [b0, "b0"],
      [b1, "b1"],
    ] as const) {
      await putSyntheticPath(store, key, path, [], version(v));
    }
    const interrupt = new AbortController();
    const started: string[] = [];
    const pairs = deltaPairsFor([a0, b0], [a1, b1]);
    expect(pairs).toHaveLength(2);
    const run = computeDeltas(store, key, pairs, {
      concurrency: 1,
      signal: interrupt.signal,
      emit: (e) => {
        if (e.type !== "delta-start") return;
        started.push(e.pair.target);
        interrupt.abort(new Error("interrupted (SIGINT)"));
      },
    });
    await expect(run).rejects.toThrow(/interrupted/);
    // The first pair only (pairs come with their targets in byte order).
    expect(started).toEqual([pairs[0]?.target]);
    expect((await store.list("delta/")).objects).toEqual([]);
  });
});
