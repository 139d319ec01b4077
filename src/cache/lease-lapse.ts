// What a push or deploy does when its lease on the cache may have lapsed (its renewals failed
// for about ten minutes): a collection may have run meanwhile and deleted paths it had found in
// the cache and skipped. It takes the lease again (waiting for a collection that runs) and looks
// again; a path gone is an error that says to push again, which uploads it anew.
import { OperationError } from "../errors.js";
import type { StorePath } from "../nix/store-path.js";
import type { ObjectStore } from "../store/object-store.js";
import { mapLimit } from "../util/pool.js";
import type { CacheLease } from "./gc-lease.js";
import { narInfoKey } from "./layout.js";

/**
 * After a lapse of `lease`, the paths of `found` (which the holder found in the cache) that
 * the cache still has, checked once the lease holds again; throws naming those it lost.
 * Without a lapse: nothing is read.
 */
export async function confirmFoundAfterLapse(
  lease: Pick<CacheLease, "regain">,
  store: ObjectStore,
  found: readonly StorePath[],
  what: "push" | "deploy",
): Promise<void> {
  if (!(await lease.regain())) return;
  const present = await mapLimit(
    found,
    16,
    async (p) => (await store.head(narInfoKey(p))) !== undefined,
  );
  const gone = found.filter((_, i) => !present[i]);
  if (gone.length === 0) return;
  throw new OperationError(
    "cache-lease-lapsed",
    `${store.url}: this ${what}'s lease on the cache lapsed (its renewals failed for ten minutes) and a garbage collection took ${gone.length} of the paths it had found there, ${gone[0]} first`,
    { hint: `${what} again: its push uploads them anew` },
  );
}
