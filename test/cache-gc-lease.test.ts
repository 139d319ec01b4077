// The race a lease closes, made to happen every time: a push finds an old path nothing roots
// already in the cache and skips it, and a collection lists the cache before the push's new
// narinfo (which needs that path) is written. Without a lease the collection deletes the
// skipped path and the pushed closure is broken; with the push under a lease (as `nixship
// push` and `deploy` run it) the collection waits, then keeps it.
import { mkdtemp, readdir, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { walkClosure } from "../src/cache/closure-walk.js";
import { collectGarbage } from "../src/cache/gc.js";
import { narInfoKey } from "../src/cache/layout.js";
import { pushClosure } from "../src/cache/push.js";
import { generateSecretKey } from "../src/nix/keys.js";
import type { StorePath } from "../src/nix/store-path.js";
import type { ObjectStore, PutOptions } from "../src/store/object-store.js";
import { openStore } from "../src/store/url.js";
import { wrapStore } from "../src/store/wrap-store.js";
import { runOk } from "../support/cli.js";
import { allKeys } from "../support/synthetic-cache.js";

let work: string;
let base: StorePath;
const key = generateSecretKey("gc-lease-1");

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-gc-lease-"));
  await writeFile(
    join(work, "lease.nix"),
    `{ seed }:
let
  mk = name: script: derivation { inherit name; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" script ]; PATH = "/usr/bin:/bin"; };
  base = mk "lease-base" "mkdir -p $out; echo base > $out/b";
in { inherit base; top = mk "lease-top-\${seed}" "mkdir -p $out; echo \${base} \${seed} > $out/t"; }
`,
  );
  base = await build("base", "x");
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

async function build(attr: string, seed: string): Promise<StorePath> {
  return (
    await runOk("nix-build", [
      "--no-out-link",
      join(work, "lease.nix"),
      "-A",
      attr,
      "--argstr",
      "seed",
      seed,
    ])
  ).trim() as StorePath;
}

/** A cache holding `base`, aged two days, that nothing roots. */
async function cacheWithOldBase(name: string): Promise<{ dir: string; store: ObjectStore }> {
  const dir = join(work, name);
  const store = await openStore(`file://${dir}`);
  await pushClosure({ store, roots: [base], key, compression: "zstd", createCache: true });
  const old = new Date(Date.now() - 2 * 86400_000);
  for (const k of await allKeys(store)) await utimes(join(dir, k), old, old);
  return { dir, store };
}

/**
 * `inner`, whose put of `held` waits until `release` resolves (or 3 s pass): the moment
 * between a push's check of what the cache has and its new narinfo. `reached`: the push is
 * there (it has checked the cache).
 */
function holdingPut(
  inner: ObjectStore,
  held: string,
  release: Promise<void>,
): { store: ObjectStore; reached: Promise<void> } {
  let reach: () => void = () => undefined;
  const reached = new Promise<void>((r) => {
    reach = r;
  });
  const wait = () => {
    reach();
    return Promise.race([release, new Promise<void>((r) => setTimeout(r, 3000))]);
  };
  const store = wrapStore(inner, {
    async put(k: string, body: Parameters<ObjectStore["put"]>[1], o?: PutOptions) {
      if (k === held) await wait();
      return inner.put(k, body, o);
    },
    async putFile(k: string, file: string, o?: Omit<PutOptions, "size">) {
      if (k === held) await wait();
      return inner.putFile(k, file, o);
    },
  });
  return { store, reached };
}

/** A store that says when the collection's inventory has been listed (the root, then nar/). */
function listedSignal(inner: ObjectStore): { store: ObjectStore; listed: Promise<void> } {
  let said: () => void = () => undefined;
  const listed = new Promise<void>((r) => {
    said = r;
  });
  const store = wrapStore(inner, {
    async list(prefix, options) {
      const page = await inner.list(prefix, options);
      if (prefix === "nar/") said();
      return page;
    },
  });
  return { store, listed };
}

/**
 * As if the push's lease renewals had failed for 11 minutes: its lease objects aged past a
 * lease's life (a collector deletes them), and the push's own measure of a lapse made short.
 */
async function ageLeases(dir: string): Promise<void> {
  const aged = new Date(Date.now() - 11 * 60_000);
  for (const k of await readdir(join(dir, "gc", "leases"))) {
    await utimes(join(dir, "gc", "leases", k), aged, aged);
  }
}

async function race(
  name: string,
  leased: boolean,
  lapse?: (dir: string) => Promise<void>,
): Promise<{ store: ObjectStore; top: StorePath; pushed: Promise<unknown> }> {
  const { store, dir } = await cacheWithOldBase(name);
  const top = await build("top", `${name}-${process.pid}`);
  const gcSide = listedSignal(store);
  const pushSide = holdingPut(store, narInfoKey(top), gcSide.listed);
  // As `nixship push` runs it (with its lease), or without one.
  const pushing = pushClosure({
    store: pushSide.store,
    roots: [top],
    key,
    compression: "zstd",
    ...(leased ? { lease: lapse === undefined ? {} : { lapseMs: 100 } } : {}),
  });
  pushing.catch(() => undefined);
  // The collection starts once the push has checked the cache (it is holding its narinfo):
  // waited for, however loaded the machine (or the push's end, should it fail first).
  await Promise.race([pushSide.reached, pushing.catch(() => undefined)]);
  if (lapse !== undefined) {
    // Past the push's own measure of a lapse (lapseMs 100: its lease taken more than that ago
    // with no renewal since), then its leases aged as a collector judges them.
    await new Promise((r) => setTimeout(r, 300));
    await lapse(dir);
  }
  const gc = collectGarbage({
    store: gcSide.store,
    readRoots: async () => ({ roots: new Map(), origins: new Map(), unreadable: [], skipped: [] }),
    graceMs: 3600_000,
    dryRun: false,
    waitMs: 30_000,
    pricePerGbMonth: 0.023,
  });
  await Promise.allSettled([pushing, gc]);
  await gc;
  return { store, top, pushed: pushing };
}

describe("a push that skips an old unrooted path, raced by a collection", () => {
  it("without a lease, the collection deletes the skipped path under the new narinfo (the hazard)", async () => {
    const { store, top, pushed } = await race("unleased", false);
    try {
      await pushed;
      const closure = await walkClosure(store, [top]);
      expect(closure.missing).toEqual([base]);
    } finally {
      await store.close();
    }
  }, 60_000);

  it("under a lease, the collection waits for the push and keeps the whole pushed closure", async () => {
    const { store, top, pushed } = await race("leased", true);
    try {
      await pushed;
      const closure = await walkClosure(store, [top]);
      expect(closure.missing).toEqual([]);
      expect([...closure.found.values()].map((i) => i.storePath).sort()).toEqual(
        [base, top].sort(),
      );
      // Nothing else was left behind: no lease, no lock (the collection's report is kept).
      expect(
        (await allKeys(store)).filter((k) => k.startsWith("gc/") && !k.startsWith("gc/reports/")),
      ).toEqual([]);
    } finally {
      await store.close();
    }
  }, 60_000);

  it("under a lease that lapsed (renewals failed 11 minutes), the push says which skipped path the collection took, and pushing again mends the closure", async () => {
    const { store, top, pushed } = await race("lapsed", true, ageLeases);
    try {
      await expect(pushed).rejects.toMatchObject({
        code: "cache-lease-lapsed",
        message: expect.stringContaining(`took 1 of the paths it had found there, ${base} first`),
      });
      expect((await walkClosure(store, [top])).missing).toEqual([base]);
      await pushClosure({ store, roots: [top], key, compression: "zstd", lease: {} });
      expect((await walkClosure(store, [top])).missing).toEqual([]);
    } finally {
      await store.close();
    }
  }, 60_000);
});
