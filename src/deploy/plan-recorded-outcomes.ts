// The survey's word on the hosts that run their desired system, completed from the fleet's
// records, so that the plan does not call up to date a host whose system nobody judged:
// - one whose last deploy failed on that system and did not take it back (a bake failed, and
//   its rollback never reached the host, which keeps no failed marker of its own) is failed
//   there, as every view says (status/failed-on-it.ts);
// - one whose system came from a rollout that never finished baking it (interrupted, or its
//   deployer killed or lost mid-bake) is unbaked.
// The plan activates both again (and bakes the second). Only the newest rollout to name each
// host is read, and a host's record only where that rollout failed it on its system; a store
// that cannot be read leaves the survey as it was.
import { NixshipError } from "../errors.js";
import type { FleetHost } from "../fleet/fleet.js";
import type { HostState, UnfinishedBake } from "../fleet/plan.js";
import type { StorePath } from "../nix/store-path.js";
import { failedOnIt } from "../status/failed-on-it.js";
import type { Ask } from "../status/fleet-asks.js";
import { unfinishedBake } from "../status/unfinished-bake.js";
import { mapLimit } from "../util/pool.js";
import type { PlanRecords } from "./plan-records.js";
import type { Survey } from "./survey.js";

/** Status records read at once. */
const RECORD_READS = 16;

type Reported = Extract<HostState, { kind: "reported" }>;

export async function withRecordedOutcomes(
  records: PlanRecords | undefined,
  hosts: readonly FleetHost[],
  desiredOf: (host: string) => StorePath | undefined,
  found: Survey,
): Promise<Survey> {
  // The hosts the plan would call up to date: reachable, on their desired system, no failure.
  const candidates = hosts.flatMap((h, i) => {
    const state = found.states[i];
    const running =
      state?.kind === "reported" && state.failed === undefined ? state.current : undefined;
    return state?.kind === "reported" && running !== undefined && running === desiredOf(h.name)
      ? [{ host: h.name, index: i, running, state }]
      : [];
  });
  if (records === undefined || candidates.length === 0) return found;
  const { asks } = records;
  const failed = new Map<number, string>();
  const unbaked = new Map<number, UnfinishedBake>();
  try {
    const told = candidates.filter((c) => {
      const ask = asks.get(c.host);
      const state = ask?.entry.state;
      return (state === "failed" || state === "rolled-back") && ask?.system === c.running;
    });
    await mapLimit(told, RECORD_READS, async (c) => {
      const record = await records.status(c.host);
      const failure = record === undefined ? undefined : failedOnIt(record, c.running);
      if (failure !== undefined) failed.set(c.index, failure.reason);
    });
    for (const c of candidates) {
      const bake = failed.has(c.index) ? undefined : unbakedOn(asks.get(c.host), c.state);
      if (bake !== undefined) unbaked.set(c.index, bake);
    }
  } catch (err) {
    if (err instanceof NixshipError) return found;
    throw err;
  }
  if (failed.size === 0 && unbaked.size === 0) return found;
  return {
    ...found,
    states: found.states.map((state, i) => {
      if (state.kind !== "reported") return state;
      const why = failed.get(i);
      if (why !== undefined) return { ...state, failed: why };
      const bake = unbaked.get(i);
      return bake === undefined ? state : { ...state, unbaked: bake };
    }),
  };
}

/**
 * The unfinished bake `ask` tells of the system the host runs (status/unfinished-bake.ts), with
 * the generation on the host of what it ran before, where it still has one: a failed bake of it
 * sends the host there.
 */
function unbakedOn(ask: Ask | undefined, state: Reported): UnfinishedBake | undefined {
  const unbaked = unfinishedBake(ask, state.current);
  if (unbaked === undefined) return undefined;
  const before = unbaked.before as StorePath | null;
  // The newest generation below the one it runs that holds what it ran before.
  const beforeGeneration =
    before === null
      ? undefined
      : (state.generations ?? [])
          .filter(
            (g) =>
              g.path === before &&
              (state.generation === undefined || g.generation < state.generation),
          )
          .reduce<number | undefined>((n, g) => Math.max(n ?? 0, g.generation), undefined);
  return {
    ...unbaked,
    before,
    ...(beforeGeneration === undefined ? {} : { beforeGeneration }),
  };
}
