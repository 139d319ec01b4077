// An ObjectStore standing in for another: every method bound to `inner`, some replaced, so that
// a test can watch or hold one call (a class's private fields forbid a plain object spread).
import type { ObjectStore } from "../../src/store/object-store.js";

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
    ...overrides,
  };
}
