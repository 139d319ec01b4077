// Small conveniences over any ObjectStore: iterate every page of a listing, read a whole object.
import { InputError, OperationError } from "../errors.js";
import { readDeadlineMs } from "../util/deadline.js";
import { mapLimit } from "../util/pool.js";
import {
  DELETE_BATCH,
  type DeleteManyResult,
  type GetResult,
  type ObjectInfo,
  type ObjectStore,
} from "./object-store.js";

/** Every object under the prefix, in byte order of key, fetching pages as the caller goes. */
export async function* listAll(store: ObjectStore, prefix: string): AsyncGenerator<ObjectInfo> {
  let token: string | undefined;
  do {
    const page = await store.list(prefix, token === undefined ? {} : { token });
    yield* page.objects;
    token = page.nextToken;
  } while (token !== undefined);
}

/**
 * The most a small object (a narinfo, a release, a channel, a status record) may hold when its
 * reader names no bound of its own: far above real ones (a release for 100,000 hosts is about
 * 10 MB), and far below what would hurt the reader.
 */
export const SMALL_OBJECT_LIMIT = 32 * 1024 * 1024;

/**
 * The whole object in memory, or undefined when absent. For small objects only: one larger
 * than `limit` bytes is refused as soon as that shows (its size, or the bytes read so far).
 */
export async function readAll(
  store: ObjectStore,
  key: string,
  limit = SMALL_OBJECT_LIMIT,
): Promise<Buffer | undefined> {
  const found = await store.get(key);
  return found === undefined ? undefined : readGot(found, key, limit);
}

/** An object already got (`store.get`) in memory, refused past `limit` bytes. */
export async function readGot(
  found: Pick<GetResult, "info" | "body">,
  key: string,
  limit = SMALL_OBJECT_LIMIT,
): Promise<Buffer> {
  if (found.info.size > limit) {
    destroyBody(found.body);
    throw tooLarge(key, limit, found.info.size);
  }
  return readBody(found.body, key, limit);
}

/** A body stream (of a small object) in memory, refused past `limit` bytes. */
export async function readBody(
  body: AsyncIterable<unknown>,
  key: string,
  limit = SMALL_OBJECT_LIMIT,
  deadlineMs = readDeadlineMs(limit),
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  let late = false;
  // A store that sends a byte now and then, each within its connection's idle timeout, would
  // hold the reader (an agent's poll) for ever: the whole read has a deadline.
  const timer = setTimeout(() => {
    late = true;
    destroyBody(body);
  }, deadlineMs);
  try {
    for await (const chunk of body) {
      const bytes = typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Buffer);
      total += bytes.length;
      if (total > limit) {
        destroyBody(body);
        throw tooLarge(key, limit, undefined);
      }
      chunks.push(bytes);
    }
  } catch (err) {
    if (!late) throw err;
  } finally {
    clearTimeout(timer);
  }
  if (late) {
    throw new OperationError(
      "store-read-timeout",
      `${key}: ${total} bytes read in ${Math.round(deadlineMs / 1000)} s, and the store had not sent all of it: stopped`,
      { hint: "the store (or a proxy on the way) answers too slowly; try again, or check it" },
    );
  }
  return Buffer.concat(chunks);
}

function destroyBody(body: AsyncIterable<unknown>): void {
  const destroy = (body as { destroy?: () => void }).destroy;
  if (typeof destroy === "function") destroy.call(body);
}

function tooLarge(key: string, limit: number, size: number | undefined): InputError {
  return new InputError(
    "object-too-large",
    `${key} is ${size === undefined ? "larger than" : `${size} bytes, over`} ${limit} bytes, the most nixship reads of such an object`,
    { hint: "the store holds something other than what nixship wrote there" },
  );
}

/** Keys deleted at once, one request each, by a store without a batch delete. */
const DELETE_CONCURRENCY = 16;

/**
 * Deletes up to DELETE_BATCH keys: one request where the store has a batch delete (S3), else
 * one delete per key, 16 at once. A key that could not be deleted is returned with why; a
 * fault of the store itself (unreachable, denied for every key) is thrown.
 */
export async function deleteKeys(
  store: ObjectStore,
  keys: readonly string[],
): Promise<DeleteManyResult & { readonly requests: number }> {
  if (keys.length > DELETE_BATCH) {
    throw new InputError(
      "store-delete-batch",
      `a batch delete takes at most ${DELETE_BATCH} keys, not ${keys.length}`,
    );
  }
  if (store.deleteMany !== undefined) {
    return { ...(await store.deleteMany(keys)), requests: keys.length === 0 ? 0 : 1 };
  }
  const failed: { key: string; message: string }[] = [];
  await mapLimit(keys, DELETE_CONCURRENCY, async (key) => {
    try {
      await store.delete(key);
    } catch (err) {
      failed.push({ key, message: err instanceof Error ? err.message : String(err) });
    }
  });
  return { failed, requests: keys.length };
}
