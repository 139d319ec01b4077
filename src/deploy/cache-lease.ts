// The deploy's lease on the fleet's cache: held from before its push until its status records
// are written (they root what it deployed), so that no collection sweeps in between.
import { requireCacheInfo } from "../cache/cache-info.js";
import { CacheLease } from "../cache/gc-lease.js";
import { confirmFoundAfterLapse } from "../cache/lease-lapse.js";
import type { StorePath } from "../nix/store-path.js";
import { openStore } from "../store/url.js";
import type { DeployOptions } from "./deploy-options.js";

export interface HeldCacheLease {
  /**
   * Once the push is done: when the lease lapsed meanwhile, takes it again and checks that the
   * cache still has the paths of `closure` (lease-lapse.ts); throws naming those it lost.
   */
  confirmFound(closure: readonly StorePath[]): Promise<void>;
  release(): Promise<void>;
}

/** The deploy's lease on the fleet's cache (gc-lease.ts), its waits told as events. */
export async function leaseCache(
  url: string,
  options: Pick<DeployOptions, "emit" | "signal">,
): Promise<HeldCacheLease> {
  const store = await openStore(url);
  try {
    // A cache URL with a typo fails here, before a lease is written into it.
    await requireCacheInfo(store);
    const lease = await CacheLease.take(store, "deploy", {
      ...(options.signal ? { signal: options.signal } : {}),
      onEvent: (e) =>
        options.emit(
          e.type === "waiting-for-gc"
            ? {
                type: "gc-wait",
                by: e.holder.by,
                since: e.holder.since,
                until: e.until.toISOString(),
              }
            : { type: "lease-renew-failed", message: e.message },
        ),
    });
    return {
      confirmFound: (closure) => confirmFoundAfterLapse(lease, store, closure, "deploy"),
      release: async () => {
        await lease.release();
        await store.close();
      },
    };
  } catch (err) {
    await store.close();
    throw err;
  }
}
