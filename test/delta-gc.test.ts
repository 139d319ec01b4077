// `cache gc` on a directory cache with deltas (docs/deltas.md): a delta (its narinfo and its
// NAR under delta/) and the skip notes of its pairs go exactly when the path whose hash part
// the delta's name carries goes, whatever their age; a delta is never a root.
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, utimes } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deltaPathOf, deltaSkipKey } from "../src/cache/delta-path.js";
import { publishDelta } from "../src/cache/delta-publish.js";
import { narInfoKey } from "../src/cache/layout.js";
import { readNarInfo } from "../src/cache/read.js";
import { generateSecretKey } from "../src/nix/keys.js";
import type { StorePath } from "../src/nix/store-path.js";
import type { ObjectStore } from "../src/store/object-store.js";
import { openStore } from "../src/store/url.js";
import { nixship } from "../support/cli.js";
import { allKeys, putSyntheticPath, syntheticPath } from "../support/synthetic-cache.js";

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-delta-gc-"));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const key = generateSecretKey("delta-gc-1");
const text = randomBytes(60_000).toString("base64");
const version = (v: string) => `${text.slice(0, 30_000)}version ${v}${text.slice(30_000)}`;

/** The keys of a delta path: its narinfo and its NAR. */
async function deltaKeys(store: ObjectStore, target: StorePath, base: StorePath) {
  const path = deltaPathOf(target, base);
  const info = await readNarInfo(store, path);
  if (info === undefined) throw new Error(`no delta ${path}`);
  return [narInfoKey(path), info.url];
}

describe("cache gc with deltas", () => {
  it("keeps the deltas and skip notes of the paths it keeps, and deletes those of the paths it deletes", async () => {
    const dir = join(work, "cache");
    const url = `file://${dir}`;
    const store = await openStore(url);
    try {
      // A binary cache, as `cache init` makes one: the cache commands refuse a URL without one.
      await store.put("nix-cache-info", Buffer.from("StoreDir: /nix/store\n"));
      const base = syntheticPath("base", "app-1.0");
      const kept = syntheticPath("kept", "app-1.1");
      const doomed = syntheticPath("doomed", "app-1.2");
      const older = syntheticPath("older", "app-0.9");
      for (const [path, v] of [
        [base, "1.0"],
        [kept, "1.1"],
        [doomed, "1.2"],
        [older, "0.9"],
      ] as const) {
        await putSyntheticPath(store, key, path, [], version(v));
      }
      for (const pair of [
        { target: kept, base },
        { target: doomed, base },
        { target: base, base: older },
      ]) {
        expect((await publishDelta(store, key, pair)).kind).toBe("published");
      }
      const skipKept = deltaSkipKey(kept, older);
      const skipDoomed = deltaSkipKey(doomed, older);
      for (const k of [skipKept, skipDoomed]) await store.put(k, Buffer.from("{}\n"));
      for (const path of [base, kept]) {
        const pin = await nixship(["cache", "pin", path, "--name", path.slice(44), "--cache", url]);
        expect(pin.code, pin.stderr).toBe(0);
      }
      // Everything so far is two hours old; then one more delta of the doomed path, young.
      const ago = new Date(Date.now() - 2 * 3600_000);
      for (const k of await allKeys(store)) await utimes(join(dir, k), ago, ago);
      expect((await publishDelta(store, key, { target: doomed, base: kept })).kind).toBe(
        "published",
      );

      const keptKeys = [
        ...(await deltaKeys(store, kept, base)),
        ...(await deltaKeys(store, base, older)),
        skipKept,
      ];
      const doomedKeys = [
        narInfoKey(doomed),
        (await readNarInfo(store, doomed))?.url as string,
        narInfoKey(older),
        (await readNarInfo(store, older))?.url as string,
        ...(await deltaKeys(store, doomed, base)),
        skipDoomed,
      ];
      // The young delta's narinfo goes with its target; its NAR, young, at the next collection.
      const [youngNarinfo, youngNar] = await deltaKeys(store, doomed, kept);
      const before = await allKeys(store);

      const collect = (...extra: string[]) =>
        nixship(["cache", "gc", "--cache", url, "--grace", "1", "--json", ...extra]);
      const dry = await collect("--dry-run");
      expect(dry.code, dry.stderr).toBe(0);
      expect(await allKeys(store)).toEqual(before);
      const gc = await collect();
      expect(gc.code, gc.stderr).toBe(0);
      const after = await allKeys(store);
      const deleted = before.filter((k) => !after.includes(k)).sort();
      expect(deleted).toEqual([...doomedKeys, youngNarinfo].sort());
      for (const k of [...keptKeys, youngNar]) expect(after).toContain(k);
      const report = JSON.parse(gc.stdout);
      expect(report.deleted.skip).toEqual({ objects: 1, bytes: 3 });
      expect(report.kept.skip).toEqual({ objects: 1, bytes: 3 });
      expect(JSON.parse(dry.stdout).deleted).toEqual(report.deleted);
      // The kept delta still serves: its narinfo names a NAR the cache holds.
      const info = await readNarInfo(store, deltaPathOf(kept, base));
      expect(await store.head(info?.url as string)).toBeDefined();
    } finally {
      await store.close();
    }
  });
});
