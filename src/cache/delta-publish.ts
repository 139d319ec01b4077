// Publishes the delta of one (target, base) pair into a binary cache (docs/deltas.md): both
// NARs read from the cache to temporary files, the zstd patch computed, and the delta's store
// path written (its NAR, then its signed narinfo) when it is worth it, else a skip note.
import { createWriteStream } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { OperationError } from "../errors.js";
import type { Sha256 } from "../nix/hash.js";
import type { SecretKey } from "../nix/keys.js";
import { dumpPathStream } from "../nix/nar-encode.js";
import { formatNarInfo, type NarInfo, signNarInfo } from "../nix/narinfo.js";
import type { StorePath } from "../nix/store-path.js";
import type { ObjectStore } from "../store/object-store.js";
import {
  DELTA_FILES,
  DELTA_WORTH_RATIO,
  deltaNarKey,
  deltaPathOf,
  deltaSkipKey,
  formatDeltaInfo,
} from "./delta-path.js";
import { computeZstdDelta, deltaLevelFor, type ZstdDeltaOptions } from "./delta-zstd.js";
import { HashingStream } from "./hashing.js";
import { narInfoKey } from "./layout.js";
import { readNarInfoText, streamVerifiedNar } from "./read.js";

export interface DeltaPair {
  readonly target: StorePath;
  readonly base: StorePath;
}

/** What publishing one pair did. */
export type DeltaOutcome =
  | {
      readonly kind: "published";
      readonly pair: DeltaPair;
      readonly deltaPath: StorePath;
      /** The size of delta.zst. */
      readonly deltaBytes: number;
      /** The target's compressed NAR (its narinfo's FileSize; NarSize when it has none). */
      readonly targetBytes: number;
    }
  | {
      readonly kind: "skipped";
      readonly pair: DeltaPair;
      readonly deltaBytes: number;
      readonly targetBytes: number;
    }
  /** The delta (or its skip note) was there already: nothing was computed. */
  | { readonly kind: "existing"; readonly pair: DeltaPair; readonly found: "delta" | "skip" };

export interface PublishDeltaOptions extends ZstdDeltaOptions {
  /** Where the temporary NARs go (default: the system's temporary directory). */
  readonly tmpDir?: string;
}

/** The skip note's content: enough to tell why, and with what. */
export interface DeltaSkipNote {
  readonly engine: "zstd-patch";
  readonly level: number;
  readonly target: StorePath;
  readonly base: StorePath;
  readonly deltaBytes: number;
  readonly targetBytes: number;
}

/** Computes and publishes the delta from `pair.base` to `pair.target`, once. */
export async function publishDelta(
  store: ObjectStore,
  key: SecretKey,
  pair: DeltaPair,
  options: PublishDeltaOptions = {},
): Promise<DeltaOutcome> {
  const deltaPath = deltaPathOf(pair.target, pair.base);
  const found = await existing(store, deltaPath, pair);
  if (found !== undefined) return { kind: "existing", pair, found };

  const target = await narInfoOf(store, pair.target, "target");
  const base = await narInfoOf(store, pair.base, "base");
  const work = await mkdtemp(join(options.tmpDir ?? tmpdir(), "nixship-delta-"));
  try {
    const baseNar = join(work, "base.nar");
    const targetNar = join(work, "target.nar");
    // Each NAR is checked against its narinfo and cut at its NarSize while it is written.
    await streamVerifiedNar(store, base.info, createWriteStream(baseNar));
    await streamVerifiedNar(store, target.info, createWriteStream(targetNar));
    const tree = join(work, "delta");
    await mkdir(tree);
    const deltaFile = join(tree, DELTA_FILES.delta);
    await computeZstdDelta(baseNar, targetNar, deltaFile, target.info.narSize, options);
    await rm(baseNar);
    await rm(targetNar);
    await writeFile(
      join(tree, DELTA_FILES.info),
      formatDeltaInfo({
        engine: "zstd-patch",
        target: pair.target,
        base: pair.base,
        baseNarHash: base.info.narHash,
        baseNarSize: base.info.narSize,
      }),
    );
    await writeFile(join(tree, DELTA_FILES.narinfo), target.text);
    // What a host fetches is the delta path's whole NAR (the patch, the target's narinfo and
    // delta-info): that is what must be clearly smaller than the target's compressed NAR.
    const packed = await packDeltaPath(tree, join(work, "delta.nar"));
    const deltaBytes = packed.size;
    const targetBytes = target.info.fileSize ?? target.info.narSize;
    if (deltaBytes > DELTA_WORTH_RATIO * targetBytes) {
      const note: DeltaSkipNote = {
        engine: "zstd-patch",
        level: options.level ?? deltaLevelFor(target.info.narSize),
        target: pair.target,
        base: pair.base,
        deltaBytes,
        targetBytes,
      };
      await store.put(
        deltaSkipKey(pair.target, pair.base),
        Buffer.from(`${JSON.stringify(note)}\n`),
        { contentType: "application/json", condition: { ifAbsent: true } },
      );
      return { kind: "skipped", pair, deltaBytes, targetBytes };
    }
    const stored = await putDeltaPath(store, key, deltaPath, packed);
    return stored === "existing"
      ? { kind: "existing", pair, found: "delta" }
      : { kind: "published", pair, deltaPath, deltaBytes, targetBytes };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function existing(
  store: ObjectStore,
  deltaPath: StorePath,
  pair: DeltaPair,
): Promise<"delta" | "skip" | undefined> {
  if ((await store.head(narInfoKey(deltaPath))) !== undefined) return "delta";
  if ((await store.head(deltaSkipKey(pair.target, pair.base))) !== undefined) return "skip";
  return undefined;
}

async function narInfoOf(
  store: ObjectStore,
  path: StorePath,
  role: "target" | "base",
): Promise<{ text: string; info: NarInfo }> {
  const read = await readNarInfoText(store, path);
  if (read === undefined) {
    throw new OperationError(
      "delta-path-missing",
      `the delta's ${role} ${path} is not in the cache ${store.url}`,
      { hint: "push the path first; a delta joins two paths the cache holds" },
    );
  }
  return read;
}

/** The delta path's NAR, dumped from the directory `tree` into `file`: its hash and size. */
async function packDeltaPath(
  tree: string,
  file: string,
): Promise<{ readonly file: string; readonly hash: Sha256; readonly size: number }> {
  const hasher = new HashingStream();
  await pipeline(dumpPathStream(tree), hasher, createWriteStream(file));
  const nar = hasher.digest();
  return { file, hash: nar.hash, size: nar.size };
}

/**
 * Writes the delta's store path from its NAR (`packDeltaPath`): the NAR (uncompressed, under
 * delta/) first, then its narinfo, signed, put only if absent. "existing" when another
 * publisher's narinfo was there first.
 */
async function putDeltaPath(
  store: ObjectStore,
  key: SecretKey,
  deltaPath: StorePath,
  nar: { readonly file: string; readonly hash: Sha256; readonly size: number },
): Promise<"written" | "existing"> {
  const url = deltaNarKey(nar.hash);
  await store.putFile(url, nar.file, { sha256: Buffer.from(nar.hash.bytes).toString("hex") });
  const info: NarInfo = {
    storePath: deltaPath,
    url,
    compression: "none",
    fileHash: nar.hash,
    fileSize: nar.size,
    narHash: nar.hash,
    narSize: nar.size,
    references: [],
    deriver: undefined,
    sigs: [],
    ca: undefined,
  };
  const put = await store.put(
    narInfoKey(deltaPath),
    Buffer.from(formatNarInfo(signNarInfo(info, key))),
    { contentType: "text/x-nix-narinfo", condition: { ifAbsent: true } },
  );
  return put.status === "written" ? "written" : "existing";
}
