// The shards of sharded releases in an ObjectStore: `release-shards/<channel>/<seq>/<index>-<hex>.json`
// (hex: the sha256 of the shard's bytes), written before the release file that names them and
// never replaced. They sit outside `releases/`, so that listing a channel's releases never pages
// through shards. Each read is bounded and checked against the digest the release signs.
import { InputError } from "../errors.js";
import type { PublicKey } from "../nix/keys.js";
import { readBody } from "../store/helpers.js";
import type { ObjectStore } from "../store/object-store.js";
import { mapLimit } from "../util/pool.js";
import type {
  ParsedHead,
  ParsedRelease,
  Release,
  ReleaseHost,
  ShardRef,
  SignedHead,
  SignedRelease,
  StoredShard,
} from "./release.js";
import { parseReleaseHead } from "./release-parse.js";
import { joined, parseShard, shardIndex } from "./release-shard.js";
import { verifyReleaseHead } from "./release-sign.js";

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

/** The key of each shard of a release read whole (none for an unsharded one). */
export function storedShardKeys(parsed: ParsedRelease): string[] {
  const { channel, seq } = parsed.release;
  return (parsed.shards ?? []).map((s) => shardKey(channel, seq, s.index, s.digest));
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
 * Every shard of a sharded release read (8 at once) and checked by parseShard: its digest, its
 * fields and count, its layout (checkShardLayout) and every entry. The one reading every full
 * reader gives a sharded release (`release show`, `cache gc`, the dashboard, the deployer's
 * reads of releases; an agent reads its own shard only, readHostEntry): `visit` gets each
 * shard's entries once checked, so a reader keeps only what it needs of them. What fails is
 * refused with the error of the lowest-numbered shard that fails, whatever order the reads end
 * in, so every full reader gives the same one: release-shard-missing, release-shard-mismatch,
 * release-host-twice or release-malformed, naming the shard's key and the release.
 */
export async function visitShards(
  store: ObjectStore,
  head: Pick<ParsedHead, "head" | "shards">,
  visit: (index: number, hosts: Release["hosts"], bytes: Uint8Array) => void,
): Promise<void> {
  const keys = shardKeys(head);
  const failures = new Map<number, unknown>();
  // Past a failure only the shards before it are read: one of them may fail first.
  let lowest = keys.length;
  await mapLimit(
    keys.map((_, index) => index),
    SHARD_CONCURRENCY,
    async (index) => {
      if (index > lowest) return;
      try {
        const bytes = await readShardBytes(store, head, index);
        visit(index, parseShard(bytes, head, index, keys[index] as string), bytes);
      } catch (err) {
        failures.set(index, err);
        lowest = Math.min(lowest, index);
      }
    },
  );
  if (failures.size > 0) throw failures.get(lowest);
}

/**
 * The release whole: a release file of version 1 as it is; a sharded one with every shard read
 * and checked (visitShards).
 */
export async function readShards<T extends ParsedHead>(
  store: ObjectStore,
  head: T,
): Promise<T extends SignedHead ? SignedRelease : ParsedRelease> {
  type Out = T extends SignedHead ? SignedRelease : ParsedRelease;
  if (head.hosts !== undefined) return joined(head, head.hosts, []) as Out;
  const parts: { hosts: Release["hosts"]; shard: StoredShard }[] = [];
  await visitShards(store, head, (index, hosts, bytes) => {
    const { digest, hosts: count } = head.shards[index] as ShardRef;
    parts[index] = { hosts, shard: { index, digest, hosts: count, bytes } };
  });
  const hosts: Record<string, ReleaseHost> = {};
  for (const part of parts) Object.assign(hosts, part.hosts);
  return joined(
    head,
    hosts,
    parts.map((p) => p.shard),
  ) as Out;
}

/**
 * Checks a sharded release's shards as every reader does (visitShards), keeping none of their
 * entries: what a reader that shows a release, not its hosts, needs to say whether agents would
 * follow it. A release of version 1 has none.
 */
export async function checkShards(
  store: ObjectStore,
  head: Pick<ParsedHead, "head" | "shards">,
): Promise<void> {
  await visitShards(store, head, () => {});
}

/**
 * One host's entry in a verified release file: what an agent needs of a release. Of a sharded
 * release only the host's own shard is read (one GET), and checked whole by parseShard: its
 * digest against the signed head, its fields and count, every entry well-formed and placed there
 * by its name, no name given twice. The other shards are not read: a host misplaced in one of
 * them, which only a signer could put there (the publisher refuses it before signing), is
 * refused by the full readers (readShards, checkShards) and by the agents of that shard, not
 * here. Undefined: the release does not name the host.
 */
export async function readHostEntry(
  store: ObjectStore,
  head: SignedHead,
  host: string,
): Promise<ReleaseHost | undefined> {
  if (head.hosts !== undefined)
    return Object.hasOwn(head.hosts, host) ? head.hosts[host] : undefined;
  const index = shardIndex(host, head.shards.length);
  const key = shardKeys(head)[index] as string;
  const hosts = parseShard(await readShardBytes(store, head, index), head, index, key);
  return Object.hasOwn(hosts, host) ? hosts[host] : undefined;
}

/**
 * The entries of `hosts` in a verified release file (undefined: it does not name the host):
 * of a sharded release, each shard that holds one of them read once (SHARD_CONCURRENCY at a
 * time) and checked whole, as readHostEntry checks an agent's own.
 */
export async function readHostEntries(
  store: ObjectStore,
  head: SignedHead,
  hosts: readonly string[],
): Promise<Map<string, ReleaseHost | undefined>> {
  const entries = new Map<string, ReleaseHost | undefined>();
  const own = (all: Release["hosts"], host: string) =>
    Object.hasOwn(all, host) ? all[host] : undefined;
  if (head.hosts !== undefined) {
    for (const host of hosts) entries.set(host, own(head.hosts, host));
    return entries;
  }
  const byShard = new Map<number, string[]>();
  for (const host of hosts) {
    const index = shardIndex(host, head.shards.length);
    byShard.set(index, [...(byShard.get(index) ?? []), host]);
  }
  const keys = shardKeys(head);
  await mapLimit([...byShard], SHARD_CONCURRENCY, async ([index, named]) => {
    const all = parseShard(
      await readShardBytes(store, head, index),
      head,
      index,
      keys[index] as string,
    );
    for (const host of named) entries.set(host, own(all, host));
  });
  return entries;
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
