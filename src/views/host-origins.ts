// Who put each host's system there and from what source, for the status view: a
// host's record names what put it there (a rollout record, a release, a rollback), and this
// reads each distinct one once (a rollout record within its size limit, trusted only when a
// cache key signed it; a release's origin document, trusted only when a release key signed it
// for that release's digest).
import { NixshipError } from "../errors.js";
import type { PublicKey } from "../nix/keys.js";
import type { OriginSource } from "../release/release-origin.js";
import { trustedHead } from "../release/release-sign.js";
import { readRelease, readReleaseOrigin } from "../release/release-store.js";
import { readHostEntries } from "../release/shard-store.js";
import type { RolloutRecord } from "../status/rollout.js";
import { readWeighedRollout } from "../status/rollout-store.js";
import type { KnownOrigin, StatusRecord } from "../status/status.js";
import type { ObjectStore } from "../store/object-store.js";
import { mapLimit } from "../util/pool.js";

/** Rollout records and release origins read at once. */
const ORIGIN_READS = 8;
/** Origins a kept cache holds before it starts again (a dashboard runs for months). */
const CACHE_LIMIT = 1000;

/** Who put a host's system there and from what, as a view shows it. */
export interface ShownOrigin {
  readonly kind: KnownOrigin["kind"];
  /** The rollout's id, or the release as CHANNEL/SEQ (null for a rollback). */
  readonly ref: string | null;
  /** A CI run or user@machine; null: not known (see problem). */
  readonly by: string | null;
  readonly sources: readonly OriginSource[];
  /** Why who and what cannot be told (record gone, unreadable, origin untrusted); else null. */
  readonly problem: string | null;
  /** A rollout that was a rollback: the rollout it undid. */
  readonly undoes?: string;
}

/**
 * What put the system a record names there: the record's word (none when it says it does not
 * know), else (a record of an agent older than that word) the release it applied, when it
 * reported success and runs that release's system.
 */
export function originOfRecord(record: StatusRecord): KnownOrigin | undefined {
  if (record.origin !== undefined) {
    return record.origin.kind === "unknown" ? undefined : record.origin;
  }
  if (
    record.mode === "agent" &&
    record.state === "success" &&
    record.channel !== null &&
    record.seq !== null &&
    record.current !== null &&
    record.current === record.desired
  ) {
    return { kind: "release", channel: record.channel, seq: record.seq };
  }
  return undefined;
}

function refOf(origin: KnownOrigin): string {
  switch (origin.kind) {
    case "rollout":
      return `rollout ${origin.key}`;
    case "release":
      return `release ${origin.channel}/${origin.seq}`;
    case "rollback":
      return `rollback ${origin.by}`;
  }
}

/**
 * An origin as read: as shown, and for each host whose record named it when it was read, the
 * systems it may run by that origin's word (what the rollout gave it, or what it ran before a
 * rollout that took it back; what the release gave it). Undefined for a rollback, which has no
 * record of its own, and for an origin not to be believed.
 */
interface ReadOrigin {
  readonly shown: ShownOrigin;
  readonly gave: ReadonlyMap<string, readonly string[]> | undefined;
}

/**
 * Origins read before, by what names them: give the same one to each view (a dashboard). One
 * that could not be told (a record gone, a fault) is asked again once PROBLEM_RETRY_MS passed,
 * so that a quiet poll costs no GET however many hosts name such an origin; one read before a
 * host's record named it is read again for that host.
 */
export type OriginCache = Map<string, ReadOrigin & { readonly askAgainAt?: number }>;

/** Milliseconds before an origin that could not be told is asked again. */
export const PROBLEM_RETRY_MS = 5 * 60_000;

/** The keys an origin is believed on. */
export interface OriginKeys {
  /** The fleet's release keys (undefined: none, so no release origin is believed). */
  readonly release: readonly PublicKey[] | undefined;
  /** The fleet's cache.publicKeys, which sign rollout records (rollout-signature.ts). */
  readonly rollout: readonly PublicKey[];
}

/**
 * Each record's origin as shown, by host: every distinct rollout record and release origin
 * among `records` read once (ORIGIN_READS at once), or taken from `cache`; who and what only
 * from a record or origin document `keys` signed (anyone who can write the store could have
 * written another).
 */
export async function readHostOrigins(
  store: ObjectStore,
  records: ReadonlyMap<string, StatusRecord>,
  keys: OriginKeys,
  cache: OriginCache = new Map(),
  now: number = Date.now(),
): Promise<Map<string, ShownOrigin>> {
  // Every host whose record names an origin, by the origin (each read once, for all of them).
  const naming = new Map<string, { origin: KnownOrigin; hosts: string[] }>();
  for (const [host, record] of records) {
    const origin = originOfRecord(record);
    if (origin === undefined) continue;
    const ref = refOf(origin);
    const named = naming.get(ref) ?? { origin, hosts: [] };
    named.hosts.push(host);
    naming.set(ref, named);
  }
  const known = (ref: string, hosts: readonly string[]) => {
    const hit = cache.get(ref);
    return (
      hit !== undefined &&
      (hit.askAgainAt === undefined || hit.askAgainAt > now) &&
      (hit.gave === undefined || hosts.every((h) => hit.gave?.has(h)))
    );
  };
  const wanted = [...naming].filter(([ref, { hosts }]) => !known(ref, hosts));
  if (cache.size + wanted.length > CACHE_LIMIT || gaveHeld(cache) > GAVE_LIMIT) cache.clear();
  const fresh = new Map<string, ReadOrigin>();
  await mapLimit(wanted, ORIGIN_READS, async ([ref, { origin, hosts }]) => {
    const read = await readOrigin(store, origin, keys, hosts);
    fresh.set(ref, read);
    // What could not be told is asked again later (a record written late, a fault).
    cache.set(
      ref,
      read.shown.problem === null ? read : { ...read, askAgainAt: now + PROBLEM_RETRY_MS },
    );
  });
  const byHost = new Map<string, ShownOrigin>();
  for (const [host, record] of records) {
    const origin = originOfRecord(record);
    if (origin === undefined) continue;
    const read = fresh.get(refOf(origin)) ?? cache.get(refOf(origin));
    if (read !== undefined) byHost.set(host, boundToHost(read, host, record));
  }
  return byHost;
}

/** Hosts' systems the cache holds past which it starts again (a few MB). */
const GAVE_LIMIT = 100_000;

function gaveHeld(cache: OriginCache): number {
  let held = 0;
  for (const { gave } of cache.values()) held += gave?.size ?? 0;
  return held;
}

/**
 * The origin as shown for one host: believed only when it gave the host the system its record
 * says it runs (a boot's record: the one it boots next). A host's record is its own word (an
 * agent writes it), so one that names a signed rollout or release which never gave it that
 * system is shown with the problem, not as put there by it.
 */
function boundToHost(read: ReadOrigin, host: string, record: StatusRecord): ShownOrigin {
  const { shown, gave } = read;
  if (shown.problem !== null || gave === undefined) return shown;
  const systems = gave.get(host) ?? [];
  const runs = record.action === "boot" ? record.desired : record.current;
  if (runs !== null && systems.includes(runs)) return shown;
  const what = shown.kind === "rollout" ? "its rollout record" : "its release";
  return {
    kind: shown.kind,
    ref: shown.ref,
    by: null,
    sources: [],
    problem:
      systems.length === 0
        ? `${what} does not name this host`
        : `${what} gave this host another system than the one its record says it runs`,
  };
}

async function readOrigin(
  store: ObjectStore,
  origin: KnownOrigin,
  keys: OriginKeys,
  hosts: readonly string[],
): Promise<ReadOrigin> {
  const releaseKeys = keys.release;
  const problem = (ref: string | null, why: string): ReadOrigin => ({
    shown: { kind: origin.kind, ref, by: null, sources: [], problem: why },
    gave: undefined,
  });
  switch (origin.kind) {
    case "rollback":
      return {
        shown: { kind: "rollback", ref: null, by: origin.by, sources: [], problem: null },
        gave: undefined,
      };
    case "rollout": {
      const id = /-([0-9a-f]+)\.json$/.exec(origin.key)?.[1] ?? origin.key;
      try {
        const read = await readWeighedRollout(store, origin.key, keys.rollout);
        if (read === undefined) return problem(id, `its rollout record ${origin.key} is gone`);
        if (!read.trusted) {
          return problem(id, `its rollout record is not to be believed: ${read.why}`);
        }
        const { record } = read;
        if (record.by === undefined) return problem(id, "its rollout record names nobody");
        return {
          shown: {
            kind: "rollout",
            ref: id,
            by: record.by,
            sources: record.sources ?? [],
            problem: null,
            ...(record.undoes === undefined ? {} : { undoes: record.undoes }),
          },
          gave: rolloutGave(record, hosts),
        };
      } catch (err) {
        if (!(err instanceof NixshipError)) throw err;
        return problem(id, `its rollout record is unreadable: ${err.message}`);
      }
    }
    case "release": {
      const ref = `${origin.channel}/${origin.seq}`;
      if (releaseKeys === undefined) {
        return problem(ref, "the fleet file lists no releases.publicKeys to check its origin");
      }
      try {
        const read = await readRelease(store, origin.channel, origin.seq);
        if (read.status === "absent") return problem(ref, "its release file is gone");
        const check = await readReleaseOrigin(store, origin, read.bytes, releaseKeys);
        if (check.status === "none") return problem(ref, "its release names nobody");
        if (check.status === "untrusted") {
          return problem(ref, `its release's origin is not to be believed: ${check.problem}`);
        }
        // The origin signs the release's digest: the release is what its signer published.
        const head = trustedHead(read.bytes, releaseKeys, `${origin.channel}/${origin.seq}`);
        if (head === undefined) return problem(ref, "its release is not to be believed");
        const entries = await readHostEntries(store, head, hosts);
        const gave = new Map(
          hosts.map((h) => {
            const path = entries.get(h)?.path;
            return [h, path === undefined ? [] : [path]] as const;
          }),
        );
        return {
          shown: { kind: "release", ref, by: check.by, sources: check.sources, problem: null },
          gave,
        };
      } catch (err) {
        if (!(err instanceof NixshipError)) throw err;
        return problem(ref, `its release is unreadable: ${err.message}`);
      }
    }
  }
}

/**
 * What `record` gave each of `hosts`: the system of its entry, and what the host ran before
 * where the rollout took it back; nothing for a host it does not name.
 */
function rolloutGave(
  record: RolloutRecord,
  hosts: readonly string[],
): Map<string, readonly string[]> {
  const wanted = new Set(hosts);
  const gave = new Map<string, readonly string[]>(hosts.map((h) => [h, []]));
  const entries = [...record.waves.flatMap((w) => w.hosts), ...(record.skipped ?? [])];
  for (const entry of entries) {
    if (!wanted.has(entry.host)) continue;
    const back = entry.state === "rolled-back" || entry.state === "failed";
    const systems = [entry.system, back ? entry.before : null].filter(
      (s): s is string => typeof s === "string",
    );
    gave.set(entry.host, [...(gave.get(entry.host) ?? []), ...systems]);
  }
  return gave;
}
