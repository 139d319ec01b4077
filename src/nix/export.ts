// The `nix-store --export` framing that `nix-store --import` reads: per path, a NAR followed by
// its metadata; dependencies first. Integers are u64 little-endian, strings use NAR framing.
import { narString } from "./nar-write.js";
import type { StorePath } from "./store-path.js";

const EXPORT_MAGIC = 0x4558494en;

function u64(n: number | bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
}

/** Written before each path's NAR. */
export function exportPathStart(): Buffer {
  return u64(1);
}

/** Written after each path's NAR. `deriver` is a full store path or undefined. */
export function exportPathEnd(
  path: StorePath,
  references: readonly StorePath[],
  deriver?: string,
): Buffer {
  return Buffer.concat([
    u64(EXPORT_MAGIC),
    narString(path),
    u64(references.length),
    ...references.map((r) => narString(r)),
    narString(deriver ?? ""),
    u64(0),
  ]);
}

/** Written once after the last path. */
export function exportEnd(): Buffer {
  return u64(0);
}
