// Serialises a file system tree as a NAR, byte for byte what `nix-store --dump PATH` writes.
// Tokens are coalesced into ~256 KiB chunks and file contents are read straight into them.
import {
  closeSync,
  constants,
  type Dirent,
  fstatSync,
  lstatSync,
  openSync,
  readdirSync,
  readlinkSync,
  readSync,
  type Stats,
} from "node:fs";
import { Readable } from "node:stream";
import { InputError } from "../errors.js";
import { NAR_MAGIC, narPadding, narString, narTokens } from "./nar-write.js";

const CHUNK = 256 * 1024;
/** Chunk size while streaming a large file: fewer read(2) calls, same bounded memory. */
const BIG_CHUNK = 1024 * 1024;

const HEADER = narTokens(NAR_MAGIC);
const OPEN_TYPE = narTokens("(", "type");
const REGULAR = narTokens("regular");
const EXECUTABLE = narTokens("executable", "");
const CONTENTS = narTokens("contents");
const SYMLINK_TARGET = narTokens("symlink", "target");
const DIRECTORY = narTokens("directory");
const ENTRY_NAME = narTokens("entry", "(", "name");
const NODE = narTokens("node");
const CLOSE = narTokens(")");
const SLASH = Buffer.from("/");
const ZEROS = Buffer.alloc(8);

/**
 * The NAR of `path` (not following a symlink at `path` itself), in chunks that the caller
 * may keep. The file system is read with synchronous calls: from the page cache they cost a
 * few microseconds each, while a thread-pool round trip per file would dominate a tree of
 * 50k small files. The event loop is held for at most one chunk's worth of work at a time.
 */
export async function* dumpPath(path: string): AsyncIterable<Buffer> {
  yield* dumpChunks(path);
}

/** `dumpPath` as a byte stream, for piping into hashers, compressors and uploads. */
export function dumpPathStream(path: string): Readable {
  const chunks = dumpChunks(path);
  // Not Readable.from: it calls a synchronous iterator's next() where a throw (a path that is
  // gone, a fifo in the tree) escapes every pipeline as an uncaught exception.
  return new Readable({
    read() {
      try {
        const next = chunks.next();
        this.push(next.done ? null : next.value);
      } catch (err) {
        this.destroy(err as Error);
      }
    },
  });
}

export interface DumpOptions {
  /** Every chunk but the last is exactly this long (for callers that compress chunks as frames). */
  readonly chunkSize?: number;
  /**
   * Recycle chunk buffers: a chunk is valid only until the next one is asked for. Saves a
   * fresh allocation per chunk for callers that consume each chunk at once.
   */
  readonly reuse?: boolean;
}

/**
 * The NAR of `path` as a synchronous sequence of chunks. With `chunkSize`, every chunk but the
 * last is exactly that long; otherwise chunks are sized for streaming. Unless `reuse` is set,
 * chunks are fresh buffers the caller may keep.
 */
export function* dumpChunks(path: string, options: DumpOptions = {}): Generator<Buffer> {
  const out = new ChunkWriter(options.chunkSize, options.reuse ?? false);
  out.put(HEADER);
  const root = Buffer.from(path);
  yield* dumpNode(root, kindOf(lstatSync(root)), out);
  yield* out.finish();
}

type Kind = "regular" | "directory" | "symlink" | "other";

/**
 * `kind` comes from readdir's d_type, so the common cases need no lstat: a path lookup is
 * the costliest part of dumping a small file. The file's own fstat is the authority.
 */
function* dumpNode(path: Buffer, kind: Kind, out: ChunkWriter): Generator<Buffer> {
  out.put(OPEN_TYPE);
  if (kind === "regular") {
    yield* dumpRegular(path, out);
  } else if (kind === "directory") {
    out.put(DIRECTORY);
    const entries = readdirSync(path, { encoding: "buffer", withFileTypes: true });
    entries.sort((a, b) => Buffer.compare(a.name, b.name));
    for (const entry of entries) {
      out.put(ENTRY_NAME);
      out.put(narString(entry.name));
      out.put(NODE);
      yield* dumpNode(Buffer.concat([path, SLASH, entry.name]), kindOf(entry), out);
      out.put(CLOSE);
    }
  } else if (kind === "symlink") {
    out.put(SYMLINK_TARGET);
    out.put(narString(readlinkSync(path, { encoding: "buffer" })));
  } else {
    throw new InputError(
      "unsupported-file-type",
      `cannot put '${path.toString()}' in a NAR: it is a ${describe(lstatSync(path))}, not a regular file, directory or symlink`,
    );
  }
  out.put(CLOSE);
  yield* out.drain();
}

/** Writes a regular file's node body, reading the file directly into the output chunks. */
function* dumpRegular(path: Buffer, out: ChunkWriter): Generator<Buffer> {
  // O_NOFOLLOW and O_NONBLOCK: should the entry have been swapped for a symlink or a fifo
  // since readdir, open(2) must neither follow it nor hang.
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw changed(path, "it is no longer a regular file");
    out.put(REGULAR);
    // Nix looks at the owner's execute bit only (S_IXUSR).
    if (st.mode & constants.S_IXUSR) out.put(EXECUTABLE);
    out.put(CONTENTS);
    // Like Nix, exactly the size stat gave is read.
    const size = st.size;
    out.putU64(size);
    let left = size;
    while (left > 0) {
      if (out.pos === out.buf.length) {
        out.rotate(out.fixedSize ?? (left >= BIG_CHUNK ? BIG_CHUNK : CHUNK));
        yield* out.drain();
      }
      const n = readSync(fd, out.buf, out.pos, Math.min(left, out.buf.length - out.pos), null);
      if (n === 0) throw changed(path, `it shrank below the ${size} bytes fstat gave`);
      out.pos += n;
      left -= n;
    }
    out.put(ZEROS.subarray(0, narPadding(size)));
  } finally {
    closeSync(fd);
  }
}

function changed(path: Buffer, what: string): InputError {
  return new InputError("file-changed", `'${path.toString()}' changed while being dumped: ${what}`);
}

/**
 * Chunk buffers handed back by dumps with `reuse`, kept for the next dump on this thread (each
 * worker thread has its own). A fresh multi-megabyte buffer per store path costs the kernel a
 * page fault and a zeroed page per 4 KiB: bench:push's profile measured serialising at about
 * 2 CPU-s per GB that way and about 1 with the buffers kept. At most MAX_SPARES are kept.
 */
const SPARES: Buffer[] = [];
const MAX_SPARES = 4;

function takeSpare(size: number): Buffer | undefined {
  const i = SPARES.findIndex((b) => b.length === size);
  return i < 0 ? undefined : SPARES.splice(i, 1)[0];
}

function giveBack(buffer: Buffer): void {
  if (SPARES.length < MAX_SPARES) SPARES.push(buffer);
}

/**
 * Packs tokens into buffers. A chunk handed out is never written to again, unless `reuse` is
 * set: then its buffer is recycled once the consumer asks for the next chunk.
 */
class ChunkWriter {
  buf: Buffer;
  pos = 0;
  private ready: Buffer[] = [];

  constructor(
    readonly fixedSize: number | undefined,
    private readonly reuse: boolean,
  ) {
    this.buf = this.fresh(fixedSize ?? CHUNK);
  }

  put(bytes: Uint8Array): void {
    let from = 0;
    while (from < bytes.length) {
      if (this.pos === this.buf.length) this.rotate(this.fixedSize ?? CHUNK);
      const n = Math.min(bytes.length - from, this.buf.length - this.pos);
      this.buf.set(
        from === 0 && n === bytes.length ? bytes : bytes.subarray(from, from + n),
        this.pos,
      );
      this.pos += n;
      from += n;
    }
  }

  putU64(n: number): void {
    const b = Buffer.allocUnsafe(8);
    b.writeUInt32LE(n % 0x1_0000_0000, 0);
    b.writeUInt32LE(Math.floor(n / 0x1_0000_0000), 4);
    this.put(b);
  }

  /** Sets the full buffer aside for the next `drain` and starts a new one of `size` bytes. */
  rotate(size: number): void {
    this.ready.push(this.buf);
    this.buf = this.fresh(size);
    this.pos = 0;
  }

  *drain(): Generator<Buffer> {
    if (this.ready.length === 0) return;
    const ready = this.ready;
    this.ready = [];
    for (const chunk of ready) {
      yield chunk;
      // The consumer is back for more, so it is done with `chunk`.
      if (this.reuse) giveBack(chunk);
    }
  }

  *finish(): Generator<Buffer> {
    yield* this.drain();
    if (this.pos > 0) yield this.buf.subarray(0, this.pos);
    if (this.reuse) giveBack(this.buf);
  }

  private fresh(size: number): Buffer {
    return (this.reuse ? takeSpare(size) : undefined) ?? Buffer.allocUnsafe(size);
  }
}

function kindOf(st: Stats | Dirent<Buffer>): Kind {
  if (st.isFile()) return "regular";
  if (st.isDirectory()) return "directory";
  if (st.isSymbolicLink()) return "symlink";
  return "other";
}

function describe(st: Stats): string {
  if (st.isFIFO()) return "fifo";
  if (st.isSocket()) return "socket";
  if (st.isCharacterDevice()) return "character device";
  if (st.isBlockDevice()) return "block device";
  return "special file";
}
