// Signing a release (whole, or a sharded release's head) and verifying one against trusted keys.
import { InputError } from "../errors.js";
import { type PublicKey, type SecretKey, signDetached, verifyDetached } from "../nix/keys.js";
import { signatureKeyName } from "../util/text.js";
import {
  RELEASE_VERSION,
  type Release,
  type ReleaseHead,
  SHARDED_RELEASE_VERSION,
  type ShardRef,
  type SignedHead,
  type SignedRelease,
} from "./release.js";
import {
  canonicalForms,
  fieldsBesideHosts,
  releaseDigest,
  releaseJson,
} from "./release-canonical.js";
import { parseReleaseHead, wholeRelease } from "./release-parse.js";
import { malformed, readReleaseValue } from "./release-read.js";

/**
 * Signs `release` as one file of version 1 (its hosts map included) and gives its stored form. A
 * release that would not parse back is refused. (signRelease in release-shard.ts picks between
 * this and the sharded form by the number of hosts.)
 */
export function formatRelease(release: Release, key: SecretKey): SignedRelease {
  const checked = checkRelease(release);
  const body = { hosts: checked.hosts };
  const { message } = canonicalForms(checked, body, undefined);
  const signature = signDetached(key, message);
  const bytes = new Uint8Array(Buffer.from(canonicalForms(checked, body, signature).stored));
  return { release: checked, signature, digest: releaseDigest(bytes), bytes, message };
}

/**
 * `release` read back as a host reads a version 1 release (the version set to 1), so nothing is
 * signed that hosts would refuse; an InputError (release-malformed) says what is wrong.
 */
export function checkRelease(release: Release): Release {
  const fields = { ...releaseJson(release), version: RELEASE_VERSION };
  const read = readReleaseValue(fields, "the release to sign");
  return { ...read.head, hosts: read.hosts as Release["hosts"] };
}

/**
 * Signs the head of a sharded release (version 2): `release`'s fields beside its hosts, and the
 * shards (release-shard.ts made them) in place of the hosts map. Gives the head's stored form.
 */
export function formatShardedHead(
  release: ReleaseHead,
  shards: readonly ShardRef[],
  key: SecretKey,
): SignedHead {
  const fields = {
    ...fieldsBesideHosts({ ...release, version: SHARDED_RELEASE_VERSION }),
    shards: shards.map(({ digest, hosts }) => ({ digest, hosts })),
  };
  const read = readReleaseValue(fields, "the release to sign");
  const { message } = canonicalForms(read.head, { shards: read.shards }, undefined);
  const signature = signDetached(key, message);
  const stored = canonicalForms(read.head, { shards: read.shards }, signature).stored;
  const bytes = new Uint8Array(Buffer.from(stored));
  return { ...read, hosts: undefined, signature, digest: releaseDigest(bytes), bytes, message };
}

/**
 * Parses a release of version 1, then checks the signature against the trusted keys; see
 * verifyReleaseHead (and release-sharded for a sharded release).
 */
export function verifyRelease(
  bytes: Uint8Array,
  trustedKeys: readonly PublicKey[],
  source: string,
): SignedRelease {
  return wholeRelease(verifyReleaseHead(bytes, trustedKeys, source), source);
}

/**
 * Parses a release file (a whole release, or a sharded release's head), then checks the
 * signature against the trusted keys. Each failure is an InputError: release-unsigned,
 * release-untrusted-key, release-bad-signature (or release-malformed). A sharded release's
 * signature covers its shards' digests, so each shard is trusted by its digest alone.
 */
export function verifyReleaseHead(
  bytes: Uint8Array,
  trustedKeys: readonly PublicKey[],
  source: string,
): SignedHead {
  const parsed = parseReleaseHead(bytes, source);
  const { head: release, signature } = parsed;
  const what = `${source}: release ${release.seq} of channel ${release.channel}`;
  if (signature === undefined) {
    throw new InputError("release-unsigned", `${what} is not signed`, {
      hint: "hosts only follow signed releases; publish it again with a release key",
    });
  }
  // Whoever wrote the document chose the name: shown clipped, without controls.
  const keyName = signatureKeyName(signature);
  const check = verifyDetached(signature, parsed.message, trustedKeys);
  if (check.ok) return { ...parsed, signature };
  switch (check.reason) {
    case "untrusted-key": {
      const trusted = trustedKeys.map((k) => k.name).join(", ") || "none";
      throw new InputError(
        "release-untrusted-key",
        `${what} is signed by key '${keyName}', which is not trusted (trusted: ${trusted})`,
        { hint: `trust the public half of '${keyName}' only if that key should publish releases` },
      );
    }
    case "bad-signature":
      throw new InputError(
        "release-bad-signature",
        `${what}: the signature by key '${keyName}' does not match its content`,
        { hint: "the release was changed after it was signed; do not deploy it" },
      );
    case "malformed":
      throw malformed(`${what}: the signature is not NAME:BASE64 of an ed25519 signature`);
  }
}

/**
 * The release file (a whole release or a sharded release's head) if one of the keys signed
 * exactly these bytes, else undefined (malformed, unsigned, untrusted or tampered: a reader
 * passing over what no host would follow).
 */
export function trustedHead(
  bytes: Uint8Array,
  trustedKeys: readonly PublicKey[],
  source: string,
): SignedHead | undefined {
  try {
    return verifyReleaseHead(bytes, trustedKeys, source);
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    return undefined;
  }
}

/**
 * The sequence number a document that did not verify claims, if it has one: to file a refusal
 * under, never to act on.
 */
export function claimedSeq(bytes: Uint8Array): number | undefined {
  try {
    const seq = (JSON.parse(Buffer.from(bytes).toString("utf8")) as { seq?: unknown }).seq;
    return Number.isSafeInteger(seq) && (seq as number) > 0 ? (seq as number) : undefined;
  } catch {
    return undefined;
  }
}
