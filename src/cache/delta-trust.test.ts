import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { allKeys, putSyntheticPath, syntheticPath } from "../../support/synthetic-cache.js";
import { Sha256 } from "../nix/hash.js";
import { generateSecretKey, publicKeyOf, type SecretKey } from "../nix/keys.js";
import { buildNar, narNode } from "../nix/nar-write.js";
import {
  checkNarInfoSignatures,
  formatNarInfo,
  type NarInfo,
  signNarInfo,
} from "../nix/narinfo.js";
import type { StorePath } from "../nix/store-path.js";
import { readAll } from "../store/helpers.js";
import type { GetResult, ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { pairId } from "./delta-bases.js";
import { lookupDeltas } from "./delta-lookup.js";
import { deltaPathOf, deltaSkipKey } from "./delta-path.js";
import { publishDelta } from "./delta-publish.js";
import {
  DELTA_PATH_NARINFO_LIMIT,
  formatSkipNote,
  readSignedNarInfo,
  readSkipNote,
} from "./delta-trust.js";
import { narInfoKey, narKey } from "./layout.js";
import { checkStoredNar, readNarInfo } from "./read.js";

let dir: string;
let scratch: string;
let store: ObjectStore;
/** The NARs the publisher asked the cache for. */
let fetched: string[];
const key = generateSecretKey("delta-trust-1");
const stranger = generateSecretKey("stranger-1");
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-delta-trust-"));
  scratch = await mkdtemp(join(dir, "tmp-"));
  const real = await openStore(`file://${dir}/cache?fsync=false`);
  fetched = [];
  // The real directory store, with its reads of NARs noted.
  store = withGet(real, (k, get) => {
    if (!k.endsWith(".narinfo") && !k.startsWith("delta/skip/")) fetched.push(k);
    return get(k);
  });
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

/** `real` with its `get` passed through `get` (the store's own methods bound to it). */
function withGet(
  real: ObjectStore,
  get: (key: string, real: (key: string) => Promise<GetResult | undefined>) => Promise<unknown>,
): ObjectStore {
  return new Proxy(real, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (prop === "get") return (k: string) => get(k, (key) => target.get(key));
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

const old = randomBytes(225_000).toString("base64");
const changed = `${old.slice(0, 1000)}CHANGED${old.slice(1007)}`;

/** A pair whose two sides the cache holds, signed by the fleet's key; the delta is worth it. */
async function pair(seed: string): Promise<{ target: StorePath; base: StorePath }> {
  const base = syntheticPath(`base-${seed}`, "app-1.0");
  const target = syntheticPath(`target-${seed}`, "app-1.1");
  await putSyntheticPath(store, key, base, [], old);
  await putSyntheticPath(store, key, target, [], changed);
  return { target, base };
}

/**
 * Puts, for `path`, a NAR of `narSize` zero bytes compressed by zstd into a few hundred bytes
 * (a decompression bomb), with a narinfo that says so, signed by `signer` (none: unsigned);
 * `claim` replaces its NarSize. Returns the NAR's key.
 */
async function putBomb(
  path: StorePath,
  narSize: number,
  signer: SecretKey | undefined,
  claim?: number,
): Promise<string> {
  const nar = buildNar(narNode.regular(Buffer.alloc(narSize - 112)));
  expect(nar.length).toBe(narSize);
  const file = execFileSync("zstd", ["-q", "-19", "-c"], { input: nar, maxBuffer: 1 << 20 });
  const fileHash = Sha256.of(file);
  const info: NarInfo = {
    storePath: path,
    url: narKey(fileHash, "zstd"),
    compression: "zstd",
    fileHash,
    fileSize: file.length,
    narHash: Sha256.of(nar),
    narSize: claim ?? nar.length,
    references: [],
    deriver: undefined,
    sigs: [],
    ca: undefined,
  };
  await store.put(info.url, file);
  await store.put(
    narInfoKey(path),
    Buffer.from(formatNarInfo(signer === undefined ? info : signNarInfo(info, signer))),
  );
  return info.url;
}

const MiB = 1024 * 1024;

describe("publishDelta believes only what the fleet's keys signed", () => {
  it("refuses a base whose narinfo another key signed, before reading its NAR, and notes no skip", async () => {
    const { target, base } = await pair("forged");
    // The base's narinfo replaced by one claiming 16 MiB (its NAR a zstd bomb of a few KB).
    const bomb = await putBomb(base, 16 * MiB, stranger);
    for (const signer of [stranger, undefined]) {
      if (signer === undefined) await putBomb(base, 16 * MiB, undefined);
      const err = await publishDelta(store, key, { target, base }, { tmpDir: scratch }).catch(
        (e: unknown) => e,
      );
      expect(err).toMatchObject({
        code: "delta-untrusted",
        message: expect.stringContaining(`the delta's base ${base} is not signed by a key`),
      });
    }
    expect(fetched).not.toContain(bomb);
    expect(fetched).toEqual([]);
    expect(await readdir(scratch)).toEqual([]);
    expect(await allKeys(store, "delta/")).toEqual([]);
  });

  it("computes no pair whose NARs pass the cap, nor one the temporary disk cannot hold", async () => {
    const { target, base } = await pair("large");
    // Signed by the fleet's key: a genuine 16 MiB path, over a cap of 4 MiB.
    const bomb = await putBomb(base, 16 * MiB, key);
    const err = await publishDelta(
      store,
      key,
      { target, base },
      { tmpDir: scratch, maxPairNar: 4 * MiB },
    ).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "delta-too-large" });
    // A signed NarSize no disk holds (its NAR is never read, so it need not match).
    await putBomb(base, 16 * MiB, key, 2 ** 52);
    const full = await publishDelta(
      store,
      key,
      { target, base },
      { tmpDir: scratch, maxPairNar: Number.MAX_SAFE_INTEGER },
    ).catch((e: unknown) => e);
    expect(full).toMatchObject({
      code: "delta-no-space",
      message: expect.stringContaining(`in ${scratch}, which has`),
    });
    expect(fetched).not.toContain(bomb);
    expect(await allKeys(store, "delta/")).toEqual([]);
  });

  it("reads a stored NAR no further than its signed NarSize compresses to (FileSize is not signed)", async () => {
    const { target, base } = await pair("padded");
    const info = (await readNarInfo(store, base)) as NarInfo;
    const nar = buildNar(narNode.regular(old));
    // The same NAR, zstd-compressed, then 4 MiB of a skippable frame zstd reads past; the
    // narinfo's unsigned fields say so, its signature still holds.
    const skippable = Buffer.alloc(8 + 4 * MiB);
    skippable.writeUInt32LE(0x184d2a50, 0);
    skippable.writeUInt32LE(4 * MiB, 4);
    const file = Buffer.concat([execFileSync("zstd", ["-q", "-c"], { input: nar }), skippable]);
    const padded: NarInfo = {
      ...info,
      url: narKey(Sha256.of(file), "zstd"),
      compression: "zstd",
      fileHash: Sha256.of(file),
      fileSize: file.length,
    };
    await store.put(padded.url, file);
    await store.put(narInfoKey(base), Buffer.from(formatNarInfo(padded)));
    expect(checkNarInfoSignatures(padded, [publicKeyOf(key)])).toMatchObject({ ok: true });
    const err = await publishDelta(store, key, { target, base }, { tmpDir: scratch }).catch(
      (e: unknown) => e,
    );
    expect(err).toMatchObject({
      code: "file-mismatch",
      message: expect.stringContaining(`more than a NAR of ${info.narSize} bytes compresses to`),
    });
    expect(await allKeys(store, "delta/")).toEqual([]);
  });

  it("stops a pair whose NAR download stalls at the pair's deadline, and notes no skip", async () => {
    const { target, base } = await pair("stalled");
    const baseNar = (await readNarInfo(store, base))?.url;
    // A cache that answers the base's NAR and never sends a byte of it.
    const stalled = withGet(store, async (k, get) => {
      const found = await get(k);
      if (k !== baseNar || found === undefined) return found;
      (found.body as { destroy?: () => void }).destroy?.();
      return { ...found, body: new PassThrough() };
    });
    const err = await publishDelta(
      stalled,
      key,
      { target, base },
      { tmpDir: scratch, timeoutMs: 300 },
    ).catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: "delta-timeout",
      message: expect.stringContaining("its NARs' download and zstd"),
    });
    expect(await readdir(scratch)).toEqual([]);
    expect(await allKeys(store, "delta/")).toEqual([]);
  });

  it("ignores a skip note the fleet's key did not sign and publishes the delta in its place", async () => {
    const planted = await pair("planted");
    const strange = await pair("strange");
    await store.put(
      deltaSkipKey(planted.target, planted.base),
      Buffer.from(
        JSON.stringify({
          engine: "zstd-patch",
          level: 19,
          ...planted,
          deltaBytes: 10,
          targetBytes: 10,
        }),
      ),
    );
    await store.put(
      deltaSkipKey(strange.target, strange.base),
      formatSkipNote(
        { engine: "zstd-patch", level: 19, ...strange, deltaBytes: 10, targetBytes: 10 },
        stranger,
      ),
    );
    for (const [p, why] of [
      [planted, /unsigned/],
      [strange, /signed by a key the fleet does not trust/],
    ] as const) {
      const outcome = await publishDelta(store, key, p, { tmpDir: scratch });
      expect(outcome).toMatchObject({ kind: "published", replaced: expect.stringMatching(why) });
      expect(await store.head(deltaSkipKey(p.target, p.base))).toBeUndefined();
      expect(await publishDelta(store, key, p)).toMatchObject({ kind: "existing", found: "delta" });
    }
  });

  it("publishes again a delta whose NAR was swapped, or whose narinfo another key signed", async () => {
    const swapped = await pair("swapped");
    const resigned = await pair("resigned");
    for (const p of [swapped, resigned]) {
      expect((await publishDelta(store, key, p)).kind).toBe("published");
    }
    // Garbage of the same size in place of one delta's NAR.
    const info = (await readNarInfo(store, deltaPathOf(swapped.target, swapped.base))) as NarInfo;
    await store.put(info.url, randomBytes(info.narSize));
    // The other's narinfo signed by a stranger instead of the fleet's key.
    const other = (await readNarInfo(
      store,
      deltaPathOf(resigned.target, resigned.base),
    )) as NarInfo;
    await store.put(
      narInfoKey(other.storePath),
      Buffer.from(formatNarInfo(signNarInfo({ ...other, sigs: [] }, stranger))),
    );

    expect(await publishDelta(store, key, swapped, { tmpDir: scratch })).toMatchObject({
      kind: "published",
      replaced: expect.stringMatching(/NarHash|FileHash|hash/),
    });
    await checkStoredNar(store, info);
    expect(await publishDelta(store, key, resigned, { tmpDir: scratch })).toMatchObject({
      kind: "published",
      replaced: expect.stringMatching(/stranger-1/),
    });
    const now = (await readNarInfo(store, other.storePath)) as NarInfo;
    expect(checkNarInfoSignatures(now, [publicKeyOf(key)])).toMatchObject({ ok: true });
    await checkStoredNar(store, now);
  });
});

describe("a delta path's narinfo a cache writer made large", () => {
  it("is read no further than a delta's narinfo can be, refused, and replaced", async () => {
    const padded = await pair("padded");
    expect((await publishDelta(store, key, padded)).kind).toBe("published");
    const deltaPath = deltaPathOf(padded.target, padded.base);
    // Its signed narinfo, with an unsigned line of 1 MiB (Nix would still take it).
    const text = (await readAll(store, narInfoKey(deltaPath)))?.toString("utf8") ?? "";
    await store.put(narInfoKey(deltaPath), Buffer.from(`${text}X-Pad: ${"x".repeat(1 << 20)}\n`));
    expect(await readSignedNarInfo(store, deltaPath, [publicKeyOf(key)])).toEqual({
      kind: "refused",
      reason: expect.stringContaining(`over ${DELTA_PATH_NARINFO_LIMIT} bytes`),
    });
    expect(await publishDelta(store, key, padded, { tmpDir: scratch })).toMatchObject({
      kind: "published",
      replaced: expect.stringContaining(`over ${DELTA_PATH_NARINFO_LIMIT} bytes`),
    });
    expect((await readAll(store, narInfoKey(deltaPath)))?.length).toBeLessThan(2048);
  });
});

/** `real` as the writer's IAM policy lets it: no narinfo may be deleted. */
function withoutNarInfoDeletes(real: ObjectStore): ObjectStore {
  return new Proxy(real, {
    get(target, prop) {
      if (prop === "delete") {
        return async (k: string) => {
          if (k.endsWith(".narinfo")) throw new Error(`AccessDenied: s3:DeleteObject on ${k}`);
          return target.delete(k);
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

describe("a delta planted by a cache writer, for a pair not worth one", () => {
  it("stays where the writer may delete no narinfo: the signed note outweighs it, here and in a plan", async () => {
    const base = syntheticPath("base-planted-unworthy", "app-1.0");
    const target = syntheticPath("target-planted-unworthy", "app-1.1");
    await putSyntheticPath(store, key, base, [], old);
    await putSyntheticPath(store, key, target, [], randomBytes(150_000).toString("base64"));
    const planted = { target, base };
    await putBomb(deltaPathOf(target, base), 4096, undefined);
    const writer = withoutNarInfoDeletes(store);

    const first = await publishDelta(writer, key, planted, { tmpDir: scratch });
    expect(first).toMatchObject({
      kind: "skipped",
      noted: true,
      replaced: expect.stringMatching(/unsigned|no signature/),
    });
    expect(await store.head(narInfoKey(deltaPathOf(target, base)))).toBeDefined();
    // The next deploy believes the note: it computes nothing, and no host is offered the delta.
    fetched = [];
    expect(await publishDelta(writer, key, planted, { tmpDir: scratch })).toMatchObject({
      kind: "existing",
      found: "skip",
    });
    expect(fetched).toEqual([]);
    const lookup = await lookupDeltas(store, [publicKeyOf(key)], [planted], [target]);
    expect(lookup.pairs.get(pairId(planted))).toEqual({ kind: "skip" });
  });
});

describe("skip notes", () => {
  it("are signed with the cache's key, believed only for their own pair and keys", async () => {
    const a = await pair("note-a");
    const b = await pair("note-b");
    const note = { engine: "zstd-patch", level: 19, ...a, deltaBytes: 7, targetBytes: 8 } as const;
    await store.put(deltaSkipKey(a.target, a.base), formatSkipNote(note, key));
    expect(await readSkipNote(store, a, [publicKeyOf(key)])).toEqual({ kind: "signed", note });
    expect(await readSkipNote(store, a, [publicKeyOf(stranger)])).toMatchObject({
      kind: "refused",
    });
    // A's note copied to b's key is not b's.
    await store.put(deltaSkipKey(b.target, b.base), formatSkipNote(note, key));
    expect(await readSkipNote(store, b, [publicKeyOf(key)])).toMatchObject({
      kind: "refused",
      reason: expect.stringContaining("not a skip note of this pair"),
    });
    // Its figures changed after signing.
    const tampered = JSON.parse(formatSkipNote(note, key).toString()) as Record<string, unknown>;
    await store.put(
      deltaSkipKey(a.target, a.base),
      Buffer.from(JSON.stringify({ ...tampered, deltaBytes: 1 })),
    );
    expect(await readSkipNote(store, a, [publicKeyOf(key)])).toMatchObject({
      kind: "refused",
      reason: expect.stringContaining("signature does not match"),
    });
  });
});
