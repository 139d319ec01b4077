// NARs written byte by byte, for tests that need one no ordinary writer makes: a compression
// bomb, or one too large to build as a tree of nodes.
import { execFileSync } from "node:child_process";

/** A NAR string: its length (64 bits, little-endian), its bytes, zeros to a multiple of 8. */
export function narString(bytes: Buffer): Buffer {
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(bytes.length));
  return Buffer.concat([length, bytes, Buffer.alloc((8 - (bytes.length % 8)) % 8)]);
}

/** NAR strings of the words given, one after the other. */
export function narTokens(...words: string[]): Buffer {
  return Buffer.concat(words.map((w) => narString(Buffer.from(w))));
}

/** A well-formed NAR of one regular file of `size` zero bytes, zstd-compressed: a few KiB. */
export function zstdBombNar(size: number): Buffer {
  const head = narTokens("nix-archive-1", "(", "type", "regular", "contents");
  const nar = Buffer.concat([head, narString(Buffer.alloc(size)), narTokens(")")]);
  return execFileSync("zstd", ["-q", "-c", "-1"], { input: nar, maxBuffer: 64 * 1024 * 1024 });
}
