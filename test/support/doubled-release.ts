// A signed, sharded release that names one host twice (in its own shard and in another), put in
// a store as a publisher would put it: what nixship's publisher refuses to write, made here by
// hand to check that each reader and the agent refuse it.
import type { SecretKey } from "../../src/nix/keys.js";
import type { StorePath } from "../../src/nix/store-path.js";
import {
  headOf,
  type Release,
  type SignedHead,
  type StoredShard,
  shardCount,
} from "../../src/release/release.js";
import { canonicalJson, releaseDigest } from "../../src/release/release-canonical.js";
import { shardIndex } from "../../src/release/release-shard.js";
import { formatShardedHead } from "../../src/release/release-sign.js";
import { channelKey, releaseKey } from "../../src/release/release-store.js";
import { putShards } from "../../src/release/shard-store.js";
import type { ObjectStore } from "../../src/store/object-store.js";

/** Release 1 of channel prod, a deploy naming `count` hosts web-0, web-1, … each with `path`. */
export function releaseOfWebHosts(path: StorePath, count = 300): Release {
  return {
    version: 1,
    channel: "prod",
    seq: 1,
    created: "2026-11-21T10:00:00.000Z",
    expires: "2026-11-28T10:00:00.000Z",
    previous: null,
    kind: "deploy",
    action: "switch",
    health: { http: [], commands: [] },
    confirmTimeout: 30,
    hosts: Object.fromEntries(Array.from({ length: count }, (_, i) => [`web-${i}`, { path }])),
  };
}

export interface DoubledRelease {
  readonly head: SignedHead;
  readonly shards: readonly StoredShard[];
  /** The host named twice, its own shard, and the other shard that names it too. */
  readonly host: string;
  readonly own: number;
  readonly other: number;
}

/**
 * `release` (more than 256 hosts) signed with `key` in shards where `host` is named in its own
 * shard and also in shard `other` (default: the next one); with `store`, its shards, release
 * file and channel are written there.
 */
export async function doubledRelease(
  release: Release,
  key: SecretKey,
  host: string,
  options: { readonly other?: number; readonly store?: ObjectStore } = {},
): Promise<DoubledRelease> {
  const entry = release.hosts[host];
  if (entry === undefined) throw new Error(`the release does not name ${host}`);
  const count = shardCount(Object.keys(release.hosts).length);
  const own = shardIndex(host, count);
  const other = options.other ?? (own + 1) % count;
  const split: Record<string, Release["hosts"][string]>[] = Array.from(
    { length: count },
    () => ({}),
  );
  for (const [name, e] of Object.entries(release.hosts)) {
    (split[shardIndex(name, count)] as Record<string, Release["hosts"][string]>)[name] = e;
  }
  (split[other] as Record<string, Release["hosts"][string]>)[host] = entry;
  const shards = split.map((hosts, index): StoredShard => {
    const text = `${canonicalJson({ channel: release.channel, count, hosts, index, seq: release.seq, version: 2 })}\n`;
    const bytes = new Uint8Array(Buffer.from(text));
    return { index, digest: releaseDigest(bytes), hosts: Object.keys(hosts).length, bytes };
  });
  const head = formatShardedHead(headOf(release), shards, key);
  const { store } = options;
  if (store !== undefined) {
    await putShards(store, release.channel, release.seq, shards);
    await store.put(releaseKey(release.channel, release.seq), head.bytes);
    await store.put(channelKey(release.channel), head.bytes);
  }
  return { head, shards, host, own, other };
}
