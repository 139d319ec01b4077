// A collection against a store that fails, or holds what a bucket writer planted. The second
// look before NARs are deleted: a narinfo still there after the narinfos' sweep (its delete
// failed, or it was put since the listing) that cannot be read again because the store fails (a
// 503, a timeout) may name any NAR, so the collection stops before deleting one; a narinfo whose
// content is refused names no NAR Nix could fetch, and is only reported. The mark: a young
// narinfo (a root for its grace) that names a real path under another name, or is junk, is
// reported and passed over, never the end of every collection.
import { access, mkdtemp, rm, utimes } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { putSyntheticPath, syntheticPath } from "../../support/synthetic-cache.js";
import { OperationError } from "../errors.js";
import { generateSecretKey } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import type { GetOptions, ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { wrapStore } from "../store/wrap-store.js";
import { collectGarbage } from "./gc.js";

let dir: string;
let inner: ObjectStore;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-gc-look-"));
  inner = await openStore(`file://${dir}`);
});
afterEach(async () => {
  await inner.close();
  await rm(dir, { recursive: true, force: true });
});

/**
 * A signed path with its NAR, both two days old (past a day's grace) unless `young`, and nothing
 * keeps it but what names it.
 */
async function putOldPath(
  seed: string,
  { references = [], young = false }: { references?: string[]; young?: boolean } = {},
): Promise<{ path: string; narinfo: string; nar: string }> {
  const put = await putSyntheticPath(
    inner,
    generateSecretKey("gc-look-1"),
    syntheticPath(seed, seed),
    references as StorePath[],
  );
  const old = new Date(Date.now() - 2 * 86400_000);
  if (!young)
    for (const key of [put.narKey, put.narinfoKey]) await utimes(join(dir, key), old, old);
  return { path: put.path, narinfo: put.narinfoKey, nar: put.narKey };
}

const present = (key: string) =>
  access(join(dir, key)).then(
    () => true,
    () => false,
  );

/** A collection keeping nothing, with a day's grace. */
const collect = (store: ObjectStore) =>
  collectGarbage({
    store,
    readRoots: async () => ({ roots: new Map(), origins: new Map(), unreadable: [], skipped: [] }),
    graceMs: 86400_000,
    dryRun: false,
    waitMs: 0,
    pricePerGbMonth: 0.023,
  });

describe("the second look at the narinfos", () => {
  it("stops before deleting a NAR when a narinfo still there cannot be read again", async () => {
    const stuck = await putOldPath("stuck");
    let reads = 0;
    const store = wrapStore(inner, {
      // Its delete fails (throttled), and its second read too (the store is unwell).
      delete: async (key) => {
        if (key === stuck.narinfo) throw new Error("SlowDown");
        return inner.delete(key);
      },
      deleteMany: undefined,
      get: (async (key: string, options?: GetOptions) => {
        if (key === stuck.narinfo && ++reads > 1) throw new Error("503 Service Unavailable");
        return inner.get(key, options);
      }) as ObjectStore["get"],
    });
    const failed = await collect(store).catch((err: unknown) => err);
    expect(failed).toBeInstanceOf(OperationError);
    expect(failed).toMatchObject({ code: "gc-second-look" });
    expect((failed as Error).message).toMatch(/503 Service Unavailable.*no NAR was deleted/);
    // The narinfo stands, and so does its NAR: the cache serves the path whole.
    expect(await present(stuck.narinfo)).toBe(true);
    expect(await present(stuck.nar)).toBe(true);
  });

  it("reports a narinfo whose content is refused, and goes on", async () => {
    const gone = await putOldPath("gone");
    // Not a narinfo (a writer's junk), and its delete fails: it is read again, and refused.
    const junk = `${"0".repeat(32)}.narinfo`;
    await inner.put(junk, Buffer.from("StorePath: not a store path\n"), {});
    const old = new Date(Date.now() - 2 * 86400_000);
    await utimes(join(dir, junk), old, old);
    const store = wrapStore(inner, {
      delete: async (key) => {
        if (key === junk) throw new Error("SlowDown");
        return inner.delete(key);
      },
      deleteMany: undefined,
    });
    const report = await collect(store);
    expect(report.problems.filter((p) => p.startsWith(`${"0".repeat(32)}.narinfo`))).toHaveLength(
      2,
    );
    expect(await present(gone.narinfo)).toBe(false);
    expect(await present(gone.nar)).toBe(false);
  });
});

describe("the mark, past what a bucket writer planted", () => {
  it("passes over a young narinfo that names a real path under another name, and collects", async () => {
    const real = await putOldPath("real");
    const garbage = await putOldPath("garbage");
    const hash = real.path.slice("/nix/store/".length, "/nix/store/".length + 32);
    // Young (a root for its grace), naming real's hash under another name.
    const planted = await putOldPath("planted", {
      references: [`/nix/store/${hash}-other`],
      young: true,
    });
    const report = await collect(inner);
    // What the planted one names by hash is kept; the garbage goes; the plant is said.
    expect(await present(real.narinfo)).toBe(true);
    expect(await present(real.nar)).toBe(true);
    expect(await present(planted.narinfo)).toBe(true);
    expect(await present(garbage.narinfo)).toBe(false);
    expect(await present(garbage.nar)).toBe(false);
    expect(report.problems).toEqual([]);
  });

  it("reports a young narinfo that is junk, and collects the rest", async () => {
    const garbage = await putOldPath("garbage");
    const junk = `${"1".repeat(32)}.narinfo`;
    await inner.put(junk, Buffer.from("StorePath: not a store path\n"), {});
    const report = await collect(inner);
    expect(report.problems.join("\n")).toMatch(
      new RegExp(`^${"1".repeat(32)}\\.narinfo: .*not followed: it keeps nothing it names`, "m"),
    );
    expect(await present(junk)).toBe(true);
    expect(await present(garbage.narinfo)).toBe(false);
    expect(await present(garbage.nar)).toBe(false);
  });
});

describe("ages, by the store's clock", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("keeps a push within its grace when the collector's own clock runs hours fast", async () => {
    const young = await putOldPath("young", { young: true });
    const old = await putOldPath("old");
    // This machine's clock says five hours later than the store's (the file system's) does.
    vi.useFakeTimers({ toFake: ["Date"], now: Date.now() + 5 * 3600_000 });
    await collectGarbage({
      store: inner,
      readRoots: async () => ({
        roots: new Map(),
        origins: new Map(),
        unreadable: [],
        skipped: [],
      }),
      graceMs: 3600_000,
      dryRun: false,
      waitMs: 0,
      pricePerGbMonth: 0.023,
    });
    vi.useRealTimers();
    expect(await present(young.narinfo)).toBe(true);
    expect(await present(young.nar)).toBe(true);
    expect(await present(old.narinfo)).toBe(false);
  });
});
