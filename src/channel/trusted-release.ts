// The channel's current release as a deployer may build on it: verified against the fleet's
// release keys, else the newest release that verifies, so what a bucket writer planted without a
// release key is never signed again into the next release; nor an older release copied over the
// channel (a replay), which would send its hosts back: a newer signed release on file is built on
// when it was the channel's, and a publish is refused when that cannot be told.
import { InputError, OperationError } from "../errors.js";
import type { PublicKey } from "../nix/keys.js";
import type { SignedRelease } from "../release/release.js";
import { releaseDigest } from "../release/release-canonical.js";
import { channelKey, listedSeqs, readChannel, releaseKey } from "../release/release-store.js";
import { loadVerifiedRelease } from "../release/shard-store.js";
import { readSignedHead, readSignedRelease } from "../release/signed-release-reads.js";
import { progressPrefix } from "../status/status.js";
import type { ObjectStore } from "../store/object-store.js";

/**
 * The channel's current release, verified against `keys`: its entries are signed again into the
 * next release, so what someone who can write the bucket but holds no release key planted there
 * must never be laundered by it. When the channel does not verify, the newest release that does
 * stands in for it (the agents refused the planted one too), so the next release repairs the
 * channel. Undefined: no release of the channel verifies.
 */
export async function trustedChannelRelease(
  store: ObjectStore,
  channel: string,
  keys: readonly PublicKey[],
): Promise<SignedRelease | undefined> {
  return (await readChannelToUpdate(store, channel, keys)).trusted;
}

/** The channel as a publisher builds on it: its trusted release, and what it held when read. */
export interface ChannelBasis {
  /** As trustedChannelRelease says. */
  readonly trusted: SignedRelease | undefined;
  /**
   * The digest of the bytes the channel held (null: it held nothing): a release built on this
   * read is published only over these bytes (PublishOptions.basis).
   */
  readonly basis: string | null;
  /**
   * The channel named an older release than a newer one on file that verifies (a signed release
   * copied over it: a replay), which `trusted` is instead.
   */
  readonly replayed?: { readonly named: number; readonly newest: number };
}

export async function readChannelToUpdate(
  store: ObjectStore,
  channel: string,
  keys: readonly PublicKey[],
): Promise<ChannelBasis> {
  const current = await readChannel(store, channel);
  if (current.status !== "found") return { trusted: undefined, basis: null };
  const basis = releaseDigest(current.bytes);
  let head: SignedRelease;
  try {
    // A sharded release's shards too: one missing or changed is refused as a planted file is.
    head = await loadVerifiedRelease(store, current.bytes, keys, channelKey(channel));
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    // Planted (the agents refused it too): carry on from the newest release that verifies.
    return { trusted: await newestVerified(store, channel, keys, 0), basis };
  }
  // Another channel's release, signed by a key this fleet shares between channels, copied over
  // this one is as planted: its entries are never signed again as this channel's (the agents
  // refuse it, as it names another channel).
  if (head.release.channel !== channel) {
    return { trusted: await newestVerified(store, channel, keys, 0), basis };
  }
  // An older release, signed, copied over the channel (a replay: the agents refuse it, as it is
  // older than what they applied) must not be signed again into a newer one: its hosts would be
  // sent back. A newer release that verifies was the channel's when a later one was built on it
  // (its `previous`) or a host reported on it: then the newest is built on instead, and said.
  const seq = head.release.seq;
  const newer = await newestVerified(store, channel, keys, seq);
  if (newer === undefined) return { trusted: head, basis };
  if (
    (await headSince(store, channel, keys, seq)) ||
    (await reportedOn(store, channel, seq, newer.release.seq))
  ) {
    return { trusted: newer, basis, replayed: { named: seq, newest: newer.release.seq } };
  }
  // A publisher at work may be between its release file and the channel (its origin, then the
  // channel's write): once that has had time to end, a channel that moved is a race lost, read
  // again (release-conflict), not a refusal.
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
  const again = await readChannel(store, channel);
  if (again.status !== "found" || releaseDigest(again.bytes) !== basis) {
    throw new OperationError(
      "release-conflict",
      `another publisher moved channel ${channel} while this one read it (release ${newer.release.seq} was being published); nothing was published; read it again and publish on top of it`,
    );
  }
  // Else it is a publisher's stopped between the release file and the channel (a crash), or
  // the channel was replayed and the hosts' reports removed: which, the operator knows.
  const newerFile = releaseKey(channel, newer.release.seq);
  throw new InputError(
    "release-channel-ambiguous",
    `channel ${channel} names release ${seq}, but release ${newer.release.seq} (${store.url} ${newerFile}) is on file and signed by a release key, and no host reported on it: either its publisher stopped before it moved the channel, or release ${seq} was copied over the channel (a replay, which a new release built on it would sign again, sending hosts back); nothing was published`,
    {
      hint: `if a publish was stopped (killed, a crash) and none is running now, delete ${newerFile}; if the channel was replayed, copy ${newerFile} over ${channelKey(channel)}; then run the command again`,
    },
  );
}

/**
 * Milliseconds a publisher that finds a signed release above the channel gives the one that
 * may be publishing it to move the channel: far more than its origin's and channel's writes.
 */
const SETTLE_MS = 3000;

/**
 * Whether a host reported on a release numbered above `seq`, up to `newest` (its progress
 * markers, status/releases/CHANNEL/SEQ/): an agent saw it on the channel. One LIST a release,
 * NEWER_HEADS at most. A bucket writer could plant one, but only to make the publisher build on
 * a newer release a release key signed, never to send hosts back.
 */
async function reportedOn(
  store: ObjectStore,
  channel: string,
  seq: number,
  newest: number,
): Promise<boolean> {
  const above = (await listedSeqs(store, channel))
    .filter((s) => s > seq && s <= newest)
    .slice(-NEWER_HEADS);
  for (const s of above.reverse()) {
    if ((await store.list(progressPrefix(channel, s), { limit: 1 })).objects.length > 0) {
      return true;
    }
  }
  return false;
}

/** Release files above the channel's read, at most, for the proof that one was the channel's. */
const NEWER_HEADS = 16;

/**
 * Whether a release numbered above `seq` was the channel's since: a later release, signed,
 * names its digest as the release it was built on.
 */
async function headSince(
  store: ObjectStore,
  channel: string,
  keys: readonly PublicKey[],
  seq: number,
): Promise<boolean> {
  const above = (await listedSeqs(store, channel)).filter((s) => s > seq).slice(-NEWER_HEADS);
  if (above.length < 2) return false;
  const heads = await Promise.all(above.map((s) => readSignedHead(store, channel, s, keys)));
  const signed = heads.flatMap((h) => (typeof h === "string" ? [] : [h]));
  const digests = new Set(signed.map((h) => h.digest));
  return signed.some((h) => h.head.previous !== null && digests.has(h.head.previous));
}

/**
 * Release files read, at most, for the newest that verifies: past them, none is taken (as when
 * no release verifies, after the release keys changed). A bound on what files planted by a
 * bucket writer can cost: each is one GET.
 */
export const VERIFIED_READS = 64;

/**
 * The newest release of the channel numbered above `above` that `keys` signed, if any among the
 * VERIFIED_READS newest release files listed above it (only numbers listed are read).
 */
async function newestVerified(
  store: ObjectStore,
  channel: string,
  keys: readonly PublicKey[],
  above: number,
): Promise<SignedRelease | undefined> {
  const listed = (await listedSeqs(store, channel)).filter((seq) => seq > above).reverse();
  for (const seq of listed.slice(0, VERIFIED_READS)) {
    const release = await readSignedRelease(store, channel, seq, keys);
    if (typeof release !== "string") return release;
  }
  return undefined;
}

/** Releases a carry-over walks back past dry runs, at most, for the one they were built on. */
const DRY_RUN_WALK = 20;

/**
 * The release whose entries the next release carries over: `trusted`, unless it is a dry run
 * (`--action dry-activate`), whose entries asked nothing of the hosts (their agents only tried
 * them), and would be activated for real by a release that carried them. Then the release it
 * was built on (its `previous`), past any dry run before it, as a release key signed it. When
 * that cannot be read (pruned, or past DRY_RUN_WALK files), none: the next release names only
 * the hosts it selects, and the others' agents leave them on what they run (`note` says so).
 */
export async function carryOverBase(
  store: ObjectStore,
  channel: string,
  keys: readonly PublicKey[],
  trusted: SignedRelease | undefined,
): Promise<{ readonly base: SignedRelease | undefined; readonly note?: string }> {
  let at = trusted;
  // A refresh of a dry run carries the entries its dry run was built on already (it was made
  // here): it is the base, however many daily refreshes came since the dry run.
  for (
    let walked = 0;
    at !== undefined && at.release.action === "dry-activate" && at.release.kind !== "refresh";
    walked++
  ) {
    const { previous, seq } = at.release;
    if (previous === null) return { base: undefined };
    const base =
      walked < DRY_RUN_WALK ? await builtOn(store, channel, keys, seq, previous) : undefined;
    if (base === undefined) {
      return {
        base: undefined,
        note: `channel ${channel} names release ${trusted?.release.seq}, a dry run (--action dry-activate), and the release it was built on cannot be read (not among the signed releases below release ${seq}): the new release carries none of its entries, which its hosts only tried, and names only the hosts selected (the others' agents leave them on what they run)`,
      };
    }
    at = base;
  }
  return { base: at };
}

/** The signed release below `seq` whose digest is `digest` (a few files down at most). */
async function builtOn(
  store: ObjectStore,
  channel: string,
  keys: readonly PublicKey[],
  seq: number,
  digest: string,
): Promise<SignedRelease | undefined> {
  // A file a publisher that lost a race withdrew, or one planted, may come between the two.
  for (let below = seq - 1; below >= Math.max(1, seq - 4); below--) {
    const read = await readSignedRelease(store, channel, below, keys);
    if (typeof read !== "string" && read.digest === digest) return read;
  }
  return undefined;
}
