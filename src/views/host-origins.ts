// Who put each host's system there and from what source, for the status view: a
// host's record names what put it there (a rollout record, a release, a rollback), and this
// reads each distinct one once (a rollout record within its size limit, trusted only when a
// cache key signed it; a release's origin document, trusted only when a release key signed it
// for that release's digest).
import { NixshipError } from "../errors.js";
import type { PublicKey } from "../nix/keys.js";
import type { OriginSource } from "../release/release-origin.js";
import { readRelease, readReleaseOrigin } from "../release/release-store.js";
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
 * Origins read before, by what names them: give the same one to each view (a dashboard). One
 * that could not be told (a record gone, a fault) is asked again once PROBLEM_RETRY_MS passed,
 * so that a quiet poll costs no GET however many hosts name such an origin.
 */
export type OriginCache = Map<
  string,
  { readonly shown: ShownOrigin; readonly askAgainAt?: number }
>;

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
  const wanted = new Map<string, KnownOrigin>();
  const known = (ref: string) => {
    const hit = cache.get(ref);
    return hit !== undefined && (hit.askAgainAt === undefined || hit.askAgainAt > now);
  };
  for (const record of records.values()) {
    const origin = originOfRecord(record);
    if (origin !== undefined && !known(refOf(origin))) wanted.set(refOf(origin), origin);
  }
  if (cache.size + wanted.size > CACHE_LIMIT) cache.clear();
  const fresh = new Map<string, ShownOrigin>();
  await mapLimit([...wanted], ORIGIN_READS, async ([ref, origin]) => {
    const shown = await readOrigin(store, origin, keys);
    fresh.set(ref, shown);
    // What could not be told is asked again later (a record written late, a fault).
    cache.set(
      ref,
      shown.problem === null ? { shown } : { shown, askAgainAt: now + PROBLEM_RETRY_MS },
    );
  });
  const byHost = new Map<string, ShownOrigin>();
  for (const [host, record] of records) {
    const origin = originOfRecord(record);
    if (origin === undefined) continue;
    const shown = fresh.get(refOf(origin)) ?? cache.get(refOf(origin))?.shown;
    if (shown !== undefined) byHost.set(host, shown);
  }
  return byHost;
}

async function readOrigin(
  store: ObjectStore,
  origin: KnownOrigin,
  keys: OriginKeys,
): Promise<ShownOrigin> {
  const releaseKeys = keys.release;
  const problem = (ref: string | null, why: string): ShownOrigin => ({
    kind: origin.kind,
    ref,
    by: null,
    sources: [],
    problem: why,
  });
  switch (origin.kind) {
    case "rollback":
      return { kind: "rollback", ref: null, by: origin.by, sources: [], problem: null };
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
          kind: "rollout",
          ref: id,
          by: record.by,
          sources: record.sources ?? [],
          problem: null,
          ...(record.undoes === undefined ? {} : { undoes: record.undoes }),
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
        return { kind: "release", ref, by: check.by, sources: check.sources, problem: null };
      } catch (err) {
        if (!(err instanceof NixshipError)) throw err;
        return problem(ref, `its release is unreadable: ${err.message}`);
      }
    }
  }
}
