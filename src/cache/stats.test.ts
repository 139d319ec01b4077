import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { putSyntheticPath, syntheticPath } from "../../support/synthetic-cache.js";
import { generateSecretKey, publicKeyOf } from "../nix/keys.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { formatCacheStats } from "../ui/cache-stats.js";
import { deltaPathOf, deltaSkipKey } from "./delta-path.js";
import { publishDelta } from "./delta-publish.js";
import { readNarInfo } from "./read.js";
import { cacheStats } from "./stats.js";

let dir: string;
let store: ObjectStore;
const key = generateSecretKey("stats-1");
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-stats-"));
  store = await openStore(`file://${dir}?fsync=false`);
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

describe("cacheStats with deltas", () => {
  it("counts delta paths and their bytes apart from the other paths, and the skip notes", async () => {
    const text = randomBytes(60_000).toString("base64");
    const base = syntheticPath("base", "app-1.0");
    const target = syntheticPath("target", "app-1.1");
    await putSyntheticPath(store, key, base, [], `${text}1.0`);
    await putSyntheticPath(store, key, target, [], `${text}1.1`);
    expect((await publishDelta(store, key, { target, base })).kind).toBe("published");
    await store.put(deltaSkipKey(target, syntheticPath("x", "app-0.1")), Buffer.from("{}\n"));
    const delta = await readNarInfo(store, deltaPathOf(target, base));
    const targetInfo = await readNarInfo(store, target);
    const baseInfo = await readNarInfo(store, base);

    const stats = await cacheStats(store, { trusted: [publicKeyOf(key)] });
    expect(stats.paths).toBe(2);
    expect(stats.fileBytes).toBe((targetInfo?.fileSize ?? 0) + (baseInfo?.fileSize ?? 0));
    expect(stats.deltas).toEqual({
      paths: 1,
      bytes: delta?.fileSize,
      targetBytes: targetInfo?.fileSize,
      skipNotes: { objects: 1, bytes: 3 },
    });
    expect(stats.orphans.nars.objects).toBe(0);
    expect(stats.untrusted).toEqual([]);
    expect(stats.largestClosures.map((c) => c.path).sort()).toEqual([base, target].sort());
    expect(formatCacheStats(stats)).toMatch(
      /\n {2}deltas: 1 paths, .* of their targets \(\d+\.\d%\); 1 pairs not worth one\n/,
    );
  });
});

describe("cacheStats of deltas a cache writer planted", () => {
  it("counts no delta whose NAR is not stored, nor one no trusted key signed, at any size it claims", async () => {
    const text = randomBytes(60_000).toString("base64");
    const base = syntheticPath("base", "app-1.0");
    const target = syntheticPath("target", "app-1.1");
    await putSyntheticPath(store, key, base, [], `${text}1.0`);
    await putSyntheticPath(store, key, target, [], `${text}1.1`);
    expect((await publishDelta(store, key, { target, base })).kind).toBe("published");
    const delta = await readNarInfo(store, deltaPathOf(target, base));
    const other = syntheticPath("other", "app-1.2");
    const claims = (path: string, url: string) =>
      `StorePath: ${deltaPathOf(path as typeof target, base)}\nURL: ${url}\nCompression: none\nFileSize: 9007199254740991\nNarHash: sha256:19070wf4gshrl2sn7zcjlk957rknkx6dpal5fbis35m6584jfkxr\nNarSize: 9007199254740991\nReferences: \n`;
    // One names no NAR the cache holds; one names the true delta's NAR, unsigned.
    const missing = deltaPathOf(other, base).slice("/nix/store/".length, "/nix/store/".length + 32);
    await store.put(`${missing}.narinfo`, Buffer.from(claims(other, "delta/none.nar")));
    const third = syntheticPath("third", "app-1.3");
    const unsigned = deltaPathOf(third, base).slice(
      "/nix/store/".length,
      "/nix/store/".length + 32,
    );
    await store.put(`${unsigned}.narinfo`, Buffer.from(claims(third, delta?.url ?? "")));

    const stats = await cacheStats(store, { trusted: [publicKeyOf(key)] });
    expect(stats.deltas).toMatchObject({ paths: 1, bytes: delta?.fileSize });
    expect(stats.untrusted).toHaveLength(2);
    // Without keys, the unsigned one with a stored NAR counts, at the NAR's stored size.
    expect((await cacheStats(store)).deltas).toMatchObject({
      paths: 2,
      bytes: 2 * (delta?.fileSize ?? 0),
    });
  });
});

describe("cacheStats of paths whose NARs are one file", () => {
  it("counts that file once, in the total and in its compression's line alike", async () => {
    const text = randomBytes(30_000).toString("base64");
    const a = syntheticPath("a", "same-1.0");
    const b = syntheticPath("b", "same-1.0");
    await putSyntheticPath(store, key, a, [], text);
    await putSyntheticPath(store, key, b, [], text);
    const [infoA, infoB] = [await readNarInfo(store, a), await readNarInfo(store, b)];
    expect(infoA?.url).toBe(infoB?.url);
    const stats = await cacheStats(store);
    expect(stats.paths).toBe(2);
    expect(stats.fileBytes).toBe(infoA?.fileSize);
    const lines = Object.values(stats.byCompression);
    expect(lines.map((c) => [c.paths, c.fileBytes])).toEqual([[2, infoA?.fileSize]]);
  });
});

describe("cacheStats of a cache with many broken narinfos", () => {
  it("counts every narinfo whose NAR is missing, lists 50 of each kind, and says how many more", async () => {
    for (let i = 0; i < 60; i++) {
      const path = syntheticPath(`missing${i}`, `missing-${i}`);
      await putSyntheticPath(store, key, path, [], `text ${i}`);
      const info = await readNarInfo(store, path);
      await store.delete(info?.url ?? "");
    }
    const alphabet = "0123456789abcdfghijklmnpqrsvwxyz";
    for (let i = 0; i < 55; i++) {
      const hash = `${alphabet[i % 32]}${alphabet[Math.floor(i / 32)]}${"0".repeat(30)}`;
      await store.put(`${hash}.narinfo`, Buffer.from("garbage\n"));
    }
    const stats = await cacheStats(store);
    expect(stats.orphans.narinfosCount).toBe(60);
    expect(stats.orphans.narinfos).toHaveLength(50);
    expect(stats.unreadable).toHaveLength(55);
    const text = formatCacheStats(stats);
    expect(text).toContain("  narinfos whose NAR is missing: 60\n");
    expect(text).toContain("    … and 10 more (--json lists the first 50 and counts them all)\n");
    expect(text).toContain("  narinfos that do not parse: 55\n");
    expect(text).toContain("    … and 5 more (--json lists them all)\n");
    expect(text.split("\n").filter((l) => l.includes("expected 'Key: value'"))).toHaveLength(50);
  });
});
