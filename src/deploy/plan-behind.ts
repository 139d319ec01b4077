// The plan's word on the hosts it changes that are behind the fleet's last rollout to name them
// (status/behind.ts): from what the fleet last asked (plan-records.ts), judged against what
// each host runs as the survey found it. Without the fleet's records the plan is without it.
import { NixshipError } from "../errors.js";
import type { DeployPlan } from "../fleet/plan.js";
import { behindOf } from "../status/behind.js";
import type { Ask } from "../status/fleet-asks.js";
import type { StatusRecord } from "../status/status.js";
import { mapLimit } from "../util/pool.js";
import type { PlanRecords } from "./plan-records.js";

export async function withBehindRollouts(
  fleetRecords: PlanRecords | undefined,
  plan: DeployPlan,
): Promise<DeployPlan> {
  // A host the plan leaves alone runs what the fleet asks now, and one it cannot reach is said
  // unreachable: only those it changes are judged.
  const changed = plan.hosts.filter((h) => h.action === "activate").map((h) => h.host);
  if (fleetRecords === undefined || changed.length === 0) return plan;
  const { asks } = fleetRecords;
  if (asks.size === 0) return plan;
  const records = new Map<string, StatusRecord | undefined>();
  const current = new Map(plan.hosts.map((h) => [h.host, h.current ?? null] as const));
  // A host's own record, newer than the rollout that asked, is the newer word on it (as every
  // view judges it): read for the hosts the asks alone would call behind.
  const judged = changed.filter(
    (h) => behindOf(asks.get(h), undefined, current.get(h)) !== undefined,
  );
  await mapLimit(judged, RECORD_READS, async (h) => {
    records.set(h, await fleetRecords.status(h).catch(unreadable));
  });
  return {
    ...plan,
    hosts: plan.hosts.map((h) => {
      const ask = asks.get(h.host);
      const busy = h.busy === undefined ? h : { ...h, busy: busyWith(h.busy, ask) };
      const behind = behindOf(ask, records.get(h.host), h.current ?? null);
      return behind === undefined
        ? busy
        : { ...busy, behindRollout: { rollout: behind.rollout, why: behind.why } };
    }),
  };
}

/**
 * What holds a busy host, with the rollout at work there and who started it, when the fleet's
 * last ask of the host is a rollout whose deployer is at work: the other operator to ask.
 */
function busyWith(busy: string, ask: Ask | undefined): string {
  if (ask?.rollout.live !== true) return busy;
  const by = ask.rollout.by === undefined ? "" : ` by ${ask.rollout.by}`;
  return `${busy}: rollout ${ask.rollout.id}${by}, started ${ask.rollout.startedAt}`;
}

/** Status records read at once. */
const RECORD_READS = 16;

/** A record that cannot be read says nothing newer: the rollout's ask stands. */
function unreadable(err: unknown): undefined {
  if (err instanceof NixshipError) return undefined;
  throw err;
}
