// Rollout records in an ObjectStore (layout in rollout.ts): the deployer writes its own, and the
// dashboard finds the newest with a LIST of one key and reads it only when its etag moved.
import { InputError } from "../errors.js";
import type { PublicKey, SecretKey } from "../nix/keys.js";
import { readAll } from "../store/helpers.js";
import type { ObjectInfo, ObjectStore } from "../store/object-store.js";
import { mapLimit } from "../util/pool.js";
import { type Ask, asksOpen, lastAsks, type UndoneFailure, undoneFailures } from "./fleet-asks.js";
import { timelyRolloutsStart } from "./future-rollouts.js";
import {
  formatRolloutRecord,
  isRolloutKey,
  parseRolloutRecord,
  ROLLOUT_PREFIX,
  ROLLOUT_RECORD_LIMIT,
  type RolloutRecord,
  rolloutKey,
} from "./rollout.js";
import { recordTrust } from "./rollout-signature.js";

/** Writes `record`, signed by `key` when given (the deployer's cache key). */
export async function writeRollout(
  store: ObjectStore,
  record: RolloutRecord,
  key?: SecretKey,
): Promise<void> {
  await store.put(
    rolloutKey(new Date(record.startedAt), record.id),
    formatRolloutRecord(record, key),
    {
      contentType: "application/json",
    },
  );
}

/** LIST pages a search for the newest rollouts reads at most (objects that are not records). */
const MAX_ROLLOUT_PAGES = 5;

/**
 * The newest `count` rollout records' keys and etags, newest first, of those not dated more
 * than FUTURE_SKEW after `now` (future-rollouts.ts: one dated further ahead would stay the
 * newest for good): one LIST call, unless objects that are not rollout records sort before
 * them (then more pages, at most MAX_ROLLOUT_PAGES).
 */
export async function listNewestRollouts(
  store: ObjectStore,
  count: number,
  now: number = Date.now(),
): Promise<ObjectInfo[]> {
  const found: ObjectInfo[] = [];
  let token: string | undefined;
  for (let page = 0; page < MAX_ROLLOUT_PAGES && found.length < count; page++) {
    const listed = await store.list(ROLLOUT_PREFIX, {
      limit: page === 0 ? count : 1000,
      ...(token === undefined ? { startAfter: timelyRolloutsStart(now) } : { token }),
    });
    found.push(...listed.objects.filter((o) => isRolloutKey(o.key)));
    if (listed.nextToken === undefined || listed.nextToken === token) break;
    token = listed.nextToken;
  }
  return found.slice(0, count);
}

/** A rollout record, or undefined when it is gone; a malformed one is an InputError. */
export async function readRollout(
  store: ObjectStore,
  key: string,
): Promise<RolloutRecord | undefined> {
  return (await readRecordBytes(store, key))?.record;
}

/** A record's stored bytes and the record they hold (undefined: gone; malformed: InputError). */
async function readRecordBytes(
  store: ObjectStore,
  key: string,
): Promise<{ bytes: Uint8Array; record: RolloutRecord } | undefined> {
  const where = `${store.url} ${key}`;
  const bytes = await readAll(store, key, ROLLOUT_RECORD_LIMIT).catch((err: unknown) => {
    if (err instanceof InputError)
      throw new InputError("rollout-malformed", `${where}: ${err.message}`);
    throw err;
  });
  return bytes === undefined ? undefined : { bytes, record: parseRolloutRecord(bytes, where) };
}

/** A rollout record as read (undefined: gone), and whether to believe it, or why not. */
export type WeighedRollout =
  | { readonly record: RolloutRecord; readonly trusted: true }
  | { readonly record: RolloutRecord; readonly trusted: false; readonly why: string };

/**
 * The rollout record at `key` (undefined when it is gone; malformed: InputError), weighed: to be
 * believed, one of `keys` (the fleet's cache.publicKeys) signed it, and it lies at the key its
 * own start and id make, since a signed record copied under a newer key would pass for the
 * newest rollout.
 */
export async function readWeighedRollout(
  store: ObjectStore,
  key: string,
  keys: readonly PublicKey[],
): Promise<WeighedRollout | undefined> {
  const read = await readRecordBytes(store, key);
  if (read === undefined) return undefined;
  const { bytes, record } = read;
  const trust = recordTrust(bytes, keys);
  const why = !trust.trusted
    ? trust.why
    : rolloutKey(new Date(record.startedAt), record.id) !== key
      ? "it lies at another key than its own start and id make (a signed record copied there)"
      : undefined;
  return why === undefined ? { record, trusted: true } : { record, trusted: false, why };
}

/**
 * The rollout record at `key`, believed (undefined when it is gone; see readWeighedRollout).
 * Anything else is an InputError (rollout-untrusted) that names the record and why.
 */
export async function readTrustedRollout(
  store: ObjectStore,
  key: string,
  keys: readonly PublicKey[],
): Promise<RolloutRecord | undefined> {
  const weighed = await readWeighedRollout(store, key, keys);
  if (weighed === undefined) return undefined;
  if (!weighed.trusted) throw untrustedRollout(store, key, weighed);
  return weighed.record;
}

/** The refusal (InputError rollout-untrusted) of a record weighed and not believed. */
export function untrustedRollout(
  store: ObjectStore,
  key: string,
  weighed: WeighedRollout & { readonly trusted: false },
): InputError {
  return new InputError(
    "rollout-untrusted",
    `rollout ${weighed.record.id}'s record (${store.url} ${key}) is not to be believed: ${weighed.why}; anyone who can write the store could have put it there`,
    {
      hint: "a deploy signs its record with the cache key it pushes with (--key); a record written before records were signed, by a deploy without --key, or signed by a key cache.publicKeys no longer lists cannot be undone by id: send hosts back with 'rollback --on SELECTOR' (--to GENERATION). A key rotated (not leaked) may be listed again for the undo (docs/keys.md)",
    },
  );
}

/** Rollout records read at a time, newest first, for the fleet's last ask of each host. */
export const ASK_ROLLOUTS = 20;
/** Rollout records read at most for the fleet's last ask of each host. */
export const ASK_LOOKBACK = 200;
/**
 * Bytes of rollout records read at most for the asks, by the sizes the listing gives: a record
 * may be 8 MiB (ROLLOUT_RECORD_LIMIT) and costs about 1.6 times its size while it is kept
 * parsed, so 200 of them would cost a view gigabytes and seconds. A fleet of 10,000 hosts
 * writes records of about 1.5 MB: this reads the newest 40 of those.
 */
export const ASK_BYTES = 64 * 1024 * 1024;

/**
 * The bytes of rollout records a reader of the newest may still take, by the sizes the listing
 * gives: the first record is always taken, and the read ends before one that would pass `bytes`.
 */
export class RecordBudget {
  #spent = 0;
  #taken = 0;
  constructor(private readonly bytes: number = ASK_BYTES) {}

  /** Whether a record of `size` bytes is to be read (then it is counted). */
  take(size: number): boolean {
    if (this.#taken > 0 && this.#spent + size > this.bytes) return false;
    this.#spent += size;
    this.#taken++;
    return true;
  }

  /** The records taken. */
  get taken(): number {
    return this.#taken;
  }
}

/** What the fleet last asked of hosts, and of which hosts the records read could not tell. */
export interface AsksRead {
  /** Each host's last ask (fleet-asks.ts). */
  readonly asks: Map<string, Ask>;
  /**
   * Hosts with a record of their own older than the oldest rollout read, which none of the
   * ASK_LOOKBACK newest rollouts asks anything of: an older rollout may have left them behind.
   */
  readonly unjudged: string[];
  /** Each host's failure in a rollout a rollback among the records read undid. */
  readonly undone: ReadonlyMap<string, UndoneFailure>;
  /** The records read, newest first. */
  readonly records: { readonly key: string; readonly record: RolloutRecord }[];
  /**
   * Records passed over as not to be believed (DisbelievedRollout), newest first: they ask
   * nothing, and supersede or undo nothing.
   */
  readonly disbelieved: readonly DisbelievedRollout[];
  /** How many records were listed to be read (those read, and any gone since the listing). */
  readonly lookedBack: number;
}

/**
 * A rollout record read for the asks and not believed (readWeighedRollout): unsigned, signed
 * by a key cache.publicKeys does not list, or copied to another key. Anyone who can write the
 * store could have put it there, so it could clear a signed rollout's "behind".
 */
export interface DisbelievedRollout {
  readonly key: string;
  readonly id: string;
  readonly why: string;
}

/** A record read for the asks: believed, passed over (not believed), or gone (undefined). */
export type AskedRecord =
  | { readonly key: string; readonly record: RolloutRecord }
  | { readonly key: string; readonly disbelieved: DisbelievedRollout }
  | undefined;

/** Where the rollout records come from: listed newest first, each read (undefined: gone). */
export interface RolloutSource {
  list(count: number): Promise<ObjectInfo[]>;
  read(info: ObjectInfo): Promise<AskedRecord>;
}

/**
 * What the fleet last asked of each of `hosts`: the newest ASK_ROLLOUTS rollout records, then
 * older ones, ASK_ROLLOUTS at a time, while a host is open (asksOpen: no ask yet, and no record
 * of its own, `since`, newer than the records read), up to ASK_LOOKBACK records and ASK_BYTES
 * of them (`bytes`).
 */
export async function readAsksBack(
  source: RolloutSource,
  hosts: readonly string[],
  since: ReadonlyMap<string, string>,
  now: Date = new Date(),
  bytes: number = ASK_BYTES,
): Promise<AsksRead> {
  const read: { key: string; record: RolloutRecord }[] = [];
  const disbelieved: DisbelievedRollout[] = [];
  if (hosts.length === 0) {
    return {
      asks: new Map(),
      unjudged: [],
      undone: new Map(),
      records: read,
      disbelieved,
      lookedBack: 0,
    };
  }
  const seen = new Set<string>();
  const budget = new RecordBudget(bytes);
  let count = ASK_ROLLOUTS;
  let listed = await source.list(count);
  for (;;) {
    const unseen = listed.filter((o) => !seen.has(o.key)).slice(0, ASK_ROLLOUTS);
    // The budget ends the read before a record past it (the first record is always read).
    const batch: ObjectInfo[] = [];
    for (const o of unseen) {
      if (!budget.take(o.size)) break;
      seen.add(o.key);
      batch.push(o);
    }
    const found = await mapLimit(batch, 4, (o) => source.read(o));
    for (const r of found) {
      if (r === undefined) continue;
      if ("disbelieved" in r) disbelieved.push(r.disbelieved);
      else read.push(r);
    }
    // Newest first (keys sort so), though a record started since the first listing comes later.
    read.sort(byKey);
    disbelieved.sort(byKey);
    const asks = lastAsks(read, hosts, now);
    const open = asksOpen(read, asks, hosts, since);
    const more = listed.some((o) => !seen.has(o.key));
    const undone = undoneFailures(read);
    const lookedBack = seen.size;
    if (open.length === 0 || (!more && listed.length < count)) {
      return { asks, unjudged: [], undone, records: read, disbelieved, lookedBack };
    }
    if (batch.length < unseen.length || (!more && count >= ASK_LOOKBACK)) {
      const unjudged = open.filter((h) => since.has(h));
      return { asks, unjudged, undone, records: read, disbelieved, lookedBack };
    }
    if (!more) {
      count = ASK_LOOKBACK;
      listed = await source.list(count);
    }
  }
}

function byKey(a: { readonly key: string }, b: { readonly key: string }): number {
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

/**
 * A rollout record for the asks (undefined when it is gone or malformed): only one `keys` (the
 * fleet's cache.publicKeys) signed, at its own key, is believed.
 */
export async function readAskedRecord(
  store: ObjectStore,
  key: string,
  keys: readonly PublicKey[],
): Promise<AskedRecord> {
  const weighed = await readWeighedRollout(store, key, keys).catch((err: unknown) => {
    if (err instanceof InputError) return undefined;
    throw err;
  });
  if (weighed === undefined) return undefined;
  if (!weighed.trusted) {
    return { key, disbelieved: { key, id: weighed.record.id, why: weighed.why } };
  }
  return { key, record: weighed.record };
}

/**
 * What the fleet last asked of each of `hosts` (readAsksBack), read once from `store`,
 * believing only records `keys` signed.
 */
export async function readLastAsks(
  store: ObjectStore,
  hosts: readonly string[],
  keys: readonly PublicKey[],
  since: ReadonlyMap<string, string> = new Map(),
): Promise<AsksRead> {
  return readAsksBack(
    {
      list: (count) => listNewestRollouts(store, count),
      read: ({ key }) => readAskedRecord(store, key, keys),
    },
    hosts,
    since,
  );
}

/**
 * One warning for the records the asks passed over, naming the first few and why: they ask
 * nothing of hosts, so a host one names is judged by the believed rollouts alone.
 */
export function disbelievedWarning(disbelieved: readonly DisbelievedRollout[]): string | undefined {
  if (disbelieved.length === 0) return undefined;
  const shown = disbelieved.slice(0, 3).map((d) => `${d.id} (${d.why})`);
  const more = disbelieved.length > 3 ? ` and ${disbelieved.length - 3} more` : "";
  return `rollout records not to be believed were passed over: ${shown.join(", ")}${more}; they ask nothing of their hosts (anyone who can write the store could have put them there): a deploy signs its record with the cache key it pushes with, and a key rotated (not leaked) may be listed in cache.publicKeys again (docs/keys.md)`;
}

/** LIST pages a search for one rollout by its id reads at most (1,000 records a page). */
const MAX_FIND_PAGES = 50;

/** The key of the rollout record whose id is `id`, or undefined when none is found. */
export async function findRolloutKey(store: ObjectStore, id: string): Promise<string | undefined> {
  return (await findRolloutAndNewer(store, id, 0))?.key;
}

/**
 * The key of the rollout record whose id is `id` (undefined when none is found), and the keys
 * of the records started after it, newest first: at most `newer`, `more` when there are others.
 */
export async function findRolloutAndNewer(
  store: ObjectStore,
  id: string,
  newer: number,
): Promise<{ key: string; newer: string[]; more: boolean } | undefined> {
  const before: string[] = [];
  let more = false;
  let token: string | undefined;
  for (let page = 0; page < MAX_FIND_PAGES; page++) {
    const listed = await store.list(ROLLOUT_PREFIX, {
      limit: 1000,
      ...(token === undefined ? {} : { token }),
    });
    for (const o of listed.objects) {
      if (!isRolloutKey(o.key)) continue;
      if (o.key.endsWith(`-${id}.json`)) {
        return { key: o.key, newer: before, more };
      }
      if (before.length < newer) before.push(o.key);
      else more = true;
    }
    if (listed.nextToken === undefined || listed.nextToken === token) return undefined;
    token = listed.nextToken;
  }
  return undefined;
}
