// The status records of push modes (ssh, ssm): a deploy's results and a rollback's outcomes
// leave the same objects agents write, so `nixship status` and the dashboard read every mode
// alike, and judge drift against what nixship last left on each host.
import { NixshipError } from "../errors.js";
import type { DeliveryMode } from "../fleet/fleet.js";
import type { HostPlan } from "../fleet/plan.js";
import type { RollbackOutcome } from "../host/script-outcomes.js";
import { type HostOutcome, outcomeFields, statusRecord } from "../status/status.js";
import { writeStatus } from "../status/status-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { mapLimit } from "../util/pool.js";
import type { HostResult } from "./events.js";

/** Records written at once. */
const WRITES = 16;

/** Up to date counts as activated: the host runs its system. */
const ACTIVATED: HostOutcome = { status: "activated" };

/**
 * One record per host a deploy activated, failed on, or found up to date, with the system it
 * ran before (what a failed host may have gone back to). Hosts not started are left as they were.
 */
export async function recordResults(
  cacheUrl: string,
  mode: DeliveryMode,
  results: readonly HostResult[],
  plan: readonly Pick<HostPlan, "host" | "current">[],
): Promise<void> {
  const before = new Map(plan.map((p) => [p.host, p.current ?? null]));
  await withStore(cacheUrl, async (store) => {
    const now = new Date().toISOString();
    await mapLimit(results, WRITES, async (r) => {
      if (r.outcome.status === "skipped" && r.outcome.reason !== "up-to-date") return;
      const outcome: HostOutcome = r.outcome.status === "failed" ? r.outcome : ACTIVATED;
      const previous =
        r.outcome.status === "skipped"
          ? undefined
          : r.outcome.status === "activated"
            ? (r.outcome.previous ?? before.get(r.host) ?? null)
            : (before.get(r.host) ?? null);
      await writeStatus(
        store,
        statusRecord({
          host: r.host,
          mode,
          release: null,
          desired: r.desired,
          system: {
            current: outcome.status === "activated" ? r.desired : null,
            generation: r.outcome.status === "activated" ? (r.outcome.generation ?? null) : null,
          },
          ...(previous === undefined ? {} : { previous }),
          what: outcomeFields(outcome),
          startedAt: new Date(Date.now() - r.seconds * 1000).toISOString(),
          updatedAt: now,
        }),
      );
    });
  });
}

/** A push rollback that went through, as the record of the system it left the host on. */
export interface RolledBack {
  readonly host: string;
  readonly outcome: RollbackOutcome;
}

/**
 * One record per host a rollback moved (the system it went back to is what nixship left on it
 * now); a host whose rollback failed keeps its record. The rollback is done whatever the store
 * does: a store that fails is a warning (returned), not a failed rollback.
 */
export async function recordRollbacks(
  cacheUrl: string,
  mode: DeliveryMode,
  rollbacks: readonly RolledBack[],
): Promise<string | undefined> {
  const done = rollbacks.flatMap(({ host, outcome }) =>
    outcome.status === "rolled-back" && outcome.path !== "" ? [{ host, ...outcome }] : [],
  );
  if (done.length === 0) return undefined;
  return await writeRollbacks(cacheUrl, mode, done).then(
    () => undefined,
    (err: unknown) => {
      if (!(err instanceof NixshipError)) throw err;
      return `the hosts were rolled back, but their status records could not be written (${err.message}): 'nixship status' may show them as drifting until their next deploy`;
    },
  );
}

async function writeRollbacks(
  cacheUrl: string,
  mode: DeliveryMode,
  done: readonly ({ readonly host: string } & Extract<
    RollbackOutcome,
    { status: "rolled-back" }
  >)[],
): Promise<void> {
  await withStore(cacheUrl, async (store) => {
    const now = new Date().toISOString();
    await mapLimit(done, WRITES, async (r) => {
      await writeStatus(
        store,
        statusRecord({
          host: r.host,
          mode,
          release: null,
          desired: r.path,
          system: { current: r.path, generation: r.generation },
          what: outcomeFields(ACTIVATED),
          startedAt: now,
          updatedAt: now,
        }),
      );
    });
  });
}

async function withStore(url: string, use: (store: ObjectStore) => Promise<void>): Promise<void> {
  const store = await openStore(url);
  try {
    await use(store);
  } finally {
    await store.close();
  }
}
