// A small file, or a stream (stdin), read whole into memory, refused past a size limit: the one
// bounded read of a local file (secrets, their scratch files, host keys, a command's input).
import { constants } from "node:fs";
import { open } from "node:fs/promises";

/**
 * The file's bytes, or undefined when it does not exist. One larger than `limit` bytes is
 * refused with `tooLarge(size)`; a path that is not a regular file throws an Error with code
 * `ENOTFILE`; other failures are Node's own (with their `code`).
 */
export async function readFileBounded(
  file: string,
  limit: number,
  tooLarge: (size: number) => Error,
): Promise<Buffer | undefined> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    // Non-blocking: a named pipe with no writer would hold open() for ever; it is refused
    // below as not a regular file (a regular file reads as it always does).
    handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) {
      throw Object.assign(new Error(`${file} is not a regular file`), { code: "ENOTFILE" });
    }
    if (info.size > limit) throw tooLarge(info.size);
    // Read to the end (a file may grow while it is read: never past the limit), into a buffer
    // of the file's size that grows only for a file that does.
    let buffer = Buffer.alloc(Math.min(limit, info.size) + 1);
    let length = 0;
    for (;;) {
      if (length === buffer.length) {
        const grown = Buffer.alloc(Math.min(limit + 1, buffer.length * 2));
        buffer.copy(grown);
        buffer = grown;
      }
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > limit) throw tooLarge(length);
    }
    return buffer.subarray(0, length);
  } finally {
    await handle.close();
  }
}

/**
 * A stream's bytes to its end; past `limit` bytes, refused with `tooLarge(read)` (what was
 * read so far is let go, and the rest is not read).
 */
export async function readStreamBounded(
  stream: NodeJS.ReadableStream,
  limit: number,
  tooLarge: (read: number) => Error,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream as AsyncIterable<Buffer | string>) {
    const bytes = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    size += bytes.length;
    if (size > limit) throw tooLarge(size);
    chunks.push(bytes);
  }
  return Buffer.concat(chunks);
}
