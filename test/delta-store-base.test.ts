// A delta whose base the cache lacks, computed from the deployer's own store (docs/deltas.md,
// "Bases"): the base's NAR is dumped from /nix/store and must have the NarHash and size the
// store recorded; otherwise the pair fails, and the path comes whole. Paths the store holds as
// the cache's narinfos say are dumped from there too, on a NAR writer's thread, and checked
// against the narinfo. Real Nix: the paths are added to the machine's store.
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DELTA_FILES, deltaNarKey, parseDeltaInfo } from "../src/cache/delta-path.js";
import { type DeltaOutcome, publishDelta } from "../src/cache/delta-publish.js";
import { queryClosure } from "../src/cache/local-nix.js";
import { NarPool, type NarWriter } from "../src/cache/nar-pool.js";
import { readNarInfo } from "../src/cache/read.js";
import { Sha256 } from "../src/nix/hash.js";
import { generateSecretKey } from "../src/nix/keys.js";
import { restoreNar } from "../src/nix/nar-restore.js";
import type { StorePath } from "../src/nix/store-path.js";
import { readAll } from "../src/store/helpers.js";
import type { ObjectStore } from "../src/store/object-store.js";
import { openStore } from "../src/store/url.js";
import { runOk } from "../support/cli.js";
import { putSyntheticPath, syntheticPath } from "../support/synthetic-cache.js";

let dir: string;
let store: ObjectStore;
let base: StorePath;
let recorded: { narHash: Sha256; narSize: number };
const key = generateSecretKey("delta-store-base-1");
// 300 KB that compress poorly alone, and a version with a few changes: a delta pays.
const old = randomBytes(225_000).toString("base64");
const changed = `${old.slice(0, 1000)}CHANGED${old.slice(1007, 200_000)}MORE${old.slice(200_004)}`;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-delta-store-base-"));
  store = await openStore(`file://${dir}/cache?fsync=false`);
  // The base: in this machine's store, never in the cache.
  await writeFile(join(dir, "app-1.0"), old);
  base = (await runOk("nix-store", ["--add", join(dir, "app-1.0")])).trim() as StorePath;
  const [info] = await queryClosure([base]);
  if (info === undefined) throw new Error(`no path info for ${base}`);
  recorded = { narHash: info.narHash, narSize: info.narSize };
});

afterAll(async () => {
  await store?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("a delta whose base is in the deployer's store, not the cache", () => {
  it("is computed from the store's copy, and names the hash the store recorded", async () => {
    const target = syntheticPath(`target-${base}`, "app-1.1");
    await putSyntheticPath(store, key, target, [], changed);
    expect(await readNarInfo(store, base)).toBeUndefined();
    const outcome = await publishDelta(
      store,
      key,
      { target, base },
      { storeNar: (path) => (path === base ? recorded : undefined) },
    );
    expect(outcome.kind).toBe("published");
    if (outcome.kind !== "published") return;
    expect(outcome.deltaBytes).toBeLessThan(outcome.targetBytes / 10);
    const info = await readNarInfo(store, outcome.deltaPath);
    const nar = await readAll(store, deltaNarKey(info?.narHash as Sha256));
    const tree = join(dir, "delta");
    await restoreNar([nar as Buffer], tree);
    const deltaInfo = parseDeltaInfo(await readFile(join(tree, DELTA_FILES.info), "utf8"));
    expect(deltaInfo).toMatchObject({ base, target, baseNarSize: recorded.narSize });
    expect(deltaInfo.baseNarHash.equals(recorded.narHash)).toBe(true);
  });

  it("is refused when the store's copy is not what the store recorded", async () => {
    const target = syntheticPath(`other-${base}`, "app-1.1");
    await putSyntheticPath(store, key, target, [], changed);
    const wrong = { narHash: Sha256.of("another NAR"), narSize: recorded.narSize };
    await expect(
      publishDelta(store, key, { target, base }, { storeNar: () => wrong }),
    ).rejects.toMatchObject({ code: "delta-base-changed" });
    const shorter = { narHash: recorded.narHash, narSize: recorded.narSize - 1 };
    await expect(
      publishDelta(store, key, { target, base }, { storeNar: () => shorter }),
    ).rejects.toMatchObject({ code: "delta-base-changed" });
  });

  it("is not computed where the deployer's store was not offered: the cache lacks the base", async () => {
    const target = syntheticPath(`third-${base}`, "app-1.1");
    await putSyntheticPath(store, key, target, [], changed);
    await expect(publishDelta(store, key, { target, base })).rejects.toMatchObject({
      code: "delta-path-missing",
    });
  });
});

describe("a pair whose paths the deployer's store holds as the cache's narinfos say", () => {
  /**
   * Publishes the pair with the store's records `records` gives, its paths dumped by a NarPool
   * of one thread: the outcome (or the error), and the paths the pool was asked to dump.
   */
  async function publishFromStore(
    pair: { target: StorePath; base: StorePath },
    records: (path: StorePath) => { narHash: Sha256; narSize: number } | undefined,
  ): Promise<{ outcome: Promise<DeltaOutcome>; dumped: string[] }> {
    const pool = new NarPool(1);
    const dumped: string[] = [];
    const writer: NarWriter = {
      write: (job, onBytes) => {
        dumped.push(job.label);
        return pool.write(job, onBytes);
      },
      close: () => pool.close(),
    };
    const outcome = publishDelta(store, key, pair, { storeNar: records, narWriter: writer });
    await outcome.catch(() => undefined);
    await pool.close();
    return { outcome, dumped };
  }

  /** A path added to this machine's store holding `text`, and its narinfo put in the cache. */
  async function heldAndCached(
    name: string,
    text: string,
    cached = text,
  ): Promise<{ path: StorePath; info: { narHash: Sha256; narSize: number } }> {
    const file = join(dir, name);
    await writeFile(file, text);
    const path = (await runOk("nix-store", ["--add", file])).trim() as StorePath;
    await putSyntheticPath(store, key, path, [], cached);
    const read = await readNarInfo(store, path);
    if (read === undefined) throw new Error(`no narinfo for ${path}`);
    return { path, info: { narHash: read.narHash, narSize: read.narSize } };
  }

  it("dumps both from the store on the writer's thread, not from the cache", async () => {
    const b = await heldAndCached("lib-2.0", `${old}lib`);
    const t = await heldAndCached("lib-2.1", `${changed}lib`);
    const [recordedTarget] = await queryClosure([t.path]);
    expect(recordedTarget?.narHash.equals(t.info.narHash)).toBe(true);
    const records = new Map([
      [b.path, b.info],
      [t.path, t.info],
    ]);
    const { outcome, dumped } = await publishFromStore({ target: t.path, base: b.path }, (p) =>
      records.get(p),
    );
    expect((await outcome).kind).toBe("published");
    expect(dumped.sort()).toEqual([b.path, t.path].sort());
  });

  it("reads from the cache a path whose store record is not what the narinfo says", async () => {
    const b = await heldAndCached("tool-2.0", `${old}tool`);
    const t = await heldAndCached("tool-2.1", `${changed}tool`);
    const other = { narHash: Sha256.of("another NAR"), narSize: t.info.narSize };
    const { outcome, dumped } = await publishFromStore({ target: t.path, base: b.path }, (p) =>
      p === t.path ? other : b.info,
    );
    expect((await outcome).kind).toBe("published");
    expect(dumped).toEqual([b.path]);
  });

  it("is refused when the store's copy is not what the narinfo says", async () => {
    // The cache's narinfo names other contents than the store's copy holds, and the record
    // given says what the narinfo says: the dump is checked, and the pair fails.
    const b = await heldAndCached("web-2.0", `${old}web`);
    const t = await heldAndCached("web-2.1", `${changed}web`, `${changed}other`);
    const { outcome } = await publishFromStore({ target: t.path, base: b.path }, (p) =>
      p === t.path ? t.info : b.info,
    );
    await expect(outcome).rejects.toMatchObject({
      code: "delta-target-changed",
      message: expect.stringContaining("is not what the cache's narinfo says"),
    });
  });
});
