// Publishes the delta of one (target, base) pair into a binary cache (docs/deltas.md): both
// NARs, their narinfos signed by the fleet's keys, read from the cache to temporary files within
// the pair's bounds (delta-limits.ts), the zstd patch computed, and the delta's store path
// written (its NAR, then its signed narinfo) when it is worth it, else a signed skip note.
import { createWriteStream } from "node:fs";
import { mkdir, mkdtemp, rm, statfs, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { NixshipError, OperationError } from "../errors.js";
import type { Sha256 } from "../nix/hash.js";
import { type PublicKey, publicKeyOf, type SecretKey } from "../nix/keys.js";
import { dumpPathStream } from "../nix/nar-encode.js";
import { formatNarInfo, type NarInfo, signNarInfo, trustedSignatures } from "../nix/narinfo.js";
import type { StorePath } from "../nix/store-path.js";
import type { ObjectStore } from "../store/object-store.js";
import { eitherSignal, startDeadline } from "../util/deadline.js";
import type { ByteBudget } from "../util/pool.js";
import { cacheNarSource, type DeltaNarSource, storeNarSource } from "./delta-base.js";
import { DELTA_MAX_PAIR_NAR, deltaScratchBytes, deltaTimeoutMs } from "./delta-limits.js";
import {
  DELTA_FILES,
  DELTA_WORTH_RATIO,
  deltaNarInfoText,
  deltaNarKey,
  deltaPathOf,
  deltaSkipKey,
  formatDeltaInfo,
} from "./delta-path.js";
import {
  type DeltaSkipNote,
  formatSkipNote,
  readSignedNarInfo,
  readSkipNote,
} from "./delta-trust.js";
import { computeZstdDelta, deltaLevelFor, type ZstdDeltaOptions } from "./delta-zstd.js";
import { HashingStream } from "./hashing.js";
import { narInfoKey } from "./layout.js";
import { InlineNarWriter, type NarWriter } from "./nar-pool.js";
import { NarCheckError, streamVerifiedNar } from "./read.js";

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
      /** The size of the delta path's NAR, what a host fetches. */
      readonly deltaBytes: number;
      /** The target's compressed NAR (its narinfo's FileSize; NarSize when it has none). */
      readonly targetBytes: number;
      /** The zstd level it was computed at. */
      readonly level: number;
      /** Why what the cache held for the pair was not believed (and is replaced). */
      readonly replaced?: string;
      /** With `improve`: the bytes of the delta it replaces, believed but larger. */
      readonly improvedFrom?: number;
    }
  | {
      readonly kind: "skipped";
      readonly pair: DeltaPair;
      readonly deltaBytes: number;
      readonly targetBytes: number;
      readonly level: number;
      /** Whether the skip note was written (not with `unworthy: "leave"`). */
      readonly noted: boolean;
      readonly replaced?: string;
    }
  /** The delta (or its skip note) was there already, signed and whole: nothing was computed. */
  | { readonly kind: "existing"; readonly pair: DeltaPair; readonly found: "delta" | "skip" };

export interface PublishDeltaOptions extends ZstdDeltaOptions {
  /** Where the temporary NARs go (default: the system's temporary directory). */
  readonly tmpDir?: string;
  /**
   * The keys a narinfo or skip note must be signed by to be believed: the fleet's cache keys
   * (default: the public half of the key that signs the deltas).
   */
  readonly trusted?: readonly PublicKey[];
  /** The most NAR bytes, base and target together, a pair is computed from (DELTA_MAX_PAIR_NAR). */
  readonly maxPairNar?: number;
  /** The pair's deadline, its NARs' download and zstd (default: deltaTimeoutMs of both NARs). */
  readonly timeoutMs?: number;
  /**
   * A pair's path as the deployer's own store recorded it (NarHash and NarSize), where it holds
   * it. A base the cache lacks is dumped from /nix/store and must have that hash and size; a
   * base or target whose record is what the cache's signed narinfo says is dumped from there
   * too (serialising costs less than decompressing, and runs on `narWriter`'s threads), and
   * must have the narinfo's hash and size.
   */
  readonly storeNar?: (
    path: StorePath,
  ) => { readonly narHash: Sha256; readonly narSize: number } | undefined;
  /** What dumps a path from the deployer's store (default: on this thread, InlineNarWriter). */
  readonly narWriter?: NarWriter;
  /**
   * The NAR bytes of the pairs computed at once (computeDeltas shares one among its pairs): a
   * pair takes its base's and target's NAR sizes from it before it writes them, and gives them
   * back at its end.
   */
  readonly budget?: ByteBudget;
  /** The level for a target of `narSize` bytes of NAR (over `level`). */
  readonly levelFor?: (narSize: number) => number;
  /**
   * A delta computed and found not worth it: "note" (default) writes the pair's signed skip
   * note; "leave" writes nothing when it was computed below the best level (deltaLevelFor),
   * for a first pass at a fast level whose verdict is not final.
   */
  readonly unworthy?: "note" | "leave";
  /**
   * A delta the cache holds, signed and whole, is computed again (at `level`) and replaced when
   * the new one is smaller: a new NAR under its own key, then the narinfo put over the old one,
   * so a host reads the one or the other whole, never a part (the old NAR stays for the one
   * that read the old narinfo; the collector sweeps it later).
   */
  readonly improve?: boolean;
}

/**
 * Computes and publishes the delta from `pair.base` to `pair.target`, once. Only what a key of
 * `trusted` signed is believed: a pair whose narinfos are not is refused before a NAR byte is
 * read, and a delta or skip note that is not (or a delta whose NAR does not match its narinfo)
 * is computed again and replaced. Every failure throws: only a delta computed and found too
 * large leaves a skip note.
 */
export async function publishDelta(
  store: ObjectStore,
  key: SecretKey,
  pair: DeltaPair,
  options: PublishDeltaOptions = {},
): Promise<DeltaOutcome> {
  const trusted = options.trusted ?? [publicKeyOf(key)];
  const maxPairNar = options.maxPairNar ?? DELTA_MAX_PAIR_NAR;
  const deltaPath = deltaPathOf(pair.target, pair.base);
  const held = await heldInCache(store, deltaPath, pair, trusted, maxPairNar, options.signal);
  const improving = options.improve === true && held?.kind === "delta" ? held : undefined;
  if (held !== undefined && held.kind !== "refused" && improving === undefined)
    return { kind: "existing", pair, found: held.kind };
  const replaced = held?.kind === "refused" ? held.reason : undefined;

  const target = await signedNarInfo(store, pair.target, "target", trusted);
  const writer = options.narWriter ?? new InlineNarWriter();
  const base = await baseOf(store, pair.base, trusted, options.storeNar, writer);
  const targetNarSource = narSource(store, target.info, "target", options.storeNar, writer);
  const level =
    options.levelFor?.(target.info.narSize) ?? options.level ?? deltaLevelFor(target.info.narSize);
  const narBytes = base.info.narSize + target.info.narSize;
  if (narBytes > maxPairNar) {
    throw new OperationError(
      "delta-too-large",
      `no delta to ${pair.target} from ${pair.base}: their NARs are ${narBytes} bytes together, over the ${maxPairNar} a delta is computed from`,
      { hint: "the path comes whole" },
    );
  }
  const tmp = options.tmpDir ?? tmpdir();
  const timeoutMs = options.timeoutMs ?? deltaTimeoutMs(narBytes);
  const release = await options.budget?.take(narBytes, options.signal);
  // The pair's deadline runs from when it has its share of the budget.
  const deadline = startDeadline(timeoutMs);
  const signal = eitherSignal(deadline, options.signal);
  const started = performance.now();
  let work: string | undefined;
  try {
    await requireScratch(tmp, deltaScratchBytes(base.info.narSize, target.info.narSize), pair);
    work = await mkdtemp(join(tmp, "nixship-delta-"));
    const baseNar = join(work, "base.nar");
    const targetNar = join(work, "target.nar");
    // Each NAR is checked against its narinfo (or the store's record) and cut at its NarSize
    // while it is written; both at once (on the NAR writer's threads, where they come from the
    // deployer's store).
    const written = await Promise.allSettled([
      base.write(baseNar, signal),
      targetNarSource.write(targetNar, signal),
    ]);
    for (const w of written) if (w.status === "rejected") throw w.reason;
    const tree = join(work, "delta");
    await mkdir(tree);
    const deltaFile = join(tree, DELTA_FILES.delta);
    await computeZstdDelta(baseNar, targetNar, deltaFile, target.info.narSize, {
      ...options,
      level,
      signal,
      timeoutMs: Math.max(1, Math.ceil(timeoutMs - (performance.now() - started))),
    });
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
    await writeFile(
      join(tree, DELTA_FILES.narinfo),
      deltaNarInfoText(target.info, trustedSignatures(target.info, trusted)),
    );
    // What a host fetches is the delta path's whole NAR (the patch, the target's narinfo and
    // delta-info): that is what must be clearly smaller than the target's compressed NAR.
    const packed = await packDeltaPath(tree, join(work, "delta.nar"));
    const deltaBytes = packed.size;
    const targetBytes = target.info.fileSize ?? target.info.narSize;
    const again = replaced === undefined ? {} : { replaced };
    // What the cache holds is as good: it stays.
    if (improving !== undefined && deltaBytes >= improving.narSize)
      return { kind: "existing", pair, found: "delta" };
    if (deltaBytes > DELTA_WORTH_RATIO * targetBytes) {
      if (options.unworthy === "leave" && level < deltaLevelFor(target.info.narSize)) {
        return { kind: "skipped", pair, deltaBytes, targetBytes, level, noted: false, ...again };
      }
      const note: DeltaSkipNote = {
        engine: "zstd-patch",
        level,
        target: pair.target,
        base: pair.base,
        deltaBytes,
        targetBytes,
      };
      // What replaces a refused delta or note is put whatever is there. A refused delta's
      // narinfo stays (the writer may delete no narinfo): the signed note outweighs it, for
      // this step and for the plan, so no host is offered it.
      await store.put(deltaSkipKey(pair.target, pair.base), formatSkipNote(note, key), {
        contentType: "application/json",
        ...(replaced === undefined ? { condition: { ifAbsent: true } } : {}),
      });
      return { kind: "skipped", pair, deltaBytes, targetBytes, level, noted: true, ...again };
    }
    const stored = await putDeltaPath(
      store,
      key,
      deltaPath,
      packed,
      replaced !== undefined || improving !== undefined,
    );
    if (held?.kind === "refused" && held.what === "skip")
      await store.delete(deltaSkipKey(pair.target, pair.base));
    const better = improving === undefined ? {} : { improvedFrom: improving.narSize };
    return stored === "existing"
      ? { kind: "existing", pair, found: "delta" }
      : { kind: "published", pair, deltaPath, deltaBytes, targetBytes, level, ...again, ...better };
  } catch (err) {
    throw pairError(err, pair, {
      deadline: deadline.signal,
      timeoutMs,
      tmp,
      signal: options.signal,
    });
  } finally {
    deadline.clear();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
    release?.();
  }
}

/** What the cache holds for a pair: a delta or a skip note it believes, or one it refuses. */
type Held =
  | { readonly kind: "delta"; readonly narSize: number }
  | { readonly kind: "skip" }
  | { readonly kind: "refused"; readonly what: "delta" | "skip"; readonly reason: string };

/**
 * The pair's delta when its narinfo is signed and its NAR matches it (read whole: a delta is
 * small, and a host that fetches one that does not match falls back to the whole path, for
 * good unless it is replaced), else its skip note when it is signed (beside a refused delta
 * too: the note replaced it), else what was refused.
 */
async function heldInCache(
  store: ObjectStore,
  deltaPath: StorePath,
  pair: DeltaPair,
  trusted: readonly PublicKey[],
  maxNar: number,
  interrupt: AbortSignal | undefined,
): Promise<Held | undefined> {
  const delta = await readSignedNarInfo(store, deltaPath, trusted);
  let refusedDelta: string | undefined;
  if (delta?.kind === "signed") {
    const problem = await deltaNarProblem(store, delta.info, maxNar, interrupt);
    if (problem === undefined) return { kind: "delta", narSize: delta.info.narSize };
    refusedDelta = problem;
  } else if (delta?.kind === "refused") {
    refusedDelta = delta.reason;
  }
  const note = await readSkipNote(store, pair, trusted);
  if (note?.kind === "signed") return { kind: "skip" };
  if (refusedDelta !== undefined) return { kind: "refused", what: "delta", reason: refusedDelta };
  return note === undefined ? undefined : { kind: "refused", what: "skip", reason: note.reason };
}

/** Why the NAR of a delta's (signed) narinfo is not the one it names, or undefined. */
async function deltaNarProblem(
  store: ObjectStore,
  info: NarInfo,
  maxNar: number,
  interrupt: AbortSignal | undefined,
): Promise<string | undefined> {
  if (info.narSize > maxNar) return `${info.storePath}: its NAR is ${info.narSize} bytes`;
  const timeoutMs = deltaTimeoutMs(info.narSize);
  const deadline = startDeadline(timeoutMs);
  const signal = eitherSignal(deadline, interrupt);
  const discard = new Writable({ write: (_chunk, _encoding, done) => done() });
  try {
    await streamVerifiedNar(store, info, discard, { signal });
    return undefined;
  } catch (err) {
    if (err instanceof NarCheckError) return err.message;
    throw pairError(
      err,
      { target: info.storePath },
      { deadline: deadline.signal, timeoutMs, signal: interrupt },
    );
  } finally {
    deadline.clear();
  }
}

/** The narinfo of one side of a pair, signed by a trusted key; else a typed error naming it. */
async function signedNarInfo(
  store: ObjectStore,
  path: StorePath,
  role: "target" | "base",
  trusted: readonly PublicKey[],
): Promise<{ text: string; info: NarInfo }> {
  return requireSigned(await readSignedNarInfo(store, path, trusted), store, path, role);
}

/** A narinfo as read, when it is there and signed; else a typed error naming it. */
function requireSigned(
  read: Awaited<ReturnType<typeof readSignedNarInfo>>,
  store: ObjectStore,
  path: StorePath,
  role: "target" | "base",
): { text: string; info: NarInfo } {
  if (read === undefined) {
    throw new OperationError(
      "delta-path-missing",
      `the delta's ${role} ${path} is not in the cache ${store.url}`,
      { hint: "push the path first; a delta joins two paths the cache holds" },
    );
  }
  if (read.kind === "refused") {
    throw new OperationError(
      "delta-untrusted",
      `the delta's ${role} ${path} is not signed by a key of the fleet in ${store.url}: ${read.reason}`,
      { hint: "push the path again with the fleet's key (someone else wrote its narinfo)" },
    );
  }
  return read;
}

/**
 * The base's NAR as its narinfo in the cache says, signed by a key of `trusted`; where the cache
 * lacks it and the deployer's store holds it (`storeNar`), as the store recorded it.
 */
async function baseOf(
  store: ObjectStore,
  path: StorePath,
  trusted: readonly PublicKey[],
  storeNar: PublishDeltaOptions["storeNar"],
  writer: NarWriter,
): Promise<DeltaNarSource> {
  const read = await readSignedNarInfo(store, path, trusted);
  const recorded = read === undefined ? storeNar?.(path) : undefined;
  if (recorded !== undefined) {
    return storeNarSource(path, recorded, writer, { role: "base", against: "the store's record" });
  }
  return narSource(store, requireSigned(read, store, path, "base").info, "base", storeNar, writer);
}

/**
 * A NAR the cache's signed narinfo `info` describes: dumped from the deployer's store where it
 * holds the path as the narinfo says, else read from the cache.
 */
function narSource(
  store: ObjectStore,
  info: NarInfo,
  role: "base" | "target",
  storeNar: PublishDeltaOptions["storeNar"],
  writer: NarWriter,
): DeltaNarSource {
  const recorded = storeNar?.(info.storePath);
  const same =
    recorded !== undefined &&
    recorded.narSize === info.narSize &&
    recorded.narHash.equals(info.narHash);
  return same
    ? storeNarSource(info.storePath, info, writer, { role, against: "the cache's narinfo" })
    : cacheNarSource(store, info);
}

/** Fails unless the temporary directory has `bytes` free for the pair's NARs and patch. */
async function requireScratch(dir: string, bytes: number, pair: DeltaPair): Promise<void> {
  const fs = await statfs(dir);
  const free = fs.bavail * fs.bsize;
  if (bytes > free) {
    throw new OperationError(
      "delta-no-space",
      `no delta to ${pair.target} from ${pair.base}: it needs ${bytes} bytes in ${dir}, which has ${free} free`,
      { hint: "free some space there, or point TMPDIR at a larger disk; the path comes whole" },
    );
  }
}

/**
 * A pair's error as the pair's outcome: its deadline is `delta-timeout`, a file it could not
 * write is `delta-io` (a full disk is the pair's failure, not the deploy's). An interrupt, and
 * errors already typed, pass as they are.
 */
function pairError(
  err: unknown,
  pair: Pick<DeltaPair, "target">,
  context: {
    readonly deadline: AbortSignal;
    readonly timeoutMs: number;
    readonly tmp?: string;
    readonly signal: AbortSignal | undefined;
  },
): unknown {
  if (context.signal?.aborted) return err;
  if (context.deadline.aborted && !(err instanceof NixshipError && err.code === "delta-timeout")) {
    return new OperationError(
      "delta-timeout",
      `the delta of ${pair.target} took longer than ${Math.round(context.timeoutMs / 1000)} s (its NARs' download and zstd); stopped`,
      { hint: "a slow cache or a busy deployer: the path comes whole", cause: err },
    );
  }
  if (err instanceof NixshipError || !(err instanceof Error) || !("syscall" in err)) return err;
  return new OperationError(
    "delta-io",
    `the delta of ${pair.target}: ${err.message}${context.tmp === undefined ? "" : ` (in ${context.tmp})`}`,
    { hint: "the path comes whole", cause: err },
  );
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
 * delta/) first, then its narinfo, signed, put only if absent ("existing" when another
 * publisher's narinfo was there first), or in place of one refused (`replace`).
 */
async function putDeltaPath(
  store: ObjectStore,
  key: SecretKey,
  deltaPath: StorePath,
  nar: { readonly file: string; readonly hash: Sha256; readonly size: number },
  replace: boolean,
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
    {
      contentType: "text/x-nix-narinfo",
      ...(replace ? {} : { condition: { ifAbsent: true } }),
    },
  );
  return put.status === "written" ? "written" : "existing";
}
