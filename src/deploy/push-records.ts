// The status records of push modes (ssh, ssm): a deploy's results and a rollback's outcomes
// leave the same objects agents write, so `nixship status` and the dashboard read every mode
// alike, and judge drift against what nixship last left on each host.
import { NixshipError } from "../errors.js";
import { actionIsDryRun } from "../fleet/action.js";
import type { DeliveryMode } from "../fleet/fleet.js";
import type { DeployPlan, HostPlan } from "../fleet/plan.js";
import type { RollbackOutcome } from "../host/script-outcomes.js";
import { nextRecord } from "../status/next-record.js";
import { failedBeforeAnyChange } from "../status/rollout.js";
import {
  type HostOutcome,
  outcomeFields,
  type RecordOrigin,
  type RecordParts,
  type StatusRecord,
} from "../status/status.js";
import { readStatusOf, writeStatus } from "../status/status-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { onLastWord } from "../util/last-words.js";
import { mapLimit, Semaphore } from "../util/pool.js";
import { deployedBy } from "./deploy-origin.js";
import type { HostResult } from "./events.js";
import { generationAfter, runsAfter } from "./runs-after.js";

/** Records written at once. */
const WRITES = 16;

/** Up to date counts as activated: the host runs its system. */
const ACTIVATED: HostOutcome = { status: "activated" };

/**
 * One record per host a deploy activated, failed on, or found up to date, each the next of the
 * record the host had (status/next-record.ts): what it runs (the new system; after a failure,
 * the one it went back to or never left), its generation and the system it ran before are
 * kept. Hosts not started are left as they were. A host the deploy moved or activated names
 * `rollout` (the deploy's rollout record; undefined: none was written) as what put its system
 * there; a host it left on its system keeps its record's word.
 *
 * `doneWith`: when the deploy was last done with each host. A record written after that (a
 * deploy or a rollback that reached the host later, while this rollout went on with other
 * waves) is newer than this deploy's word on the host, and is kept.
 */
export async function recordResults(
  cacheUrl: string,
  mode: DeliveryMode,
  results: readonly HostResult[],
  plan: SurveyedPlan,
  rollout?: RecordOrigin,
  doneWith?: ReadonlyMap<string, Date>,
): Promise<void> {
  await withStore(cacheUrl, async (store) => {
    const context = recordContext(store, mode, plan, rollout);
    await mapLimit(results, WRITES, (r) => recordResult(context, r, doneWith?.get(r.host)));
  });
}

/** What recordResults reads of the plan: its action, and what the survey found on each host. */
type SurveyedPlan = Pick<DeployPlan, "action"> & {
  readonly hosts: readonly Pick<HostPlan, "host" | "current" | "generation" | "secrets">[];
};

interface RecordContext {
  readonly store: ObjectStore;
  readonly mode: DeliveryMode;
  readonly action: DeployPlan["action"];
  readonly surveyed: ReadonlyMap<
    string,
    Pick<HostPlan, "host" | "current" | "generation" | "secrets">
  >;
  readonly rollout: RecordOrigin | undefined;
}

function recordContext(
  store: ObjectStore,
  mode: DeliveryMode,
  plan: SurveyedPlan,
  rollout: RecordOrigin | undefined,
): RecordContext {
  const surveyed = new Map(plan.hosts.map((p) => [p.host, p]));
  return { store, mode, action: plan.action, surveyed, rollout };
}

/**
 * Writes the next record of `r`'s host (recordResults says what it holds), unless the host was
 * not started or the record holds a newer word than this deploy's (written after `done`, and
 * not this deploy's own write `own`). Resolves with the record's updatedAt, or undefined when
 * it left the record as it was.
 */
async function recordResult(
  c: RecordContext,
  r: HostResult,
  done: Date | undefined,
  own?: string,
): Promise<string | undefined> {
  if (r.outcome.status === "skipped" && r.outcome.reason !== "up-to-date") return undefined;
  // A dry run changed nothing there, and asked nothing of it: the record keeps its word.
  if (actionIsDryRun(c.action)) return undefined;
  // Nor did a deploy that never reached the host (unreachable), or failed (or was interrupted)
  // before it changed anything there (copy, realise): the rollout record says so, and the host
  // runs what it ran, behind that rollout, not failed (status/behind.ts).
  if (r.outcome.status === "failed" && failedBeforeAnyChange(r.outcome.phase)) return undefined;
  // Nor of a host left settling: where it ends is not known here; the rollout record says the
  // deploy stopped following it, and a later survey asks it.
  if (r.outcome.status === "failed" && r.outcome.settling === true) return undefined;
  const now = new Date().toISOString();
  const was = c.surveyed.get(r.host);
  const outcome: HostOutcome = r.outcome.status === "failed" ? r.outcome : ACTIVATED;
  const current = runsAfter(r, was?.current, c.action);
  const moved = current !== undefined && current !== was?.current;
  // Unknown where it is not known (the record keeps its own when it runs what it said).
  const generation = generationAfter(r, was, c.action);
  // The secrets the deploy gave it: installed by its activation, or already there when it was
  // up to date (a host whose secrets differ is activated). `status` compares what it has.
  const gave =
    was?.secrets !== undefined &&
    (r.outcome.status === "activated" ||
      (r.outcome.status === "skipped" && r.outcome.reason === "up-to-date"));
  const system: RecordParts["system"] =
    current === undefined
      ? undefined
      : { current, generation, ...(gave ? { secrets: was.secrets } : {}) };
  // The system it ran before: after an activation (a new generation, even of the same
  // system; with `boot`, the one it runs until it reboots), the activation's word, else
  // what it ran; after any other move, what it ran; otherwise the record's own.
  const previous =
    r.outcome.status === "activated"
      ? (r.outcome.previous ?? was?.current ?? null)
      : moved
        ? (was?.current ?? null)
        : undefined;
  const put = r.outcome.status === "activated" || moved;
  const before = await recordBefore(c.store, r.host);
  if (
    before !== undefined &&
    done !== undefined &&
    before.updatedAt !== own &&
    Date.parse(before.updatedAt) > done.getTime()
  )
    return undefined;
  await writeStatus(
    c.store,
    nextRecord(before, {
      host: r.host,
      mode: c.mode,
      release: null,
      desired: r.desired,
      system,
      ...(previous === undefined ? {} : { previous }),
      ...(put ? { origin: c.rollout ?? null } : {}),
      what: {
        ...outcomeFields(outcome),
        ...(r.outcome.status === "activated" && r.outcome.delta !== undefined
          ? { delta: r.outcome.delta }
          : {}),
        // What it boots next is what it was given; it runs what it ran until it reboots.
        ...(r.outcome.status === "activated" && c.action === "boot" ? { action: "boot" } : {}),
      },
      // From the same clock reading as updatedAt: a host found up to date (no seconds)
      // started no later than its record was written.
      startedAt: new Date(Date.parse(now) - r.seconds * 1000).toISOString(),
      updatedAt: now,
    }),
  );
  return now;
}

/**
 * A push deploy's status records, written as each host is done (WRITES at once), so that a
 * deployer killed later in the rollout leaves its word on the hosts it changed; then, when the
 * rollout ends, again for each host whose result changed since (its wave's bake, a pause's
 * abort, a later word from its delivery), or whose first write failed.
 */
export class PushRecords {
  readonly #store: Promise<ObjectStore>;
  readonly #context: Promise<RecordContext>;
  readonly #limit = new Semaphore(WRITES);
  readonly #written = new Map<string, { readonly result: HostResult; readonly at: string }>();
  readonly #pending: Promise<void>[] = [];
  /** Each host's last write under way: a later word on a host is written after the earlier. */
  readonly #lastWrite = new Map<string, Promise<void>>();
  /** A second interrupt exits at once: the records under way are among its last words. */
  readonly #unregister = onLastWord(() => Promise.all(this.#pending));

  constructor(cacheUrl: string, mode: DeliveryMode, plan: SurveyedPlan, rollout?: RecordOrigin) {
    this.#store = openStore(cacheUrl);
    this.#context = this.#store.then((store) => recordContext(store, mode, plan, rollout));
    // A store that cannot be opened fails finish(), as recordResults would.
    this.#context.catch(() => {});
  }

  /**
   * `result`'s host is done (at `done`): its record is written now, a failure retried at the
   * end. Said again of a host (its wave's bake failed), written after the earlier word.
   */
  hostDone(result: HostResult, done: Date): void {
    const earlier = this.#lastWrite.get(result.host);
    const write = (async () => {
      await earlier;
      const release = await this.#limit.acquire();
      try {
        const at = await recordResult(await this.#context, result, done);
        if (at !== undefined) this.#written.set(result.host, { result, at });
      } catch {
        // Written again by finish(), whose failure the deploy reports.
      } finally {
        release();
      }
    })();
    this.#lastWrite.set(result.host, write);
    this.#pending.push(write);
  }

  /**
   * Hosts said again before anything else happens (their wave's bake failed, and they are
   * about to be rolled back): written now, resolved once written (or failed: finish() writes
   * them again).
   */
  async sayNow(results: readonly HostResult[], done: Date): Promise<void> {
    for (const r of results) this.hostDone(r, done);
    await Promise.all(results.map((r) => this.#lastWrite.get(r.host)));
  }

  /** The rollout ended with `results` (undefined: it failed before any): every record said. */
  async finish(
    results: readonly HostResult[] | undefined,
    doneWith: ReadonlyMap<string, Date>,
  ): Promise<void> {
    await Promise.all(this.#pending);
    this.#unregister();
    try {
      const context = await this.#context;
      await mapLimit(results ?? [], WRITES, async (r) => {
        const early = this.#written.get(r.host);
        if (early !== undefined && sameResult(early.result, r)) return;
        await recordResult(context, r, doneWith.get(r.host), early?.at);
      });
    } finally {
      await this.#store.then(
        (store) => store.close(),
        () => {},
      );
    }
  }
}

/** Whether two results of one host say the same (what its record would hold). */
function sameResult(a: HostResult, b: HostResult): boolean {
  return a.desired === b.desired && JSON.stringify(a.outcome) === JSON.stringify(b.outcome);
}

/** The host's record as it stands, to write the next from (none when it has none or is unreadable). */
async function recordBefore(store: ObjectStore, host: string): Promise<StatusRecord | undefined> {
  const read = await readStatusOf(store, host);
  return read.status === "found" ? read.record : undefined;
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
  const origin: RecordOrigin = { kind: "rollback", by: deployedBy() };
  await withStore(cacheUrl, async (store) => {
    const now = new Date().toISOString();
    await mapLimit(done, WRITES, async (r) => {
      await writeStatus(
        store,
        nextRecord(await recordBefore(store, r.host), {
          host: r.host,
          mode,
          release: null,
          desired: r.path,
          system: { current: r.path, generation: r.generation },
          origin,
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
