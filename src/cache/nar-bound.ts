// The served cache holds each NAR to the size its narinfo's signature covers. Nix writes a
// substituted NAR into the store as it reads it and checks NarSize and NarHash only at the end,
// so without this a bucket writer (who cannot sign) could make a host write until its disk is
// full: a NAR swapped for a zstd bomb of a few KiB under a genuine, signed narinfo.
//
// A NAR request does not say which narinfo it came from, so the narinfo says it: the URL the
// server serves carries the signed NarSize and the narinfo's Compression as a query, which Nix
// sends back as it is (from its own narinfo cache too), and each NAR request bounds itself with
// no state kept between the two. The URL, Compression, FileHash and FileSize are not part of
// the signed fingerprint, so rewriting them leaves the signatures good.
//
// What is sent is cut once its content passes NarSize: zstd and uncompressed NARs go as stored,
// each chunk sent only after what it decompresses to was counted (a few bytes of zstd can stand
// for 128 KiB); xz and bzip2, which decompress in a child process that cannot be kept in step,
// go decompressed (the narinfo served says `Compression: none`).
import { InputError, OperationError } from "../errors.js";
import { type Compression, formatNarInfo, NAR_EXTENSION, parseNarInfo } from "../nix/narinfo.js";
import { decompressor } from "./compression.js";
import { byteLimit, storedNarBound } from "./read.js";
import { zstdOutputLimit } from "./zstd-stream.js";

const SIZE_PARAM = "nar-size";
const COMPRESSION_PARAM = "compression";

/** How a NAR request is to be served: the content's bound and the narinfo's Compression. */
export interface NarBound {
  readonly narSize: number;
  readonly compression: Compression;
}

/** Whether a NAR stored with `compression` is sent as stored (else decompressed). */
export function sentAsStored(compression: Compression): boolean {
  return compression === "zstd" || compression === "none";
}

/**
 * The URLs a served narinfo may name: the NAR keys nixship and `nix copy` write (narKey, and a
 * delta's deltaNarKey), nothing else. The URL is not signed: a bucket writer could otherwise
 * name another server (`http://…`), or end it in `#`, which turns the bound appended to it into
 * a fragment a client never sends; either way the NAR would come unbounded.
 */
const SERVED_NAR_URL =
  /^(?:nar\/[0-9a-df-np-sv-z]{52}\.nar(?:\.zst|\.xz|\.bz2)?|delta\/[0-9a-df-np-sv-z]{52}\.nar)$/;

/** An unknown line a served narinfo keeps: a plain key, read by Nix as it is read here. */
const PLAIN_KEY = /^[A-Za-z][A-Za-z0-9-]*$/;

/**
 * The narinfo `text` as served: what was parsed of it, written again (so that a client reads
 * the lines this server read: an unknown line whose key Nix would split elsewhere is dropped),
 * its URL carrying its bound, and an xz or bzip2 NAR said to be uncompressed (what will be
 * sent). A narinfo that does not parse, or whose URL is no NAR key of the cache, cannot be
 * bounded and is refused (InputError), as Nix would refuse most of them.
 */
export function boundNarInfo(text: string, where: string): string {
  const info = parseNarInfo(text, where);
  if (!SERVED_NAR_URL.test(info.url)) {
    throw new InputError(
      "bad-narinfo",
      `${where}: URL '${info.url.slice(0, 120)}' is no NAR key of this cache (nar/HASH.nar[.zst|.xz|.bz2], delta/HASH.nar), so its NAR cannot be held to its signed size`,
    );
  }
  const query = new URLSearchParams({
    [SIZE_PARAM]: String(info.narSize),
    [COMPRESSION_PARAM]: info.compression,
  });
  const asStored = sentAsStored(info.compression);
  const extra = (info.extra ?? []).filter(([key]) => PLAIN_KEY.test(key));
  const { extra: _all, ...fields } = info;
  return formatNarInfo({
    ...fields,
    url: `${info.url}?${query}`,
    ...(asStored ? {} : { compression: "none" as const, fileHash: undefined, fileSize: undefined }),
    ...(extra.length === 0 ? {} : { extra }),
  });
}

/**
 * The bound a NAR request's URL carries, undefined when it carries none (a client that did not
 * read the narinfo from this server). A bound that does not parse is an InputError.
 */
export function narBoundOf(search: URLSearchParams): NarBound | undefined {
  const size = search.get(SIZE_PARAM);
  const compression = search.get(COMPRESSION_PARAM);
  if (size === null && compression === null) return undefined;
  const narSize = Number(size);
  if (size === null || !/^[1-9][0-9]*$/.test(size) || !Number.isSafeInteger(narSize)) {
    throw new InputError("bad-nar-bound", `${SIZE_PARAM} '${size ?? ""}' is not a size`);
  }
  if (compression === null || !Object.hasOwn(NAR_EXTENSION, compression)) {
    throw new InputError(
      "bad-nar-bound",
      `${COMPRESSION_PARAM} '${compression ?? ""}' is not a compression this server knows`,
    );
  }
  return { narSize, compression: compression as Compression };
}

function tooLarge(key: string, narSize: number): OperationError {
  return new OperationError(
    "nar-too-large",
    `${key} decompresses to more than the ${narSize} bytes its signed narinfo says: cut there (a NAR replaced by someone who cannot sign, or a corrupt upload)`,
  );
}

function storedTooLarge(key: string, narSize: number): OperationError {
  return new OperationError(
    "nar-too-large",
    `${key} is stored as more than ${storedNarBound(narSize)} bytes, more than a NAR of ${narSize} bytes compresses to: cut there (padded by someone who cannot sign, or a corrupt upload)`,
  );
}

/**
 * The streams a stored NAR goes through to be sent within `bound` (see sentAsStored): what is
 * read of it is bounded too (storedNarBound), since a compressed stream can carry what
 * decompresses to nothing (zstd's skippable frames) past any bound on its content.
 */
export function boundedNarStreams(key: string, bound: NarBound): NodeJS.ReadWriteStream[] {
  const error = () => tooLarge(key, bound.narSize);
  const stored = () =>
    byteLimit(storedNarBound(bound.narSize), () => storedTooLarge(key, bound.narSize));
  switch (bound.compression) {
    case "zstd":
      return [stored(), zstdOutputLimit(bound.narSize, error)];
    case "none":
      return [byteLimit(bound.narSize, error)];
    default:
      // The child's own output is held by its pipe; the cap downstream ends it.
      return [
        stored(),
        decompressor(bound.compression, bound.narSize),
        byteLimit(bound.narSize, error),
      ];
  }
}
