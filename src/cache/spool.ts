// Holds one compressed NAR until its hash (and so its object key) is known: in memory while
// small, in a temporary file once it grows, so memory stays bounded whatever the NAR's size.
import { createReadStream, createWriteStream, type WriteStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { Writable } from "node:stream";
import { finished } from "node:stream/promises";
import { writeDrained } from "../util/drained.js";

const spoolFileClosed = (): Error => new Error("the spool's temporary file closed early");

export class Spool extends Writable {
  private chunks: Buffer[] = [];
  private inMemory = 0;
  private file: { dir: string; path: string; stream: WriteStream } | undefined;

  constructor(private readonly memoryLimit: number) {
    super();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    if (!this.file && this.inMemory + chunk.length <= this.memoryLimit) {
      this.chunks.push(chunk);
      this.inMemory += chunk.length;
      done();
      return;
    }
    this.toFile()
      .then((stream) => writeDrained(stream, chunk, spoolFileClosed))
      .then(() => done(), done);
  }

  override _final(done: (err?: Error | null) => void): void {
    if (!this.file) {
      done();
      return;
    }
    this.file.stream.end();
    finished(this.file.stream).then(() => done(), done);
  }

  private async toFile(): Promise<WriteStream> {
    if (this.file) return this.file.stream;
    const dir = await mkdtemp(join(tmpdir(), "nixship-spool-"));
    const path = join(dir, "nar");
    const stream = createWriteStream(path);
    // A write that fails (the disk full) fails the spool, whenever it comes: never an
    // unhandled 'error' event.
    stream.on("error", (err) => this.destroy(err));
    for (const c of this.chunks) stream.write(c);
    this.chunks = [];
    this.inMemory = 0;
    this.file = { dir, path, stream };
    return stream;
  }

  /** The spooled bytes: a Buffer when small, otherwise a stream over the temporary file. */
  contents(): Buffer | Readable {
    return this.file
      ? createReadStream(this.file.path, { highWaterMark: 1 << 20 })
      : Buffer.concat(this.chunks);
  }

  async dispose(): Promise<void> {
    this.chunks = [];
    if (this.file) {
      this.file.stream.destroy();
      await rm(this.file.dir, { recursive: true, force: true });
      this.file = undefined;
    }
  }
}
