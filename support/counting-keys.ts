// An ObjectStore with the keys its LIST pages return counted: what a reader's listings cost,
// a figure that does not vary with the machine's load (the dashboard's junk test and bench).
import type { ObjectStore } from "../src/store/object-store.js";
import { wrapStore } from "../src/store/wrap-store.js";

/** `inner` with the keys of its LIST pages counted. */
export function countingKeys(inner: ObjectStore): { store: ObjectStore; keys: () => number } {
  let keys = 0;
  const store = wrapStore(inner, {
    list: async (prefix, options) => {
      const page = await inner.list(prefix, options);
      keys += page.objects.length;
      return page;
    },
  });
  return { store, keys: () => keys };
}
