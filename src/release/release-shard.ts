// The shards of a sharded release (version 2). Pure: which shard holds a host, the stored form
// of a shard (canonical JSON), signing a release in the form its size calls for, and reading
// shards back, each trusted only when its bytes hash to the digest the signed head names.
import * as crypto from "node:crypto";
import { InputError } from "../errors.js";
import { isJsonObject, type KeyShape, Problems, readObject } from "../fleet/json-check.js";
import { formatJsonPath } from "../fleet/json-path.js";
import { Sha256 } from "../nix/hash.js";
import type { SecretKey } from "../nix/keys.js";
import {
  headOf,
  type ParsedHead,
  type ParsedRelease,
  type Release,
  type ReleaseHead,
  type ReleaseHost,
  SHARD_HOSTS,
  SHARDED_RELEASE_VERSION,
  type ShardRef,
  type SignedHead,
  type SignedRelease,
  type StoredShard,
  shardCount,
} from "./release.js";
import { canonicalHosts, releaseDigest } from "./release-canonical.js";
import { hostTwice, refuseDuplicateHost } from "./release-parse.js";
import { malformed, readHosts } from "./release-read.js";
import { checkRelease, formatRelease, formatShardedHead } from "./release-sign.js";

const SHARD_KEYS = {
  required: ["channel", "count", "hosts", "index", "seq", "version"],
  optional: [],
} as const satisfies KeyShape;

/**
 * The shard (0 to count - 1) that holds `host`'s entry: the first 4 bytes of sha256(name),
 * big-endian, modulo the number of shards. Stable, and spread evenly whatever the names.
 */
export function shardIndex(host: string, count: number): number {
  // Every reader of a sharded release places each of its names (10,000 at 10,000 hosts, for
  // each agent): a one-shot digest in hex, of which 8 digits are the first 4 bytes, costs a
  // third of a hash object's and a buffer's (crypto.hash: Node 20.12 and later).
  const hex = oneShotHash ? oneShotHash("sha256", host, "hex") : Sha256.of(host).hex;
  return Number.parseInt(hex.slice(0, 8), 16) % count;
}

const oneShotHash = (
  crypto as { hash?: (algorithm: string, data: string, encoding: "hex") => string }
).hash;

/**
 * Signs `release` in the form its number of hosts calls for: one file (version 1) up to
 * SHARD_HOSTS hosts, else a head (version 2) naming the digests of its shards, which it gives
 * too. The release returned holds every host's entry either way.
 */
export function signRelease(release: Release, key: SecretKey): SignedRelease {
  const count = Object.keys(release.hosts).length;
  if (count <= SHARD_HOSTS) return formatRelease(release, key);
  const checked = checkRelease(release);
  return signShardedRelease(headOf(checked), formatShards(checked), key);
}

/**
 * Signs the head of a sharded release over `shards` (in order of index) once each reads back as
 * every reader reads it (parseShard): a shard that names a host twice, or a host of another
 * shard, is refused here with the readers' own error, so nothing is signed that they refuse.
 */
export function signShardedRelease(
  head: ReleaseHead,
  shards: readonly StoredShard[],
  key: SecretKey,
): SignedRelease {
  const refs = { head: { ...head, version: SHARDED_RELEASE_VERSION }, shards } as const;
  const hosts: Record<string, ReleaseHost> = {};
  for (const [index, shard] of shards.entries()) {
    Object.assign(hosts, parseShard(shard.bytes, refs, index, `shard ${index} to sign`));
  }
  return joined(formatShardedHead(head, shards, key), hosts, shards);
}

/** The release's hosts split into its shards, each in its stored form. */
function formatShards(release: Release): StoredShard[] {
  const count = shardCount(Object.keys(release.hosts).length);
  const split: Record<string, ReleaseHost>[] = Array.from({ length: count }, () => ({}));
  for (const [name, entry] of Object.entries(release.hosts)) {
    (split[shardIndex(name, count)] as Record<string, ReleaseHost>)[name] = entry;
  }
  return split.map((hosts, index) => {
    const bytes = shardBytes(release, index, count, hosts);
    return { index, digest: releaseDigest(bytes), hosts: Object.keys(hosts).length, bytes };
  });
}

/** A shard's stored form: canonical JSON (keys sorted, no whitespace) and one final newline. */
function shardBytes(
  release: Pick<ReleaseHead, "channel" | "seq">,
  index: number,
  count: number,
  hosts: Release["hosts"],
): Uint8Array {
  return new Uint8Array(Buffer.from(shardText(release, index, count, hosts)));
}

function shardText(
  release: Pick<ReleaseHead, "channel" | "seq">,
  index: number,
  count: number,
  hosts: Release["hosts"],
): string {
  return `{"channel":${JSON.stringify(release.channel)},"count":${count},"hosts":${canonicalHosts(hosts)},"index":${index},"seq":${release.seq},"version":${SHARDED_RELEASE_VERSION}}\n`;
}

/** The first byte of every shard's canonical form. */
const OPEN_BRACE = 0x7b;

/**
 * The entries of shard `index` of the sharded release `head`, from the shard's stored bytes: they
 * must hash to the digest the head names (the head's signature covers it), and hold that shard of
 * that release in canonical form, laid out as the release's layout says (checkShardLayout), each
 * entry well-formed. `source` names the shard in errors (its key). Fails with
 * release-shard-mismatch, release-host-twice or release-malformed.
 *
 * Every reader of a sharded release reads shards through this one check: the full readers read
 * every shard (shard-store.ts's visitShards: `release show`, `cache gc`, the dashboard, the
 * deployer) and the publisher checks every shard before signing (signShardedRelease), so what
 * one refuses every one refuses, with the same error; an agent reads its own shard only
 * (readHostEntry), so it refuses what is wrong there, and that alone.
 */
export function parseShard(
  bytes: Uint8Array,
  head: Pick<ParsedHead, "head" | "shards">,
  index: number,
  source: string,
): Release["hosts"] {
  const { channel, seq } = head.head;
  const count = head.shards.length;
  const ref = head.shards[index];
  const what = `shard ${index} of release ${seq} of channel ${channel}`;
  if (ref === undefined) throw new RangeError(`${what}: the release has ${count} shards`);
  const digest = releaseDigest(bytes);
  if (digest !== ref.digest) {
    throw new InputError(
      "release-shard-mismatch",
      `${source}: ${what} does not match the digest the signed release names (${ref.digest}; the stored shard is ${digest})`,
      { hint: "the shard was changed or replaced after the release was signed; do not deploy it" },
    );
  }
  let text: string;
  let value: unknown;
  try {
    text = UTF8.decode(bytes);
    value = JSON.parse(text);
  } catch (err) {
    throw malformed(`${source}: ${what} is not JSON in UTF-8`, err);
  }
  try {
    return checkedHosts(bytes, text, value, head, index, source);
  } catch (err) {
    // A name given twice is the better explanation of any refusal (JSON.parse kept its last
    // entry), so it is named first whatever else failed. A shard that passes every check is
    // canonical JSON, which never gives a key twice: its text need not be scanned for one.
    refuseDuplicateHost(text, value, source);
    throw err;
  }
}

/** A fatal decoder, made once: every shard of every release read goes through it. */
const UTF8 = new TextDecoder("utf-8", { fatal: true });

/** parseShard's checks of a shard's parsed value (`text`, from `bytes`) past its digest. */
function checkedHosts(
  bytes: Uint8Array,
  text: string,
  value: unknown,
  head: Pick<ParsedHead, "head" | "shards">,
  index: number,
  source: string,
): Release["hosts"] {
  const { channel, seq } = head.head;
  const count = head.shards.length;
  const ref = head.shards[index] as ShardRef;
  const what = `shard ${index} of release ${seq} of channel ${channel}`;
  const problems = new Problems();
  const doc = readObject(value, [], problems, SHARD_KEYS);
  const all = doc?.hosts;
  if (isJsonObject(all)) checkShardLayout(Object.keys(all), head.head, index, count, source);
  const hosts = doc === undefined ? undefined : readHosts(all, ["hosts"], problems, true);
  if (doc !== undefined) {
    const expected = { channel, count, index, seq, version: SHARDED_RELEASE_VERSION };
    for (const [key, want] of Object.entries(expected)) {
      if (doc[key] !== want)
        problems.add([key], `must be ${JSON.stringify(want)}, as the release says`);
    }
  }
  if (hosts !== undefined) {
    const names = Object.keys(hosts);
    if (names.length !== ref.hosts) {
      problems.add(["hosts"], `names ${names.length} hosts; the release says ${ref.hosts}`);
    }
  }
  if (problems.list.length > 0 || hosts === undefined || !isJsonObject(value)) {
    const lines = problems.list.map((p) => `${source}: ${formatJsonPath(p.path)}: ${p.message}`);
    throw malformed(lines.slice(0, 20).join("\n"));
  }
  // The text against the canonical text, as strings: the same as comparing the bytes (both are
  // well-formed UTF-16, and UTF-8 is one-to-one), but for a byte-order mark, which the decoder
  // drops and the canonical form never starts with.
  if (text !== shardText(head.head, index, count, hosts) || bytes[0] !== OPEN_BRACE) {
    throw malformed(
      `${source}: ${what} is not in canonical form (keys sorted, no whitespace, one final newline)`,
    );
  }
  return hosts;
}

/**
 * The one check of a sharded release's layout, on the names shard `index` of `count` holds:
 * each is a host whose shard, by its name (shardIndex), is this one. A host named in two shards
 * is named in at least one that is not its own, so a reader of every shard meets it there (an
 * agent, which reads its own shard only, meets it only when that shard is the one at fault).
 * Throws release-host-twice naming the release, the host, the shard that names it and its own.
 */
export function checkShardLayout(
  names: readonly string[],
  head: Pick<ReleaseHead, "channel" | "seq">,
  index: number,
  count: number,
  source: string,
): void {
  for (const name of names) {
    const own = shardIndex(name, count);
    if (own === index) continue;
    throw hostTwice(
      `${source}: release ${head.seq} of channel ${head.channel} names host '${name}' in shard ${index}, but its shard is ${own} (the first 4 bytes of sha256 of its name, modulo ${count}): a host is named once, in its own shard`,
    );
  }
}

/**
 * A sharded release whole: its head and every shard's bytes (in order of index; `sources` name
 * them), each checked by parseShard. A release of version 1 is given back as it is.
 */
export function joinShards<T extends ParsedHead>(
  head: T,
  shards: readonly Uint8Array[],
  sources: readonly string[],
): T extends SignedHead ? SignedRelease : ParsedRelease {
  type Out = T extends SignedHead ? SignedRelease : ParsedRelease;
  if (head.hosts !== undefined) {
    return joined(head, head.hosts, []) as Out;
  }
  if (shards.length !== head.shards.length) {
    throw new RangeError(`${head.shards.length} shards expected, ${shards.length} given`);
  }
  const hosts: Record<string, ReleaseHost> = {};
  const stored: StoredShard[] = [];
  for (const [index, bytes] of shards.entries()) {
    Object.assign(hosts, parseShard(bytes, head, index, sources[index] ?? `shard ${index}`));
    const { digest, hosts: count } = head.shards[index] as StoredShard;
    stored.push({ index, digest, hosts: count, bytes });
  }
  return joined(head, hosts, stored) as Out;
}

/** A release file's head with its hosts (joined from its shards, `shards`, when sharded). */
export function joined<T extends ParsedHead>(
  parsed: T,
  hosts: Release["hosts"],
  shards: readonly StoredShard[],
): ParsedRelease & Pick<T, "signature"> {
  const { head, hosts: _hosts, shards: _refs, ...rest } = parsed;
  return { ...rest, release: { ...head, hosts }, ...(shards.length > 0 ? { shards } : {}) };
}
