// The byte level of NAR parsing: u64 lengths, padded strings and zero-copy contents over
// chunked input, with the byte offset and archive path that every error message names.
import { InputError } from "../errors.js";
import { narPadding } from "./nar-write.js";

/** A NAR as chunks: a stream, a generator, or simply `[buffer]`. */
export type NarSource = AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

export const EMPTY = Buffer.alloc(0);

export class NarReader {
  /** Bytes consumed so far: the offset reported in errors. */
  offset = 0;
  /** The archive path errors name; undefined once the root node is complete. */
  where: string | undefined = undefined;
  private buf: Buffer = EMPTY;
  private pos = 0;
  private readonly it: AsyncIterator<Uint8Array>;
  /** Whether the source has ended or been let go of. */
  private done = false;

  constructor(source: NarSource) {
    this.it = Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : fromSync(source);
  }

  fail(at: number, message: string): never {
    const place =
      this.where === undefined
        ? ""
        : this.where === ""
          ? " (in the root node)"
          : ` (in '${this.where}')`;
    throw new InputError("bad-nar", `${message} at byte ${at}${place}`);
  }

  /** Reads str(); `tooLong` rejects a length over `max` before anything is allocated. */
  async readString(max: number, tooLong: (len: string) => never): Promise<Buffer> {
    const len = await this.readLength(max, tooLong);
    const s = await this.read(len);
    await this.checkPadding(len);
    return s;
  }

  /** Reads a u64 length; lengths past 2^53 cannot be numbers, so they count as too long. */
  async readLength(max: number, tooLong: (len: string) => never): Promise<number> {
    const b = await this.read(8);
    const hi = b.readUInt32LE(4);
    if (hi >= 0x20_0000) tooLong(`0x${b.readBigUInt64LE().toString(16)}`);
    const len = hi * 0x1_0000_0000 + b.readUInt32LE(0);
    if (len > max) tooLong(String(len));
    return len;
  }

  async checkPadding(len: number): Promise<void> {
    const n = narPadding(len);
    if (n === 0) return;
    const at = this.offset;
    const pad = await this.read(n);
    for (const byte of pad) if (byte !== 0) this.fail(at, "non-zero padding");
  }

  /** Reads n bytes of a token (never file contents), copying only if they straddle chunks. */
  private async read(n: number): Promise<Buffer> {
    if (this.buf.length - this.pos >= n) {
      const out = this.buf.subarray(this.pos, this.pos + n);
      this.pos += n;
      this.offset += n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      if (this.pos === this.buf.length) await this.pull();
      const take = Math.min(n - filled, this.buf.length - this.pos);
      this.buf.copy(out, filled, this.pos, this.pos + take);
      this.pos += take;
      this.offset += take;
      filled += take;
    }
    return out;
  }

  /** The next up to `max` bytes, as a view into the current source chunk (no copy). */
  async readChunk(max: number): Promise<Buffer> {
    if (this.pos === this.buf.length) await this.pull();
    const take = Math.min(max, this.buf.length - this.pos);
    const chunk = this.buf.subarray(this.pos, this.pos + take);
    this.pos += take;
    this.offset += take;
    return chunk;
  }

  private async pull(): Promise<void> {
    for (;;) {
      const r = await this.it.next();
      if (r.done) {
        this.done = true;
        this.fail(this.offset, "unexpected end of NAR");
      }
      if (r.value.length === 0) continue;
      this.buf = Buffer.from(r.value.buffer, r.value.byteOffset, r.value.length);
      this.pos = 0;
      return;
    }
  }

  async expectEnd(): Promise<void> {
    if (this.pos < this.buf.length) this.fail(this.offset, "trailing data after the root node");
    for (;;) {
      const r = await this.it.next();
      if (r.done) {
        this.done = true;
        return;
      }
      if (r.value.length > 0) this.fail(this.offset, "trailing data after the root node");
    }
  }

  /** Lets go of the source early, as a `for await` loop that breaks would. */
  async close(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.it.return?.();
  }
}

async function* fromSync(source: Iterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  yield* source;
}
