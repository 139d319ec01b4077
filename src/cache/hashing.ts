// A pass-through stream that hashes (sha256) and counts the bytes flowing through it.
import { createHash } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";
import { Sha256 } from "../nix/hash.js";

export class HashingStream extends Transform {
  private readonly hash = createHash("sha256");
  private count = 0;

  /** `onBytes` hears the running byte count, for progress reports. */
  constructor(private readonly onBytes?: (delta: number) => void) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.hash.update(chunk);
    this.count += chunk.length;
    this.onBytes?.(chunk.length);
    done(null, chunk);
  }

  private result: { hash: Sha256; size: number } | undefined;

  /** Valid once the stream has ended; may be called more than once. */
  digest(): { hash: Sha256; size: number } {
    this.result ??= { hash: new Sha256(this.hash.digest()), size: this.count };
    return this.result;
  }
}
