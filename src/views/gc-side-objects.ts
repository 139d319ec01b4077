// The objects beside the cache's own that a collection judges by what the fleet's releases say
// (gc-plan.ts, SideObject): hosts' secrets bundles, named while a release the collection reads
// names them, and release shards, named by their release's file (while it is there, for one not
// read). Found by LIST:
// `secrets/` and `release-shards/`, a page per 1,000 keys. Keys of another shape are no one's
// to judge, and are left alone.
import type { SideObject } from "../cache/gc-plan.js";
import { SHARDS_PREFIX } from "../release/shard-store.js";
import { listAll } from "../store/helpers.js";
import type { ObjectInfo, ObjectStore } from "../store/object-store.js";

const BUNDLE_KEY = /^secrets\/[^/]+\/[0-9a-f]{64}$/;
const SHARD_KEY = /^release-shards\/([^/]+)\/([1-9][0-9]*)\/[^/]+$/;

export interface NamedBySide {
  /** The key of every bundle a release read names; undefined: not all releases read, keep every one. */
  readonly bundles: ReadonlySet<string> | undefined;
  /** Each channel's release numbers that have a file. */
  readonly releases: ReadonlyMap<string, readonly number[]>;
  /**
   * The releases read whole (`channel/seq`), and the keys of their shards: another shard under
   * such a number is a publisher's that lost it (to a race, or by dying before its file), the
   * number since reused. Under a number with a file not read, every shard is kept.
   */
  readonly shards: { readonly read: ReadonlySet<string>; readonly keys: ReadonlySet<string> };
}

/** The secrets bundles and release shards in the store, and whether each is named. */
export async function readSideObjects(
  store: ObjectStore,
  named: NamedBySide,
): Promise<SideObject[]> {
  const found: SideObject[] = [];
  const object = (info: ObjectInfo) => ({
    key: info.key,
    size: info.size,
    modified: info.lastModified.getTime(),
  });
  for await (const info of listAll(store, "secrets/")) {
    if (!BUNDLE_KEY.test(info.key)) continue;
    const isNamed = named.bundles === undefined || named.bundles.has(info.key);
    found.push({ kind: "bundle", object: object(info), named: isNamed });
  }
  const filed = new Map([...named.releases].map(([c, seqs]) => [c, new Set(seqs)]));
  for await (const info of listAll(store, SHARDS_PREFIX)) {
    const [, channel, seq] = SHARD_KEY.exec(info.key) ?? [];
    if (channel === undefined || seq === undefined) continue;
    const read = named.shards.read.has(`${channel}/${seq}`);
    const isNamed = read
      ? named.shards.keys.has(info.key)
      : filed.get(channel)?.has(Number(seq)) === true;
    found.push({ kind: "shard", object: object(info), named: isNamed });
  }
  return found;
}
