// The shards of sharded releases in an ObjectStore: `release-shards/<channel>/<seq>/<index>-<hex>.json`
// (hex: the sha256 of the shard's bytes), written before the release file that names them and
// never replaced. They sit outside `releases/`, so that listing a channel's releases never pages
// through shards. Each read is bounded and checked against the digest the release signs.
import { InputError } from "../errors.js";
import type { PublicKey } from "../nix/keys.js";
import { readBody } from "../store/helpers.js";
import type { ObjectStore } from "../store/object-store.js";
import { mapLimit } from "../util/pool.js";
import {
  type ParsedHead,
  type ParsedRelease,
  parseReleaseHead,
  type ReleaseHost,
  type SignedHead,
  type SignedRelease,
  type StoredShard,
  verifyReleaseHead,
} from "./release.js";
import { joinShards, parseShard, shardIndex } from "./release-shard.js";

export const SHARDS_PREFIX = "release-shards/";
/**
 * The most bytes read of one shard: SHARD_HOSTS entries, with room for hosts the hash put in one
 * shard beyond its share and for entries with checks of their own.
 */
export const SHARD_MAX_BYTES = 8 * 1024 * 1024;
/** Shards read or written at once. */
const SHARD_CONCURRENCY = 8;

/** Where shard `index` of release `seq` of `channel`, with that digest (SRI), is kept. */
export function shardKey(channel: string, seq: number, index: number, digest: string): string {
  const hex = Buffer.from(digest.slice("sha256-".length), "base64").toString("hex");
  return `${SHARDS_PREFIX}${channel}/${seq}/${index}-${hex}.json`;
}

/** The key of each shard a release file names, in order of index. */
export function shardKeys(head: Pick<ParsedHead, "head" | "shards">): string[] {
  const { channel, seq } = head.head;
  return head.shards.map((ref, index) => shardKey(channel, seq, index, ref.digest));
}

/**
 * Stores the shards of a release about to be published. The keys hold the digests, so a put
 * over an existing key (a racing publisher's identical shard) writes the same bytes.
 */
export async function putShards(
  store: ObjectStore,
  channel: string,
  seq: number,
  shards: readonly StoredShard[],
): Promise<void> {
  await mapLimit(shards, SHARD_CONCURRENCY, async (shard) => {
    await store.put(shardKey(channel, seq, shard.index, shard.digest), shard.bytes, {
      contentType: "application/json",
    });
  });
}

/** The bytes of one shard the release file names (bounded); release-shard-missing if absent. */
export async function readShardBytes(
  store: ObjectStore,
  head: Pick<ParsedHead, "head" | "shards">,
  index: number,
): Promise<Uint8Array> {
  const key = shardKeys(head)[index];
  if (key === undefined) throw new RangeError(`release has no shard ${index}`);
  const got = await store.get(key);
  if (got === undefined) {
    const { channel, seq } = head.head;
    throw new InputError(
      "release-shard-missing",
      `${key}: shard ${index} of release ${seq} of channel ${channel} is missing from ${store.url}`,
      {
        hint: "a release's shards are stored before the release; someone removed it: publish a new release",
      },
    );
  }
  return new Uint8Array(await readBody(got.body, key, SHARD_MAX_BYTES));
}

/**
 * The release whole: a release file of version 1 as it is; a sharded one with every shard read
 * (8 at once) and checked against its digest. Fails with release-shard-missing or
 * release-shard-mismatch (or release-malformed), naming the shard's key and the release.
 */
export async function readShards<T extends ParsedHead>(
  store: ObjectStore,
  head: T,
): Promise<T extends SignedHead ? SignedRelease : ParsedRelease> {
  const indexes = head.shards.map((_, index) => index);
  const bytes = await mapLimit(indexes, SHARD_CONCURRENCY, (index) =>
    readShardBytes(store, head, index),
  );
  return joinShards(head, bytes, shardKeys(head));
}

/**
 * One host's entry in a verified release file, reading at most its own shard (one GET): what an
 * agent needs of a release. Undefined: the release does not name the host.
 */
export async function readHostEntry(
  store: ObjectStore,
  head: SignedHead,
  host: string,
): Promise<ReleaseHost | undefined> {
  if (head.hosts !== undefined) return head.hosts[host];
  const index = shardIndex(host, head.shards.length);
  const bytes = await readShardBytes(store, head, index);
  return parseShard(bytes, head, index, shardKeys(head)[index] as string, { only: host })[host];
}

/** A release file's bytes (`source`: where they were read) parsed, with its shards joined. */
export async function loadRelease(
  store: ObjectStore,
  bytes: Uint8Array,
  source: string,
): Promise<ParsedRelease> {
  return readShards(store, parseReleaseHead(bytes, source));
}

/**
 * A release file's bytes verified against `keys`, then its shards read and joined: a head that
 * no trusted key signed is refused before any shard is read.
 */
export async function loadVerifiedRelease(
  store: ObjectStore,
  bytes: Uint8Array,
  keys: readonly PublicKey[],
  source: string,
): Promise<SignedRelease> {
  return readShards(store, verifyReleaseHead(bytes, keys, source));
}

/**
 * As loadVerifiedRelease, but undefined for what no host would follow (malformed, unsigned,
 * untrusted, tampered, or a shard missing or changed): a reader passing over it.
 */
export async function loadTrustedRelease(
  store: ObjectStore,
  bytes: Uint8Array,
  keys: readonly PublicKey[],
  source: string,
): Promise<SignedRelease | undefined> {
  try {
    return await loadVerifiedRelease(store, bytes, keys, source);
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    return undefined;
  }
}
