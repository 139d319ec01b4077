// Reads what a rollback of a rollout needs: the rollout's record (the newest to name a
// selected host, or the one given by id) and what each host it named runs now (ssh hosts
// asked live, the others from their status records), then plans the undo (status/undo-rollout.ts).

import { answerText } from "../deploy/answer-pause.js";
import { InputError, OperationError, UsageError } from "../errors.js";
import type { Fleet, FleetHost } from "../fleet/fleet.js";
import { type PublicKey, parsePublicKey } from "../nix/keys.js";
import { type FutureRollout, firstFutureRollout } from "../status/future-rollouts.js";
import type { PauseAnswer } from "../status/pause-answer.js";
import { untakenAnswer } from "../status/pause-answer-store.js";
import {
  ANSWER_TAKEN_WITHIN_MS,
  isRolloutKey,
  mayHaveChanged,
  ROLLOUT_ABANDONED_SECONDS,
  type RolloutRecord,
  rolloutEntries,
  rolloutGone,
  undoneHosts,
} from "../status/rollout.js";
import {
  ASK_BYTES,
  ASK_LOOKBACK,
  findRolloutAndNewer,
  listNewestRollouts,
  RecordBudget,
  readTrustedRollout,
  readWeighedRollout,
  untrustedRollout,
} from "../status/rollout-store.js";
import { type NewerRollouts, planUndo, type UndoStep } from "../status/undo-rollout.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { mapLimit } from "../util/pool.js";
import { runningOf } from "./status-rows.js";
import { readStatusView } from "./status-view.js";

export interface UndoRead {
  readonly key: string;
  readonly record: RolloutRecord;
  readonly steps: readonly UndoStep[];
  /** Hosts the rollout named that the fleet file no longer has. */
  readonly gone: readonly string[];
  /** Of `gone`, those the rollout may have changed: the rollback leaves them as it left them. */
  readonly goneChanged: readonly string[];
  /**
   * Why its deployer is gone, when the record says running or paused (rolloutGone: killed);
   * undefined when the record ended, or its deployer is still at it.
   */
  readonly abandoned: string | undefined;
  /**
   * Without an id: the first record dated too far ahead to be taken for the newest
   * (future-rollouts.ts), which the search passed over.
   */
  readonly futureRollout?: FutureRollout;
}

/**
 * `id`: the rollout to undo (default: the newest that names a selected host). `selected`: the
 * hosts `--on` chose (undefined: every host of the fleet).
 */
export async function readUndo(
  fleet: Fleet,
  options: {
    readonly id?: string | undefined;
    readonly selected?: readonly FleetHost[] | undefined;
    readonly force?: boolean;
    /** The time the record's age is judged at (default: now). */
    readonly now?: Date;
    /**
     * What ssm hosts run now, asked of them (null: not known): their status records lag a
     * command that went on without its deployer (an interrupted rollout's, which keeps the
     * new system if it switches), so a rollback judges them by their own word, as plan does.
     * Without it, by their records.
     */
    readonly askLive?: (hosts: readonly FleetHost[]) => Promise<ReadonlyMap<string, string | null>>;
  },
): Promise<UndoRead> {
  if (fleet.cache === undefined) {
    throw new UsageError(
      "rollback: rollout records live in the fleet's cache store, and the fleet has no cache",
      "use 'rollback --on SELECTOR' to send hosts back one generation",
    );
  }
  const selected = new Set((options.selected ?? fleet.hosts).map((h) => h.name));
  const store = await openStore(fleet.cache.url);
  let found: { key: string; record: RolloutRecord; newer: NewerRollouts } | undefined;
  let future: FutureRollout | undefined;
  let answer: PauseAnswer | undefined;
  try {
    const keys = fleet.cache.publicKeys.map((k) => parsePublicKey(k));
    if (options.id === undefined) future = await firstFutureRollout(store, Date.now());
    found = await findRecord(store, options.id, selected, keys);
    answer = await untakenAnswer(store, found.record);
  } finally {
    await store.close();
  }
  const { key, record, newer } = found;
  const now = options.now ?? new Date();
  const abandoned = rolloutGone(record, now, answer);
  if (record.state === "paused" && abandoned === undefined) {
    const started = `started ${record.startedAt}${record.by ? ` by ${record.by}` : ""}`;
    if (answer !== undefined) {
      const gone = new Date(Date.parse(answer.at) + ANSWER_TAKEN_WITHIN_MS).toISOString();
      throw new OperationError(
        "rollout-paused",
        `rollback: rollout ${record.id} is paused (${started}), and its pause was answered (${answerText(answer)}), but its deploy has not taken the answer yet`,
        {
          hint: `a deploy that is there takes it within seconds, and goes on as answered; one still untaken at ${gone} is gone (killed), and 'nixship rollback' then undoes the rollout`,
        },
      );
    }
    throw new OperationError(
      "rollout-paused",
      `rollback: rollout ${record.id} is paused, and its deploy waits for an answer (${started}): undone now, it would go on with its next wave once resumed`,
      {
        hint: `answer its pause with 'nixship rollout abort ${record.id}': its deploy then rolls back the hosts it changed, and no later wave starts`,
      },
    );
  }
  if (record.state === "running" && abandoned === undefined) {
    throw new OperationError(
      "rollout-running",
      `rollback: rollout ${record.id} is still running (started ${record.startedAt}${record.by ? ` by ${record.by}` : ""}; its record was last written ${record.updatedAt})`,
      {
        hint: `wait for it to end (or interrupt its deploy), then roll it back; a deploy that was killed stops writing its record, and ${ROLLOUT_ABANDONED_SECONDS / 60} minutes after its last write it can be rolled back`,
      },
    );
  }
  const byName = new Map(fleet.hosts.map((h) => [h.name, h]));
  const named = rolloutEntries(record).map((e) => e.host);
  // A host the record names that the fleet file has no more (removed, or renamed): without
  // --on it is named, left alone (with --on, only hosts of the fleet file are selected).
  const gone = options.selected === undefined ? named.filter((h) => !byName.has(h)) : [];
  const goneChanged = rolloutEntries(record).flatMap((e) =>
    gone.includes(e.host) && mayHaveChanged(e) ? [e.host] : [],
  );
  const hosts = named.flatMap((h) => {
    const host = byName.get(h);
    return host !== undefined && selected.has(h) ? [host] : [];
  });
  const { rows } = await readStatusView(fleet, hosts);
  const running = new Map(rows.map((r) => [r.host, runningOf(r)]));
  const ssm = hosts.filter((h) => h.delivery === "ssm" && h.targets === undefined);
  if (options.askLive !== undefined && ssm.length > 0) {
    for (const [host, runs] of await options.askLive(ssm)) running.set(host, runs);
  }
  const steps = planUndo(record, running, {
    force: options.force === true,
    selected: new Set(hosts.map((h) => h.name)),
    abandoned: abandoned !== undefined,
    newer,
  });
  return {
    key,
    record,
    steps,
    gone,
    goneChanged,
    abandoned,
    ...(future === undefined ? {} : { futureRollout: future }),
  };
}

/** Rollout records started after the one undone that a rollback reads, at most. */
const NEWER_READ = 200;

/**
 * The record to undo, believed only when a key of `keys` (cache.publicKeys) signed it: a
 * rollback sends hosts to the systems it names (readTrustedRollout).
 */
async function findRecord(
  store: ObjectStore,
  id: string | undefined,
  selected: ReadonlySet<string>,
  keys: readonly PublicKey[],
): Promise<{ key: string; record: RolloutRecord; newer: NewerRollouts }> {
  if (id !== undefined) {
    const found = await findRolloutAndNewer(store, id, NEWER_READ);
    const record =
      found === undefined ? undefined : await readTrustedRollout(store, found.key, keys);
    if (found === undefined || record === undefined) {
      throw new UsageError(
        `rollback: no rollout ${id} in ${store.url} (status/rollouts/)`,
        "the dashboard's rollouts, or 'nixship status', name the rollouts kept",
      );
    }
    if (record.action === "dry-activate") {
      throw new UsageError(
        `rollback: rollout ${id} was a dry run (--action dry-activate): it changed no host, so there is nothing to undo`,
        "'nixship rollback' undoes the newest rollout that changed a selected host; the dashboard's rollouts name each rollout's action",
      );
    }
    return {
      key: found.key,
      record,
      newer: await readNewer(store, found.newer, found.more, keys),
    };
  }
  // The newest that names a selected host and still stands for one: those newer name none of
  // them, or are rollbacks, passed over with the rollouts they undid for the hosts they were
  // done with (a second rollback steps back to the rollout before, never redoes the one undone;
  // one a rollback did not finish, interrupted or unreachable, stands for the hosts it did not
  // send back, and is finished). What a rollback undid is believed only when its record is signed.
  const passed: RolloutRecord[] = [];
  /** The ids of the passed records no cache key signed: they refuse, never clear a refusal. */
  const passedUnsigned = new Set<string>();
  const undone = new Map<string, Set<string>>();
  /** The newest record naming a selected host that no cache key signed: it is named. */
  let unsigned: InputError | undefined;
  // As the views, at most ASK_BYTES of records by the listing's sizes (the newest always).
  const budget = new RecordBudget();
  for (const { key, size } of await listNewestRollouts(store, ASK_LOOKBACK)) {
    if (!isRolloutKey(key)) continue;
    if (!budget.take(size)) {
      if (unsigned !== undefined) throw unsigned;
      throw new UsageError(
        `rollback: none of the newest ${budget.taken} rollouts in ${store.url} (${ASK_BYTES / (1024 * 1024)} MiB of records, all a rollback reads) names a selected host`,
        "give the rollout with --rollout ID, or send hosts back one generation with --on SELECTOR",
      );
    }
    const weighed = await readWeighedRollout(store, key, keys).catch((err: unknown) => {
      if (!(err instanceof InputError)) throw err;
      // One that cannot be read may be a stranger's, as an unsigned one: named, not a stop.
      unsigned ??= new InputError(
        "rollout-unreadable",
        `the rollout record ${store.url} ${key} cannot be read (${err.message}); anyone who can write the store could have put it there`,
        { hint: "remove it if no deploy of yours wrote it" },
      );
      return undefined;
    });
    if (weighed === undefined) continue;
    const record = weighed.record;
    // A dry run changed nothing: it is passed over, never undone in place of a rollout.
    if (
      record.action !== "dry-activate" &&
      rolloutEntries(record).some((e) => selected.has(e.host))
    ) {
      // The one to undo is believed only when signed: one that is not is named, not passed
      // over, with the signed one before it that would be undone in its place.
      if (!weighed.trusted) {
        unsigned ??= untrustedRollout(store, key, weighed);
        continue;
      }
      for (const [id, hosts] of undoneHosts([record])) {
        undone.set(id, new Set([...(undone.get(id) ?? []), ...hosts]));
      }
      const stands = rolloutEntries(record).some(
        (e) => selected.has(e.host) && !undone.get(record.id)?.has(e.host),
      );
      if (record.undoes === undefined && stands) {
        if (unsigned !== undefined) throw namedInstead(unsigned, record);
        return {
          key,
          record,
          newer: { records: passed, complete: true, unsigned: passedUnsigned },
        };
      }
    }
    if (!weighed.trusted) passedUnsigned.add(record.id);
    passed.push(record);
  }
  if (unsigned !== undefined) throw unsigned;
  throw new UsageError(
    `rollback: none of the newest ${ASK_LOOKBACK} rollouts in ${store.url} names a selected host`,
    "give the rollout with --rollout ID, or send hosts back one generation with --on SELECTOR",
  );
}

/**
 * The refusal of a newer record no cache key signed, naming the signed rollout a plain rollback
 * would undo were it not there: the operator, who knows whether a deploy wrote it, chooses.
 */
function namedInstead(unsigned: InputError, signed: RolloutRecord): InputError {
  const by = signed.by === undefined ? "" : ` by ${signed.by}`;
  return new InputError(unsigned.code, unsigned.message, {
    hint: `the newest rollout a cache key signed that names these hosts is ${signed.id} (started ${signed.startedAt}${by}): 'nixship rollback --rollout ${signed.id}' undoes it. ${unsigned.hint ?? ""}`.trim(),
  });
}

/**
 * The records of `keys` (newest first), each weighed against the cache keys (`trusted`); one
 * gone since the listing is passed over, and one that cannot be read leaves the list incomplete.
 */
async function readNewer(
  store: ObjectStore,
  keys: readonly string[],
  more: boolean,
  trusted: readonly PublicKey[],
): Promise<NewerRollouts> {
  let complete = !more;
  const unreadable: string[] = [];
  const read = await mapLimit(keys, 8, (key) =>
    readWeighedRollout(store, key, trusted).catch((err: unknown) => {
      if (!(err instanceof InputError)) throw err;
      complete = false;
      unreadable.push(key);
      return undefined;
    }),
  );
  const weighed = read.flatMap((r) => (r === undefined ? [] : [r]));
  const unsigned = new Set(weighed.flatMap((w) => (w.trusted ? [] : [w.record.id])));
  return { records: weighed.map((w) => w.record), complete, unsigned, unreadable };
}
