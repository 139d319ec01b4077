// What a serialised NAR is checked against: the digests of the NAR and of the file that holds
// it (compressed or not), and the error raised when the bytes read from the store differ from
// what Nix recorded.
import { OperationError } from "../errors.js";
import type { Sha256 } from "../nix/hash.js";

/** NAR bytes per chunk and per zstd frame: a ratio within ~0.5% of one frame at level 3. */
export const FRAME_SIZE = 4 << 20;

export interface Digest {
  readonly hash: Sha256;
  readonly size: number;
}

export interface NarDigests {
  readonly nar: Digest;
  readonly file: Digest;
}

export class NarMismatchError extends OperationError {
  constructor(path: string, actual: Digest, expected: Digest) {
    super(
      "nar-hash-mismatch",
      `${path}: the NAR read from disk (${actual.hash}, ${actual.size} bytes) differs from what Nix recorded (${expected.hash}, ${expected.size} bytes)`,
      { hint: `the store path may be corrupted; check it with 'nix-store --verify-path ${path}'` },
    );
  }
}

/** Throws NarMismatchError unless `actual` is `expected`. */
export function checkNar(path: string, actual: Digest, expected: Digest): void {
  if (!actual.hash.equals(expected.hash) || actual.size !== expected.size) {
    throw new NarMismatchError(path, actual, expected);
  }
}
