// The file steps of a directory store: temp files beside their target, whole writes, sealing
// (mtime and fsync) before a rename, the etag from a stat, and its errors named by key and store.
import { randomBytes } from "node:crypto";
import type { BigIntStats } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { open, stat, unlink, utimes } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { Readable } from "node:stream";
import { NixshipError, OperationError } from "../errors.js";
import { makeDirs } from "../util/make-dirs.js";
import type { ObjectInfo } from "./object-store.js";

/**
 * Readies a fully written file to become an object: stamps its mtime and, unless disabled,
 * syncs it to disk. Returns its stat, from which the object's etag comes: rename and link
 * keep the inode and mtime. `file` is an open handle or a path.
 */
export async function sealFile(file: FileHandle | string, sync: boolean): Promise<BigIntStats> {
  // The time is the one the file system gave the write (the store's clock: on a shared
  // directory, its server's), not this process's, which gc-lease.ts does not trust. Sub-
  // millisecond jitter keeps etags distinct when a freed inode number is reused by a
  // same-sized write within one coarse kernel clock tick (the ABA case).
  const written = typeof file !== "string" ? await file.stat() : await stat(file);
  const now = written.mtimeMs;
  const [atime, mtime] = [now / 1000, (now + Math.random()) / 1000];
  if (typeof file !== "string") {
    await file.utimes(atime, mtime);
    if (sync) await file.sync();
    return file.stat({ bigint: true });
  }
  await utimes(file, atime, mtime);
  if (sync) {
    const handle = await open(file, "r");
    await handle.sync().finally(() => handle.close());
  }
  return stat(file, { bigint: true });
}

export function fsFault(url: string, root: string, op: string, key: string, err: unknown): Error {
  if (err instanceof NixshipError) return err;
  const errno = errnoOf(err);
  const hint =
    errno === "ENOTDIR" || errno === "EISDIR" || errno === "EEXIST"
      ? 'a directory store cannot hold both "a" and "a/b"'
      : errno === "EACCES" || errno === "EPERM"
        ? `check the permissions of ${root}`
        : undefined;
  const message = `cannot ${op} "${key}" in ${url}: ${(err as Error)?.message ?? String(err)}`;
  return new OperationError("store-fs-failed", message, {
    cause: err,
    ...(hint ? { hint } : {}),
  });
}

export function tempBeside(path: string): string {
  return join(dirname(path), `.${basename(path)}.nixship-tmp-${randomBytes(6).toString("hex")}`);
}

/** Writes `body` at the handle's position; checks the declared size when there is one. */
export async function writeAll(
  handle: FileHandle,
  key: string,
  body: Readable | Uint8Array,
  size: number | undefined,
): Promise<void> {
  let written = 0;
  const chunks = body instanceof Uint8Array ? [body] : (body as AsyncIterable<Uint8Array>);
  for await (const chunk of chunks) {
    const bytes = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    await handle.writeFile(bytes); // appends at the current position, looping on short writes
    written += bytes.byteLength;
  }
  if (size !== undefined && written !== size) {
    throw new OperationError(
      "store-size-mismatch",
      `put "${key}": size ${size} was declared but the body had ${written} bytes`,
    );
  }
}

/** Removes a file that may already be gone. */
export async function removeQuietly(path: string): Promise<void> {
  await unlink(path).catch(() => undefined);
}

export function toInfo(key: string, st: BigIntStats): ObjectInfo {
  return {
    key,
    size: Number(st.size),
    etag: `${st.ino.toString(16)}-${st.size.toString(16)}-${st.mtimeNs.toString(16)}`,
    lastModified: new Date(Number(st.mtimeNs / 1_000_000n)),
  };
}

export function createTemp(tmp: string): Promise<FileHandle> {
  return inDirectory(tmp, () => open(tmp, "wx"));
}

/**
 * Runs `create`, which makes `path`, creating its directory when it is missing: optimistic,
 * since the directory nearly always exists. A concurrent delete may remove the directory
 * between the mkdir and the retry, so it tries a few times.
 */
export async function inDirectory<T>(path: string, create: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await create();
    } catch (err) {
      if (errnoOf(err) !== "ENOENT" || attempt === 3) throw err;
    }
    await makeDirs(dirname(path));
  }
}

export function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

export const succeeded = () => true;
export const failed = () => false;
