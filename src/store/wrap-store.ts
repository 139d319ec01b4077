// An ObjectStore standing in for another: every method bound to `inner`, some replaced, so that
// a caller (the dashboard's request counts, a test) can watch or hold one call (a class's private fields forbid a plain object spread).
import type { ObjectStore } from "./object-store.js";

export function wrapStore(inner: ObjectStore, overrides: Partial<ObjectStore>): ObjectStore {
  return {
    url: inner.url,
    get: inner.get.bind(inner) as ObjectStore["get"],
    head: inner.head.bind(inner),
    put: inner.put.bind(inner),
    putFile: inner.putFile.bind(inner),
    list: inner.list.bind(inner),
    delete: inner.delete.bind(inner),
    makeStagingDir: inner.makeStagingDir.bind(inner),
    close: inner.close.bind(inner),
    ...(inner.flush ? { flush: inner.flush.bind(inner) } : {}),
    ...(inner.deleteMany ? { deleteMany: inner.deleteMany.bind(inner) } : {}),
    ...(inner.presignGet ? { presignGet: inner.presignGet.bind(inner) } : {}),
    ...(inner.removeLeftovers ? { removeLeftovers: inner.removeLeftovers.bind(inner) } : {}),
    ...(inner.requestStats ? { requestStats: inner.requestStats.bind(inner) } : {}),
    ...overrides,
  };
}

/** Read requests a store was sent through `countReads`, by kind. */
export interface ReadCounts {
  list: number;
  get: number;
  head: number;
}

/** `inner` with its LIST, GET and HEAD calls counted (every call, whatever its answer). */
export function countReads(inner: ObjectStore): { store: ObjectStore; counts: ReadCounts } {
  const counts: ReadCounts = { list: 0, get: 0, head: 0 };
  const store = wrapStore(inner, {
    list: (prefix, options) => {
      counts.list++;
      return inner.list(prefix, options);
    },
    get: ((key: string, options?: Parameters<ObjectStore["get"]>[1]) => {
      counts.get++;
      return inner.get(key, options);
    }) as ObjectStore["get"],
    head: (key) => {
      counts.head++;
      return inner.head(key);
    },
  });
  return { store, counts };
}
