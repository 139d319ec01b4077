// The channel's current release as a deployer may build on it: verified against the fleet's
// release keys, else the newest release that verifies, so what a bucket writer planted without a
// release key is never signed again into the next release.
import { InputError } from "../errors.js";
import type { PublicKey } from "../nix/keys.js";
import type { SignedRelease } from "../release/release.js";
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
  const current = await readChannel(store, channel);
  if (current.status !== "found") return undefined;
  try {
    // A sharded release's shards too: one missing or changed is refused as a planted file is.
    return await loadVerifiedRelease(store, current.bytes, keys, channelKey(channel));
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    // Planted (the agents refused it too): carry on from the newest release that verifies.
    for (let seq = await highestListed(store, channel); seq >= 1; seq--) {
      const older = await readSignedRelease(store, channel, seq, keys);
      if (typeof older !== "string") return older;
    }
    return undefined;
  }
}
