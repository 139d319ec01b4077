// Reading releases as hosts and views trust them: a release file is taken only when one of the
// keys signed it for its channel and number, and a sharded release's shards are checked too.
import { InputError } from "../errors.js";
import type { PublicKey } from "../nix/keys.js";
import type { ObjectStore } from "../store/object-store.js";
import type { SignedHead, SignedRelease } from "./release.js";
import { trustedHead } from "./release-sign.js";
import { listedSeqs, MAX_RELEASE_SEQ, readRelease, releaseKey } from "./release-store.js";
import { readShards } from "./shard-store.js";

/** Release files above a channel's release that are read, at most, for one that verifies. */
const NEWER_READS = 8;

/**
 * The number of the newest release file above `seq` that the keys signed for this channel and
 * number, or undefined. A file that does not verify (planted by a bucket writer) is passed
 * over, so it cannot stop hosts from following the channel; at most NEWER_READS are read.
 */
export async function newestSignedRelease(
  store: ObjectStore,
  channel: string,
  keys: readonly PublicKey[],
  seq: number,
): Promise<number | undefined> {
  const above = (await listedSeqs(store, channel)).filter((s) => s > seq).reverse();
  for (const candidate of above.slice(0, NEWER_READS)) {
    if (typeof (await readSignedHead(store, channel, candidate, keys)) !== "string") {
      return candidate;
    }
  }
  return undefined;
}

/**
 * Release `seq` of the channel if one of the keys signed it, as that number of that channel
 * (a file copied under another number is not it), with every host's entry (a sharded release's
 * shards read and checked); else whether it is absent or untrusted (a shard missing or changed
 * is untrusted too: no host would follow it).
 */
export async function readSignedRelease(
  store: ObjectStore,
  channel: string,
  seq: number,
  keys: readonly PublicKey[],
): Promise<SignedRelease | "absent" | "untrusted"> {
  const head = await readSignedHead(store, channel, seq, keys);
  if (typeof head === "string") return head;
  try {
    return await readShards(store, head);
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    return "untrusted";
  }
}

/**
 * As readSignedRelease, the release file only (one GET): a sharded release's shards are not read.
 */
export async function readSignedHead(
  store: ObjectStore,
  channel: string,
  seq: number,
  keys: readonly PublicKey[],
): Promise<SignedHead | "absent" | "untrusted"> {
  const read = await readRelease(store, channel, seq);
  // Absent: never published, or withdrawn by a publisher that lost a race.
  if (read.status !== "found") return "absent";
  const signed = trustedHead(read.bytes, keys, releaseKey(channel, seq));
  if (signed === undefined || signed.head.seq !== seq || signed.head.channel !== channel) {
    return "untrusted";
  }
  return signed;
}

/**
 * Whether release `seq + 1` of the channel exists and the keys signed it for this channel and
 * number: one GET. Release numbers are taken one after another, so a channel that names an
 * older release than the newest has its successor on file. (newestSignedRelease lists them
 * all, for a person; this is the check a host can afford on every new channel.)
 */
export async function successorSigned(
  store: ObjectStore,
  channel: string,
  keys: readonly PublicKey[],
  seq: number,
): Promise<boolean> {
  // The highest number a release may have has none (one numbered so was planted there).
  if (seq >= MAX_RELEASE_SEQ) return false;
  return typeof (await readSignedHead(store, channel, seq + 1, keys)) !== "string";
}
