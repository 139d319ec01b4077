// Deltas between store paths: what a delta is called and what it holds, the one
// contract the deployer (which computes and publishes them) and the host (activate.sh's delta
// step, which finds and applies them) share. Pure. docs/architecture.md, "Deltas", tells the design.
//
// A delta is itself a store path, input-addressed by the pair it joins: its hash part is
// derived from the target's and the base's base names, so a host that lacks the target and has
// the base can name the delta without an index, and fetch it through its own Nix from the same
// substituters as any path, its narinfo signed by the cache's key. Its name carries the
// target's hash part, so the collector can tell whose delta it is without reading it.
import { InputError } from "../errors.js";
import { Sha256 } from "../nix/hash.js";
import type { NarInfo } from "../nix/narinfo.js";
import { NIX32_ALPHABET, nix32Encode } from "../nix/nix32.js";
import {
  HASH_PART_LENGTH,
  parseStorePath,
  STORE_DIR,
  type StorePath,
  storePathOf,
} from "../nix/store-path.js";
import { DELTA_INFO_LIMIT } from "./delta-caps.js";

/** The version of this contract, in the seed of every delta's hash. */
export const DELTA_FORMAT = "nixship-delta-v1";

/** A delta's store name: this, then the target's hash part. */
export const DELTA_NAME_PREFIX = "nixship-delta-";

/** The files of a delta's store path (a directory). */
export const DELTA_FILES = {
  /** Key: value lines (formatDeltaInfo): the engine, the base and the target. */
  info: "delta-info",
  /**
   * The target's narinfo: its signed fields (StorePath, NarHash, NarSize, References) and the
   * signatures a trusted key made (deltaNarInfoText), nothing of the cache's text that no
   * signature covers.
   */
  narinfo: "narinfo",
  /** The target's NAR, compressed by `zstd --patch-from=<the base's NAR> --long=31`. */
  delta: "delta.zst",
} as const;

/** The one engine so far: zstd's patch mode (`--patch-from`), the zstd CLI on both sides. */
export type DeltaEngine = "zstd-patch";

/**
 * A delta is published only when it is at most this share of the target's compressed NAR
 * (the narinfo's FileSize): below that it is not clearly worth the host's work of dumping the
 * base and rebuilding the NAR.
 */
export const DELTA_WORTH_RATIO = 0.5;

/**
 * The hash part of the delta from `base` to `target`: the first 32 characters of the nix32
 * form of sha256("nixship-delta-v1:<target's base name>:<base's base name>"). A host computes
 * it with `nix-hash --type sha256 --to-base32 <hex> | cut -c1-32` (both Nix 2.8 and 2.26).
 */
export function deltaHashPart(target: StorePath, base: StorePath): string {
  const seed = `${DELTA_FORMAT}:${baseNameOf(target)}:${baseNameOf(base)}`;
  return nix32Encode(Sha256.of(seed).bytes).slice(0, HASH_PART_LENGTH);
}

/** The store path of the delta from `base` to `target`. */
export function deltaPathOf(target: StorePath, base: StorePath): StorePath {
  if (target === base) {
    throw new InputError("bad-delta", `a delta joins two different paths, not ${target} to itself`);
  }
  const name = `${DELTA_NAME_PREFIX}${parseStorePath(target).hashPart}`;
  return `${STORE_DIR}/${deltaHashPart(target, base)}-${name}` as StorePath;
}

const HASH_PART = new RegExp(`^[${NIX32_ALPHABET}]{${HASH_PART_LENGTH}}$`);

/** The target's hash part, when `path` is a delta's store path (by its name); else undefined. */
export function deltaTargetHashPart(path: string): string | undefined {
  const storePath = storePathOf(path);
  if (storePath === undefined) return undefined;
  const { name } = parseStorePath(storePath);
  if (!name.startsWith(DELTA_NAME_PREFIX)) return undefined;
  const hashPart = name.slice(DELTA_NAME_PREFIX.length);
  return HASH_PART.test(hashPart) ? hashPart : undefined;
}

/** Where a delta's NAR lives in the cache: a folder of its own (its narinfo's URL says so). */
export function deltaNarKey(narHash: Sha256): string {
  return `delta/${narHash.nix32}.nar`;
}

/**
 * Where the deployer notes that a pair was computed and not worth publishing (a small JSON
 * document), so that no one computes it again; collected with its target.
 */
export function deltaSkipKey(target: StorePath, base: StorePath): string {
  return `delta/skip/${parseStorePath(target).hashPart}-${parseStorePath(base).hashPart}.json`;
}

/** What `delta-info` says. */
export interface DeltaInfo {
  readonly engine: DeltaEngine;
  readonly target: StorePath;
  readonly base: StorePath;
  /** The base's NAR hash and size: the host's copy must dump to exactly this. */
  readonly baseNarHash: Sha256;
  readonly baseNarSize: number;
}

export function formatDeltaInfo(info: DeltaInfo): string {
  return [
    `Engine: ${info.engine}`,
    `Target: ${info.target}`,
    `Base: ${info.base}`,
    `BaseNarHash: ${info.baseNarHash.toString()}`,
    `BaseNarSize: ${info.baseNarSize}`,
    "",
  ].join("\n");
}

/** Parses `delta-info`, strictly: every field once, nothing else. */
export function parseDeltaInfo(text: string, where = DELTA_FILES.info): DeltaInfo {
  if (text.length > DELTA_INFO_LIMIT) {
    throw new InputError("bad-delta", `${where}: longer than ${DELTA_INFO_LIMIT} bytes`);
  }
  const fields = new Map<string, string>();
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const colon = line.indexOf(": ");
    const key = colon > 0 ? line.slice(0, colon) : "";
    if (key === "" || fields.has(key)) {
      throw new InputError("bad-delta", `${where}: bad or repeated line '${line.slice(0, 80)}'`);
    }
    fields.set(key, line.slice(colon + 2));
  }
  const field = (key: string): string => {
    const value = fields.get(key);
    if (value === undefined) throw new InputError("bad-delta", `${where}: no ${key}`);
    return value;
  };
  const engine = field("Engine");
  if (engine !== "zstd-patch") {
    throw new InputError("bad-delta", `${where}: unknown engine '${engine.slice(0, 40)}'`);
  }
  const size = field("BaseNarSize");
  if (!/^[0-9]{1,15}$/.test(size)) throw new InputError("bad-delta", `${where}: bad BaseNarSize`);
  const info: DeltaInfo = {
    engine,
    target: parseStorePath(field("Target"), `${where}: Target`).path,
    base: parseStorePath(field("Base"), `${where}: Base`).path,
    baseNarHash: Sha256.parse(field("BaseNarHash")),
    baseNarSize: Number(size),
  };
  if (fields.size !== 5) throw new InputError("bad-delta", `${where}: unknown fields`);
  return info;
}

function baseNameOf(path: StorePath): string {
  return parseStorePath(path).baseName;
}

/**
 * The narinfo a delta holds of its target: the fields its signatures cover and the signatures
 * of `trustedSigs` (those a trusted key made), in Nix's order. Nothing else of the cache's
 * narinfo: a field no signature covers (Deriver, CA, an unknown key) could be anything the
 * cache's writer put there, and a delta is signed for good.
 */
export function deltaNarInfoText(
  info: Pick<NarInfo, "storePath" | "narHash" | "narSize" | "references">,
  trustedSigs: readonly string[],
): string {
  return [
    `StorePath: ${info.storePath}`,
    `NarHash: ${info.narHash.format("nix32")}`,
    `NarSize: ${info.narSize}`,
    `References: ${info.references.map(baseNameOf).join(" ")}`,
    ...trustedSigs.map((sig) => `Sig: ${sig}`),
    "",
  ].join("\n");
}
