// What a rollback of a rollout does to each host that rollout named: a host it changed goes
// back to what it ran before; a host it skipped, never reached, found up to date or failed on
// stays where it is; a host changed since (by hand, or by a later rollout) is refused unless
// the operator asks. Pure: the rollback command reads the record and what the hosts run.
import { storeName } from "../nix/store-path.js";
import {
  inFlight,
  mayHaveChanged,
  type RolloutHost,
  type RolloutRecord,
  rolloutEntries,
  rolloutLive,
  undoneHosts,
} from "./rollout.js";

/** The rollouts started after the one undone (newest first); `complete`: all of them. */
export interface NewerRollouts {
  readonly records: readonly RolloutRecord[];
  readonly complete: boolean;
  /** The ids of those whose record no cache key signed (said when one refuses a host). */
  readonly unsigned?: ReadonlySet<string>;
  /** The keys of those that could not be read (why the list is not complete). */
  readonly unreadable?: readonly string[];
}

export type UndoStep =
  /** The rollout changed it from `to` to `from`: it goes back. */
  | { readonly host: string; readonly kind: "back"; readonly from: string; readonly to: string }
  /**
   * It stays where it is (`runs`, null: not known), and why. A refusal `standing`: whether the
   * rollout changed it since cannot be told now (what it runs, or a later rollout, could not be
   * read), so the rollout still stands for it and the next rollback asks again; any other
   * refusal is final (it changed since, or there is nothing it could go back to).
   */
  | {
      readonly host: string;
      readonly kind: "stays";
      readonly runs: string | null;
      readonly why: string;
    }
  | {
      readonly host: string;
      readonly kind: "refused";
      readonly runs: string | null;
      readonly why: string;
      readonly standing?: true;
    };

/**
 * Each host of `record` among `selected` (all when undefined), in the record's order.
 * `running`: what each host runs now (null or absent: not known). `force`: hosts changed since
 * go back too. `abandoned`: the record's deployer died mid-rollout (rolloutAbandoned), so a
 * host it left mid-activation that runs the rollout's system goes back too. `newer`: the
 * rollouts started since; a host one of them changed is refused even when it runs the undone
 * rollout's system again (undoing it would undo that change too), unless `force`.
 */
export function planUndo(
  record: RolloutRecord,
  running: ReadonlyMap<string, string | null>,
  options: {
    readonly force?: boolean;
    readonly selected?: ReadonlySet<string>;
    readonly abandoned?: boolean;
    readonly newer?: NewerRollouts;
  } = {},
): UndoStep[] {
  const newer = changesSince(options.newer ?? { records: [], complete: true });
  return rolloutEntries(record)
    .filter((e) => options.selected === undefined || options.selected.has(e.host))
    .map((e) =>
      undoStep(record, e, running.get(e.host) ?? null, {
        force: options.force === true,
        abandoned: options.abandoned === true,
        newer,
      }),
    );
}

interface LaterRollouts extends NewerRollouts {
  /** Each later rollout a later rollback undid, with the hosts it was undone for. */
  readonly undone: ReadonlyMap<string, ReadonlySet<string>>;
  readonly ids: ReadonlySet<string>;
}

/**
 * The later rollouts, with the hosts a rollback among them undid each for: a rollout undone for
 * a host changed nothing there in the end, and both it and its rollback are passed over for
 * that host (undoing the newest rollout, then the one before, steps back through the fleet's
 * history); for its other hosts the rollout still counts.
 */
function changesSince(newer: NewerRollouts): LaterRollouts {
  // What a rollback undid is believed only from a signed record: an unsigned one may still
  // refuse a host (its entries), never clear a refusal.
  const signed = newer.records.filter((r) => !newer.unsigned?.has(r.id));
  return {
    ...newer,
    undone: undoneHosts(signed),
    ids: new Set(signed.map((r) => r.id)),
  };
}

/** Why a rollout started since `record` keeps `host` from going back; undefined: none does. */
function changedSince(
  record: RolloutRecord,
  host: string,
  newer: LaterRollouts,
): { readonly why: string; readonly standing?: true } | undefined {
  for (const later of newer.records) {
    // A dry run changed nothing (its hosts "confirmed" only what they would do).
    if (later.action === "dry-activate") continue;
    if (newer.undone.get(later.id)?.has(host)) continue;
    // The rollback of a later rollout, for a host it sent back: the pair changed nothing there
    // (believed of a signed rollback only).
    if (later.undoes !== undefined && newer.ids.has(later.undoes) && newer.ids.has(later.id)) {
      continue;
    }
    const entry = rolloutEntries(later).find((e) => e.host === host);
    // A record that still says running or paused may be at work on a host it has not reached
    // (or be an earlier write of a record put back in place of its last): it may change it.
    const atWork =
      entry?.state === "pending" && (later.state === "running" || later.state === "paused");
    if (entry === undefined || !(mayHaveChanged(entry) || atWork)) continue;
    const unsigned = newer.unsigned?.has(later.id)
      ? `; its record is not signed by a cache key: a deploy without --key, or anyone who can write the store, wrote it`
      : "";
    const what = atWork
      ? `${later.undoes === record.id ? `rollback ${later.id} of rollout ${record.id}` : `rollout ${later.id}`} (${later.startedAt}${unsigned}) names it and its record still says ${later.state}: it may be at work on it`
      : later.undoes === record.id
        ? `rollback ${later.id} of rollout ${record.id} sent it back already (${later.startedAt}${unsigned})`
        : `rollout ${later.id} (${later.startedAt}${unsigned}) changed it since`;
    return {
      why: `${what}: undoing rollout ${record.id} again would undo that too (${forcing(record, host)})`,
    };
  }
  if (!newer.complete) {
    return {
      why: `${newer.unreadable?.[0] === undefined ? `more rollouts were started since rollout ${record.id} than a rollback reads (or one cannot be read)` : `the rollout record ${newer.unreadable[0]}, started since rollout ${record.id}, cannot be read (remove it if no deploy of yours wrote it)`}: whether one changed it cannot be told (${forcing(record, host)})`,
      standing: true,
    };
  }
  return undefined;
}

function undoStep(
  record: RolloutRecord,
  entry: RolloutHost,
  runs: string | null,
  {
    force,
    abandoned,
    newer,
  }: { readonly force: boolean; readonly abandoned: boolean; readonly newer: LaterRollouts },
): UndoStep {
  const host = entry.host;
  const stays = (why: string): UndoStep => ({ host, kind: "stays", runs, why });
  const { system, before } = entry;
  // Left mid-activation by a deploy that was killed, or ended by a second interrupt. A host
  // still pending in a record its deployer abandoned may have been activated all the same: the
  // record is written a little after the hosts' steps, and the deployer died in between.
  const stopped = abandoned || !rolloutLive(record.state);
  const leftActivating =
    stopped && (inFlight(entry.state) || (abandoned && entry.state === "pending"));
  const changed =
    entry.state === "confirmed" ||
    ((entry.state === "failed" || leftActivating) && runs !== null && runs === system);
  if (!changed) return stays(unchangedWhy(record, entry, runs, stopped));
  if (system === null) return stays(`rollout ${record.id} named no system for it`);
  if (before === null) {
    return {
      host,
      kind: "refused",
      runs,
      why: `rollout ${record.id} found no system on it to go back to (its first deploy: it ran no system nixship could name): deploy the system it should run instead`,
    };
  }
  if (before === undefined) {
    return {
      host,
      kind: "refused",
      runs,
      why: `rollout ${record.id} did not record what it ran before (a record older than this nixship): use 'rollback --on ${host}' to go back one generation`,
    };
  }
  if (before === system) return stays(`rollout ${record.id} activated the system it ran already`);
  if (runs === before && record.action === "boot" && entry.state === "confirmed") {
    // It runs what it ran, but boots the rollout's system next: a switch back changes nothing.
    return {
      host,
      kind: "refused",
      runs,
      why: `rollout ${record.id} was a boot deploy: it still runs ${storeName(before)}, and boots ${storeName(system)} next; 'nixship rollback --on ${host}' sets its profile back one generation`,
    };
  }
  if (runs === before) return stays(`it runs ${storeName(before)} already, what it ran before`);
  if (force) return { host, kind: "back", from: system, to: before };
  if (runs === system) {
    const since = changedSince(record, host, newer);
    if (since !== undefined) return { host, kind: "refused", runs, ...since };
    return { host, kind: "back", from: system, to: before };
  }
  if (runs === null) {
    return {
      host,
      kind: "refused",
      runs,
      why: `what it runs cannot be told (unreachable, or never reported): rollout ${record.id} left ${storeName(system)} on it, and stands for it until a rollback can tell (${forcing(record, host)})`,
      standing: true,
    };
  }
  return {
    host,
    kind: "refused",
    runs,
    why: `it runs ${storeName(runs)}, not the ${storeName(system)} rollout ${record.id} left on it: changed since, by hand or by a later rollout (${forcing(record, host)})`,
  };
}

/**
 * The hosts a rollback names and does not deploy, as its record names them: each left (or
 * refused), with why. One whose refusal leaves the rollout standing (what it runs could not be
 * told) is not started: the rollback did not get to it, so the rollout it undoes still stands
 * for it (undoneHosts), and the next rollback asks again.
 */
export function leftByUndo(steps: readonly UndoStep[]): RolloutHost[] {
  return steps.flatMap((s): RolloutHost[] =>
    s.kind === "back"
      ? []
      : [
          {
            host: s.host,
            state: s.kind === "stays" ? "left" : s.standing ? "not-started" : "refused",
            phase: null,
            system: null,
            before: s.runs,
            message: s.why,
          },
        ],
  );
}

/**
 * The command that sends a refused host back all the same: this rollout, this host (a plain
 * `rollback` again would pass over this rollout, undone, to the one before it).
 */
function forcing(record: RolloutRecord, host: string): string {
  return `'nixship rollback --rollout ${record.id} --on ${host} --force' sends it back all the same`;
}

/** Why a host the rollout did not change stays; `stopped`: its deployer is no longer at work. */
function unchangedWhy(
  record: RolloutRecord,
  entry: RolloutHost,
  runs: string | null,
  stopped: boolean,
): string {
  const said = entry.message === null ? "" : ` (${entry.message})`;
  switch (entry.state) {
    case "up-to-date":
      return `rollout ${record.id} found it up to date: it did not change it`;
    case "unreachable":
      return `rollout ${record.id} skipped it as unreachable${said}: it never changed it`;
    case "not-started":
      return `rollout ${record.id} never reached it${said}`;
    case "rolled-back":
      return `it failed in rollout ${record.id} and went back by itself${said}`;
    case "failed":
      return `it failed in rollout ${record.id}${said} and does not run what it was given`;
    case "refused":
    case "left": {
      // A deploy refuses a host changed since at its turn; a rollback leaves one it does not
      // send back, for a reason of its own or an earlier rollback's.
      if (record.undoes === undefined) {
        return entry.state === "refused"
          ? `rollout ${record.id} refused it at its turn${said}`
          : `rollout ${record.id} left it alone${said}`;
      }
      if (entry.message === null) return `rollout ${record.id} (a rollback) left it alone`;
      const first = firstLeftBy(entry.message);
      const as = first.by === undefined ? "" : `, as rollout ${first.by} did`;
      return `rollout ${record.id} (a rollback) left it alone${as} (${first.reason})`;
    }
    default: {
      if (!inFlight(entry.state)) return `rollout ${record.id} left it ${entry.state}`;
      const step = entry.state === "activating" ? "activating it" : `in its ${entry.state} step`;
      if (!stopped) {
        return `rollout ${record.id} is ${step.replace(/^in its/, "at its")} (its deployer is at work): it is left to it`;
      }
      const now = runs === null ? "what it runs cannot be told" : `it runs ${storeName(runs)}`;
      const given = entry.system === null ? "" : `, not the ${storeName(entry.system)} it gave`;
      return `rollout ${record.id} stopped while it was ${step} (its deployer was killed or interrupted before it recorded the outcome): ${now}${given}`;
    }
  }
}

/** A rollback's reason for leaving a host, written around an earlier rollout's reason. */
const LEFT_BY_ROLLBACK =
  /^rollout ([0-9a-f]+) (?:\(a rollback\) left it alone(?:, as rollout ([0-9a-f]+) did)?|refused it at its turn) \((.*)\)$/s;
/** The advice an undo plan gives for one rollout, which a later plan's reason must not carry. */
const FORCE_ADVICE =
  / \('nixship rollback --rollout [0-9a-f]+ --on [^ ']+ --force' sends it back all the same\)/g;

/**
 * The first rollout of a chain that left a host alone (a deploy that refused it, or the
 * first rollback), and its reason: each rollback after it wraps that reason, and says so
 * once, not nested; the advice to force one rollout's undo is dropped.
 */
export function firstLeftBy(message: string): { by?: string; reason: string } {
  let by: string | undefined;
  let reason = message;
  for (let depth = 0; depth < 100; depth++) {
    const m = LEFT_BY_ROLLBACK.exec(reason);
    if (m === null) break;
    by = m[2] ?? m[1];
    reason = m[3] as string;
  }
  return { ...(by === undefined ? {} : { by }), reason: reason.replace(FORCE_ADVICE, "") };
}
