import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { allKeys, putSyntheticPath, syntheticPath } from "../../support/synthetic-cache.js";
import { Sha256 } from "../nix/hash.js";
import { generateSecretKey, publicKeyOf } from "../nix/keys.js";
import { restoreNar } from "../nix/nar-restore.js";
import { buildNar, narNode } from "../nix/nar-write.js";
import { checkNarInfoSignatures, parseNarInfo, signNarInfo } from "../nix/narinfo.js";
import { readAll } from "../store/helpers.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import {
  DELTA_FILES,
  deltaNarKey,
  deltaPathOf,
  deltaSkipKey,
  parseDeltaInfo,
} from "./delta-path.js";
import { publishDelta } from "./delta-publish.js";
import { narInfoKey } from "./layout.js";
import { readNarInfo } from "./read.js";

let dir: string;
let store: ObjectStore;
const key = generateSecretKey("delta-test-1");
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-delta-publish-"));
  store = await openStore(`file://${dir}/cache?fsync=false`);
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

// 300 KB that compress poorly alone (base64 of random bytes), and a version with a few changes.
const old = randomBytes(225_000).toString("base64");
const changed = `${old.slice(0, 1000)}CHANGED${old.slice(1007, 200_000)}MORE${old.slice(200_004)}`;

/** A narinfo's lines that its signatures cover, and its signatures, in its order. */
const signedLines = (text: string) =>
  `${text
    .split("\n")
    .filter((line) => /^(StorePath|NarHash|NarSize|References|Sig): /.test(line))
    .join("\n")}\n`;

describe("publishDelta", () => {
  it("publishes the delta path: its NAR under delta/, then its signed narinfo, and the target rebuilds from it", async () => {
    const base = syntheticPath("base", "app-1.0");
    const target = syntheticPath("target", "app-1.1");
    await putSyntheticPath(store, key, base, [], old);
    await putSyntheticPath(store, key, target, [], changed);
    const outcome = await publishDelta(store, key, { target, base });
    const deltaPath = deltaPathOf(target, base);
    expect(outcome).toMatchObject({
      kind: "published",
      deltaPath,
      targetBytes: expect.any(Number),
    });
    if (outcome.kind !== "published") throw new Error("not published");
    expect(outcome.deltaBytes).toBeLessThan(outcome.targetBytes / 10);

    const info = await readNarInfo(store, deltaPath);
    if (info === undefined) throw new Error("no narinfo");
    expect(info).toMatchObject({
      compression: "none",
      references: [],
      url: deltaNarKey(info.narHash),
    });
    expect(checkNarInfoSignatures(info, [publicKeyOf(key)])).toMatchObject({ ok: true });
    const nar = await readAll(store, info.url);
    if (nar === undefined) throw new Error("no NAR");
    expect(Sha256.of(nar).nix32).toBe(info.narHash.nix32);
    expect(nar.length).toBe(info.narSize);

    const out = join(dir, "restored");
    await restoreNar([nar], out);
    const targetInfo = await readNarInfo(store, target);
    const baseInfo = await readNarInfo(store, base);
    const deltaInfo = parseDeltaInfo(await readFile(join(out, DELTA_FILES.info), "utf8"));
    expect(deltaInfo).toMatchObject({
      engine: "zstd-patch",
      target,
      base,
      baseNarSize: baseInfo?.narSize,
    });
    expect(deltaInfo.baseNarHash.nix32).toBe(baseInfo?.narHash.nix32);
    // The target's narinfo as the cache holds it, but for what no signature covers.
    expect(await readFile(join(out, DELTA_FILES.narinfo), "utf8")).toBe(
      signedLines((await readAll(store, narInfoKey(target)))?.toString("utf8") ?? ""),
    );
    // The host's side: the base's NAR and the patch give the target's NAR back.
    const baseNar = join(dir, "base.nar");
    await writeFile(baseNar, buildNar(narNode.regular(old)));
    const rebuilt = execFileSync("zstd", [
      "-d",
      "-q",
      "--long=31",
      `--patch-from=${baseNar}`,
      "-c",
      join(out, DELTA_FILES.delta),
    ]);
    expect(Sha256.of(rebuilt).nix32).toBe(targetInfo?.narHash.nix32);
  });

  it("computes nothing for a pair already published: the second call finds it", async () => {
    const base = syntheticPath("base2", "app-1.0");
    const target = syntheticPath("target2", "app-1.1");
    await putSyntheticPath(store, key, base, [], old);
    await putSyntheticPath(store, key, target, [], changed);
    expect((await publishDelta(store, key, { target, base })).kind).toBe("published");
    const before = await allKeys(store);
    // The base's NAR gone: a second computation would fail, so the answer is from the cache.
    await store.delete((await readNarInfo(store, base))?.url ?? "");
    expect(await publishDelta(store, key, { target, base })).toEqual({
      kind: "existing",
      pair: { target, base },
      found: "delta",
    });
    expect((await allKeys(store)).length).toBe(before.length - 1);
  });

  it("leaves a skip note, and no delta, when the delta is more than half the target", async () => {
    const base = syntheticPath("base3", "app-1.0");
    const target = syntheticPath("target3", "app-1.1");
    await putSyntheticPath(store, key, base, [], old);
    await putSyntheticPath(store, key, target, [], randomBytes(150_000).toString("base64"));
    const outcome = await publishDelta(store, key, { target, base });
    expect(outcome.kind).toBe("skipped");
    if (outcome.kind !== "skipped") throw new Error("not skipped");
    expect(outcome.deltaBytes).toBeGreaterThan(outcome.targetBytes / 2);
    expect(await store.head(narInfoKey(deltaPathOf(target, base)))).toBeUndefined();
    expect((await allKeys(store, "delta/")).length).toBe(1);
    const note = JSON.parse(
      (await readAll(store, deltaSkipKey(target, base)))?.toString("utf8") ?? "",
    );
    expect(note).toMatchObject({
      target,
      base,
      deltaBytes: outcome.deltaBytes,
      engine: "zstd-patch",
    });
    expect(await publishDelta(store, key, { target, base })).toMatchObject({
      kind: "existing",
      found: "skip",
    });
  });

  it("leaves no skip note for a pair not worth it at a first, fast level (unworthy: leave)", async () => {
    const base = syntheticPath("base5", "app-1.0");
    const target = syntheticPath("target5", "app-1.1");
    await putSyntheticPath(store, key, base, [], old);
    await putSyntheticPath(store, key, target, [], randomBytes(150_000).toString("base64"));
    const outcome = await publishDelta(
      store,
      key,
      { target, base },
      { level: 3, unworthy: "leave" },
    );
    expect(outcome).toMatchObject({ kind: "skipped", noted: false, level: 3 });
    expect(await allKeys(store, "delta/")).toEqual([]);
  });

  it("replaces a delta by a smaller one of a better level, the old NAR left for who read it", async () => {
    const base = syntheticPath("base6", "app-1.0");
    const target = syntheticPath("target6", "app-1.1");
    await putSyntheticPath(store, key, base, [], old);
    // Many scattered changes: level 1 and level 19 differ.
    let text = old;
    for (let i = 1000; i < 290_000; i += 3000) text = `${text.slice(0, i)}#${text.slice(i + 1)}`;
    await putSyntheticPath(store, key, target, [], text);
    const fast = await publishDelta(store, key, { target, base }, { level: 1, threads: "all" });
    expect(fast).toMatchObject({ kind: "published", level: 1 });
    const firstNar = (await readNarInfo(store, deltaPathOf(target, base)))?.url;
    // Without `improve`, what is there is kept.
    expect(await publishDelta(store, key, { target, base }, { level: 19 })).toMatchObject({
      kind: "existing",
    });
    const better = await publishDelta(store, key, { target, base }, { level: 19, improve: true });
    if (better.kind !== "published" || fast.kind !== "published") throw new Error("not improved");
    expect(better.improvedFrom).toBe(fast.deltaBytes);
    expect(better.deltaBytes).toBeLessThan(fast.deltaBytes);
    const info = await readNarInfo(store, deltaPathOf(target, base));
    expect(info?.narSize).toBe(better.deltaBytes);
    expect(info?.url).not.toBe(firstNar);
    expect(await store.head(firstNar as string)).toBeDefined();
    // Asked again, nothing better comes of it: the delta stays.
    expect(
      await publishDelta(store, key, { target, base }, { level: 19, improve: true }),
    ).toMatchObject({ kind: "existing" });
  });

  it("fails naming the path a pair needs that the cache lacks", async () => {
    const base = syntheticPath("base4", "app-1.0");
    const target = syntheticPath("target4", "app-1.1");
    await putSyntheticPath(store, key, target, [], changed);
    await expect(publishDelta(store, key, { target, base })).rejects.toThrow(
      `the delta's base ${base} is not in the cache`,
    );
  });

  it("signs into the delta none of the target's narinfo that its signatures do not cover", async () => {
    const base = syntheticPath("base", "app-1.0");
    const target = syntheticPath("target", "app-1.1");
    await putSyntheticPath(store, key, base, [], old);
    await putSyntheticPath(store, key, target, [], changed);
    // A cache writer without the key adds a Deriver Nix cannot parse, a line of its own, and
    // a signature by a key the fleet does not trust: Nix would still take the narinfo.
    const cached = (await readAll(store, narInfoKey(target)))?.toString("utf8") ?? "";
    const stranger = generateSecretKey("stranger-1");
    const strangerSig = signNarInfo(parseNarInfo(cached), stranger).sigs.at(-1) as string;
    const tampered = `${cached}Deriver: junk\nX-Pad: ${"x".repeat(70_000)}\nSig: ${strangerSig}\n`;
    await store.put(narInfoKey(target), Buffer.from(tampered));
    const outcome = await publishDelta(store, key, { target, base });
    expect(outcome.kind).toBe("published");
    const info = await readNarInfo(store, deltaPathOf(target, base));
    const nar = info === undefined ? undefined : await readAll(store, info.url);
    if (nar === undefined) throw new Error("no delta");
    const out = join(dir, "restored");
    await restoreNar([nar], out);
    expect(await readFile(join(out, DELTA_FILES.narinfo), "utf8")).toBe(signedLines(cached));
  });

  it("refuses a base NAR that does not match its narinfo, and leaves nothing", async () => {
    const base = syntheticPath("base5", "app-1.0");
    const target = syntheticPath("target5", "app-1.1");
    const stored = await putSyntheticPath(store, key, base, [], old);
    await putSyntheticPath(store, key, target, [], changed);
    await store.put(stored.narKey, buildNar(narNode.regular(`${old}x`)));
    await expect(publishDelta(store, key, { target, base })).rejects.toThrow(/FileSize|NarHash/);
    expect(await allKeys(store, "delta/")).toEqual([]);
  });
});
