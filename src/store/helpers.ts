// Small conveniences over any ObjectStore: iterate every page of a listing, read a whole object.
import type { ObjectInfo, ObjectStore } from "./object-store.js";

/** Every object under the prefix, in byte order of key, fetching pages as the caller goes. */
export async function* listAll(store: ObjectStore, prefix: string): AsyncGenerator<ObjectInfo> {
  let token: string | undefined;
  do {
    const page = await store.list(prefix, token === undefined ? {} : { token });
    yield* page.objects;
    token = page.nextToken;
  } while (token !== undefined);
}

/** The whole object in memory, or undefined when absent. For small objects (narinfo, JSON). */
export async function readAll(store: ObjectStore, key: string): Promise<Buffer | undefined> {
  const found = await store.get(key);
  return found === undefined ? undefined : readBody(found.body);
}

/** A body stream (of a small object) in memory. */
export async function readBody(body: AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) {
    chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Buffer));
  }
  return Buffer.concat(chunks);
}
