// Reading a binary cache: narinfos, and NARs decompressed and checked against their hashes.
import { Transform, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { InputError, OperationError } from "../errors.js";
import { type NarInfo, parseNarInfo } from "../nix/narinfo.js";
import { parseStorePath } from "../nix/store-path.js";
import { readAll } from "../store/helpers.js";
import type { ObjectStore } from "../store/object-store.js";
import { eitherSignal, readDeadlineMs, startDeadline, timedOut } from "../util/deadline.js";
import { decompressor } from "./compression.js";
import { HashingStream } from "./hashing.js";
import { narInfoKey } from "./layout.js";

/**
 * The most a narinfo may hold: one with 10,000 references is under 1 MB, and one that is
 * larger is refused before it is read whole.
 */
export const NARINFO_LIMIT = 4 * 1024 * 1024;

export async function readText(
  store: ObjectStore,
  key: string,
  limit?: number,
): Promise<string | undefined> {
  return (await readAll(store, key, limit))?.toString("utf8");
}

/** The hash part of a store path, or the argument itself when it already is one. */
export function hashPartOf(pathOrHash: string): string {
  return pathOrHash.startsWith("/") ? parseStorePath(pathOrHash).hashPart : pathOrHash;
}

/** The narinfo of a store path (or hash part), or undefined when the cache does not have it. */
export async function readNarInfo(
  store: ObjectStore,
  pathOrHash: string,
): Promise<NarInfo | undefined> {
  return (await readNarInfoText(store, pathOrHash))?.info;
}

/** The narinfo as readNarInfo reads it, with its text byte for byte (a delta carries it). */
export async function readNarInfoText(
  store: ObjectStore,
  pathOrHash: string,
  /** The most read of it: NARINFO_LIMIT, or less where the path's narinfo is known small. */
  limit = NARINFO_LIMIT,
): Promise<{ readonly text: string; readonly info: NarInfo } | undefined> {
  const key = narInfoKey(hashPartOf(pathOrHash));
  const text = await readText(store, key, limit);
  if (text === undefined) return undefined;
  const info = parseNarInfo(text, key);
  const described = parseStorePath(info.storePath).hashPart;
  if (
    described !== hashPartOf(pathOrHash) ||
    (pathOrHash.startsWith("/") && info.storePath !== pathOrHash)
  ) {
    throw new InputError(
      "narinfo-mismatch",
      `${key} describes ${info.storePath}, not ${pathOrHash}`,
    );
  }
  return { text, info };
}

export type NarProblem =
  | { readonly kind: "nar-missing"; readonly message: string }
  | { readonly kind: "file-mismatch"; readonly message: string }
  | { readonly kind: "nar-mismatch"; readonly message: string }
  | { readonly kind: "bad-compression"; readonly message: string };

export class NarCheckError extends OperationError {
  constructor(readonly problem: NarProblem) {
    super(problem.kind, problem.message);
  }
}

/** Passes at most `max` bytes (undefined: all), failing with `error()` at the first past them. */
export function byteLimit(max: number | undefined, error: () => Error): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      seen += chunk.length;
      if (max !== undefined && seen > max) done(error());
      else done(null, chunk);
    },
  });
}

/**
 * The most bytes a NAR of `narSize` bytes is stored as, compressed (zstd, xz, bzip2: bzip2's
 * worst case is 1% larger, and a header): FileSize is not signed, so it is bounded by what is.
 */
export function storedNarBound(narSize: number): number {
  return narSize + Math.ceil(narSize / 64) + 64 * 1024;
}

/**
 * Streams the decompressed NAR of `info` into `sink`, checking FileHash/FileSize of the stored
 * object and NarHash/NarSize of its content. The sink sees every byte before the checks end,
 * so callers that must not keep unverified data (import, restore) hold it back until this
 * resolves (a failed check rejects with a NarCheckError). Only the narinfo's signed fields
 * (NarHash, NarSize) are believed to bound the stored object: at most storedNarBound(NarSize)
 * bytes are read, whatever FileSize says or whether it says anything (a cache writer without
 * the key can pad a NAR with what decompresses to nothing). Its time is bounded too, by
 * readDeadlineMs of those bytes (a store that sends a byte within each idle timeout would hold
 * it for ever), or by `deadlineMs`; `signal` may end it sooner (the promise then rejects with
 * the signal's reason).
 */
export async function streamVerifiedNar(
  store: ObjectStore,
  info: NarInfo,
  sink: NodeJS.WritableStream,
  options: { readonly signal?: AbortSignal; readonly deadlineMs?: number } = {},
): Promise<void> {
  const { signal } = options;
  const maxFileBytes = storedNarBound(info.narSize);
  signal?.throwIfAborted();
  const got = await store.get(info.url);
  if (!got) {
    throw new NarCheckError({
      kind: "nar-missing",
      message: `${info.storePath}: NAR ${info.url} is missing from the cache`,
    });
  }
  // What the narinfo says bounds what is read: a stored file of another size is refused
  // before a byte is read, and a stream stops as soon as it runs past FileSize, or its
  // decompressed NAR past NarSize (a decompression bomb writes nothing beyond that).
  if (info.fileSize !== undefined && got.info.size !== info.fileSize) {
    (got.body as { destroy?: () => void }).destroy?.();
    throw new NarCheckError({
      kind: "file-mismatch",
      message: `${info.storePath}: ${info.url} is ${got.info.size} bytes, but the narinfo says FileSize ${info.fileSize}`,
    });
  }
  if (got.info.size > maxFileBytes) {
    (got.body as { destroy?: () => void }).destroy?.();
    throw new NarCheckError({
      kind: "file-mismatch",
      message: `${info.storePath}: ${info.url} is ${got.info.size} bytes, more than a NAR of ${info.narSize} bytes compresses to (${maxFileBytes})`,
    });
  }
  const fileHasher = new HashingStream();
  const narHasher = new HashingStream();
  const byFileSize = (info.fileSize ?? Infinity) <= maxFileBytes;
  const storedBytes = byFileSize && info.fileSize !== undefined ? info.fileSize : maxFileBytes;
  const fileLimit = byteLimit(
    storedBytes,
    () =>
      new NarCheckError({
        kind: "file-mismatch",
        message: byFileSize
          ? `${info.storePath}: ${info.url} holds more than the ${info.fileSize} bytes its narinfo's FileSize says`
          : `${info.storePath}: ${info.url} holds more than ${maxFileBytes} bytes, more than a NAR of ${info.narSize} bytes compresses to`,
      }),
  );
  const narLimit = byteLimit(
    info.narSize,
    () =>
      new NarCheckError({
        kind: "nar-mismatch",
        message: `${info.storePath}: ${info.url} decompresses to more than the ${info.narSize} bytes its narinfo's NarSize says`,
      }),
  );
  const deadlineMs = options.deadlineMs ?? readDeadlineMs(storedBytes);
  const deadline = startDeadline(deadlineMs);
  try {
    await pipeline(
      got.body,
      fileLimit,
      fileHasher,
      // Past NarSize, narLimit refuses it; zstd's in-process decompressor stops soon after.
      decompressor(info.compression, info.narSize),
      narLimit,
      narHasher,
      sink,
      { signal: eitherSignal(deadline, signal) },
    );
  } catch (err) {
    if (timedOut(deadline.signal)) {
      throw new OperationError(
        "store-read-timeout",
        `${info.storePath}: ${info.url} (${storedBytes} bytes at most) was not all read in ${Math.round(deadlineMs / 1000)} s: stopped`,
        { hint: "the store (or a proxy on the way) answers too slowly; try again, or check it" },
      );
    }
    if (err instanceof OperationError && err.code === "compressor-failed") {
      throw new NarCheckError({
        kind: "bad-compression",
        message: `${info.storePath}: ${info.url} does not decompress as ${info.compression}: ${err.message}`,
      });
    }
    throw err;
  } finally {
    deadline.clear();
  }
  const file = fileHasher.digest();
  if (info.fileHash && !file.hash.equals(info.fileHash)) {
    throw new NarCheckError({
      kind: "file-mismatch",
      message: `${info.storePath}: ${info.url} has hash ${file.hash}, but the narinfo says FileHash ${info.fileHash}`,
    });
  }
  if (info.fileSize !== undefined && file.size !== info.fileSize) {
    throw new NarCheckError({
      kind: "file-mismatch",
      message: `${info.storePath}: ${info.url} is ${file.size} bytes, but the narinfo says FileSize ${info.fileSize}`,
    });
  }
  const nar = narHasher.digest();
  if (!nar.hash.equals(info.narHash) || nar.size !== info.narSize) {
    throw new NarCheckError({
      kind: "nar-mismatch",
      message: `${info.storePath}: the decompressed NAR has ${nar.hash} (${nar.size} bytes), but the narinfo says NarHash ${info.narHash} (${info.narSize} bytes)`,
    });
  }
}

/** Reads the NAR of `info` from the cache only to check it (see streamVerifiedNar); keeps nothing. */
export async function checkStoredNar(store: ObjectStore, info: NarInfo): Promise<void> {
  await streamVerifiedNar(store, info, new Writable({ write: (_c, _e, done) => done() }));
}
