// The survey's word on the hosts that run their desired system, completed from the fleet's
// records: one whose last deploy failed on that system and did not take it back (a bake failed,
// and its rollback never reached the host, which keeps no failed marker of its own) is failed
// there, as every view says (status/failed-on-it.ts), and the plan activates it again rather
// than calling it up to date. Only a host the newest rollout to name it failed on that system
// has its record read; a store that cannot be read leaves the survey as it was.
import { NixshipError } from "../errors.js";
import type { FleetHost } from "../fleet/fleet.js";
import type { StorePath } from "../nix/store-path.js";
import { failedOnIt } from "../status/failed-on-it.js";
import { readLastAsks } from "../status/rollout-store.js";
import { readStatus } from "../status/status-store.js";
import { openStore } from "../store/url.js";
import { mapLimit } from "../util/pool.js";
import type { Survey } from "./survey.js";

/** Status records read at once. */
const RECORD_READS = 16;

export async function withRecordedFailures(
  cacheUrl: string | undefined,
  hosts: readonly FleetHost[],
  desiredOf: (host: string) => StorePath | undefined,
  found: Survey,
): Promise<Survey> {
  // The hosts the plan would call up to date: reachable, on their desired system, no failure.
  const candidates = hosts.flatMap((h, i) => {
    const state = found.states[i];
    const running =
      state?.kind === "reported" && state.failed === undefined ? state.current : undefined;
    return running !== undefined && running === desiredOf(h.name)
      ? [{ host: h.name, index: i, running }]
      : [];
  });
  if (cacheUrl === undefined || candidates.length === 0) return found;
  const failed = new Map<number, string>();
  try {
    const store = await openStore(cacheUrl);
    try {
      const { asks } = await readLastAsks(
        store,
        candidates.map((c) => c.host),
      );
      const told = candidates.filter((c) => {
        const ask = asks.get(c.host);
        return ask?.entry.state === "failed" && ask.system === c.running;
      });
      await mapLimit(told, RECORD_READS, async (c) => {
        const record = await readStatus(store, c.host);
        const failure = record === undefined ? undefined : failedOnIt(record, c.running);
        if (failure !== undefined) failed.set(c.index, failure.reason);
      });
    } finally {
      await store.close();
    }
  } catch (err) {
    if (err instanceof NixshipError) return found;
    throw err;
  }
  if (failed.size === 0) return found;
  return {
    ...found,
    states: found.states.map((state, i) => {
      const why = failed.get(i);
      return why === undefined || state.kind !== "reported" ? state : { ...state, failed: why };
    }),
  };
}
