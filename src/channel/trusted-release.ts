// The channel's current release as a deployer may build on it: verified against the fleet's
// release keys, else the newest release that verifies, so what a bucket writer planted without a
// release key is never signed again into the next release.
import { InputError } from "../errors.js";
import type { PublicKey } from "../nix/keys.js";
import type { SignedRelease } from "../release/release.js";
import { releaseDigest } from "../release/release-canonical.js";
import { channelKey, highestListed, readChannel } from "../release/release-store.js";
import { loadVerifiedRelease } from "../release/shard-store.js";
import { readSignedRelease } from "../release/signed-release-reads.js";
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
}

export async function readChannelToUpdate(
  store: ObjectStore,
  channel: string,
  keys: readonly PublicKey[],
): Promise<ChannelBasis> {
  const current = await readChannel(store, channel);
  if (current.status !== "found") return { trusted: undefined, basis: null };
  const basis = releaseDigest(current.bytes);
  try {
    // A sharded release's shards too: one missing or changed is refused as a planted file is.
    return {
      trusted: await loadVerifiedRelease(store, current.bytes, keys, channelKey(channel)),
      basis,
    };
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    // Planted (the agents refused it too): carry on from the newest release that verifies.
    for (let seq = await highestListed(store, channel); seq >= 1; seq--) {
      const older = await readSignedRelease(store, channel, seq, keys);
      if (typeof older !== "string") return { trusted: older, basis };
    }
    return { trusted: undefined, basis };
  }
}
