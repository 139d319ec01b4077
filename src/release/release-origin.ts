// Who published a release and from what source: a small document stored beside the
// release (releases/<channel>/<seq>.origin.json), signed by the release key over a message that
// binds the release's digest. Pure: the shape, its signing and its strict, verified reading.
//
// It is a document of its own, not a field of the release, because agents parse releases
// strictly (unknown keys are refused): a field there would make every agent of an older nixship
// refuse every new release. Agents never read this document.

import { type PublicKey, type SecretKey, signDetached, verifyDetached } from "../nix/keys.js";
import { sourceReference } from "../util/source-reference.js";
import { quoted, withoutControls } from "../util/text.js";
import { canonicalJson } from "./release-canonical.js";

/** Where systems came from: a flake, its git revision, whether its tree was dirty. */
export interface OriginSource {
  /** The flake: a local directory, or a reference as sourceReference shows it (no credential). */
  readonly flake: string;
  /** Its git commit (null: not a git work tree, or not asked). */
  readonly rev: string | null;
  /** Whether tracked files differed from that commit (null: unknown). */
  readonly dirty: boolean | null;
}

/** Who started a deploy (a CI run, or user@machine) and the flakes its systems came from. */
export interface Origin {
  readonly by: string;
  readonly sources: readonly OriginSource[];
}

/** The release an origin document speaks of: its channel, number and digest. */
export interface OriginOf {
  readonly channel: string;
  readonly seq: number;
  readonly digest: string;
}

/** What a reader makes of a release's origin document. */
export type OriginCheck =
  | { readonly status: "none" }
  | ({ readonly status: "trusted"; readonly keyName: string } & Origin)
  /** Present but not to be believed: `problem` says why (changed, another release's, unsigned). */
  | { readonly status: "untrusted"; readonly problem: string };

/** Put before the canonical JSON, so this signature never passes as a release's or a narinfo's. */
export const ORIGIN_SIGNATURE_CONTEXT = "nixship-release-origin-v1\n";
/** The largest origin document read. */
export const ORIGIN_LIMIT = 64 * 1024;
export const MAX_SOURCES = 20;
const MAX_BY = 300;
const MAX_FLAKE = 500;
const KEYS = ["by", "channel", "release", "seq", "signature", "sources"];

/** The sources an origin names, checked; or what is wrong with them (one reader for all). */
export function readOriginSources(value: unknown): OriginSource[] | string {
  if (!Array.isArray(value) || value.length > MAX_SOURCES) {
    return `"sources" must be a list of at most ${MAX_SOURCES}`;
  }
  const read: OriginSource[] = [];
  for (const [i, v] of value.entries()) {
    const where = `sources[${i}]`;
    if (typeof v !== "object" || v === null || Array.isArray(v)) {
      return `${where} is not a JSON object`;
    }
    const o = v as Record<string, unknown>;
    if (typeof o.flake !== "string") return `${where}.flake must be a string`;
    if (!(o.rev === null || (typeof o.rev === "string" && /^[0-9a-f]{40,64}$/.test(o.rev)))) {
      return `${where}.rev must be a git commit or null`;
    }
    if (!(o.dirty === null || typeof o.dirty === "boolean")) {
      return `${where}.dirty must be true, false or null`;
    }
    // Cleaned as read too: an older nixship stored references with their tokens.
    read.push(
      shownSource({
        flake: o.flake,
        rev: o.rev as string | null,
        dirty: o.dirty as boolean | null,
      }),
    );
  }
  return read;
}

/**
 * A source as stored and shown: its flake reduced to what identifies it (no userinfo, no query
 * parameter but Nix's own), then cut to length. Every writer and reader of sources uses it.
 */
export function shownSource(s: OriginSource): OriginSource {
  return { flake: sourceReference(s.flake).slice(0, MAX_FLAKE), rev: s.rev, dirty: s.dirty };
}

/** `by` as shown: no control characters, cut to length. */
export function shownBy(by: string): string {
  return withoutControls(by).slice(0, MAX_BY);
}

function signedFields(release: OriginOf, origin: Origin): Record<string, unknown> {
  return {
    by: origin.by,
    channel: release.channel,
    release: release.digest,
    seq: release.seq,
    sources: origin.sources.map(({ flake, rev, dirty }) => ({ flake, rev, dirty })),
  };
}

/** The stored form of `release`'s origin, signed by `key` (the key that signed the release). */
export function formatReleaseOrigin(release: OriginOf, origin: Origin, key: SecretKey): Uint8Array {
  const clean: Origin = {
    by: shownBy(origin.by),
    sources: origin.sources.slice(0, MAX_SOURCES).map(shownSource),
  };
  const fields = signedFields(release, clean);
  const signature = signDetached(key, ORIGIN_SIGNATURE_CONTEXT + canonicalJson(fields));
  return new Uint8Array(Buffer.from(`${canonicalJson({ ...fields, signature })}\n`));
}

/**
 * An origin document read beside `release`: trusted only when one of `keys` signed it for that
 * release's channel, number and digest (so a document copied from another release, or changed
 * in the store, is untrusted, never shown as true). Never throws on what the store holds.
 */
export function checkReleaseOrigin(
  bytes: Uint8Array,
  release: OriginOf,
  keys: readonly PublicKey[],
): OriginCheck {
  const untrusted = (problem: string): OriginCheck => ({ status: "untrusted", problem });
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch {
    return untrusted("not JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return untrusted("not a JSON object");
  }
  const o = value as Record<string, unknown>;
  const unknown = Object.keys(o).filter((k) => !KEYS.includes(k));
  if (unknown.length > 0) return untrusted(`unknown key ${JSON.stringify(unknown[0])}`);
  if (typeof o.by !== "string" || o.by.length > MAX_BY) return untrusted(`"by" is not a name`);
  const sources = readOriginSources(o.sources);
  if (typeof sources === "string") return untrusted(sources);
  if (typeof o.signature !== "string") return untrusted("not signed");
  if (o.channel !== release.channel || o.seq !== release.seq || o.release !== release.digest) {
    return untrusted(
      `it names release ${quoted(o.seq)} of channel ${quoted(o.channel)} with digest ${quoted(o.release)}, not this release`,
    );
  }
  const message =
    ORIGIN_SIGNATURE_CONTEXT +
    canonicalJson(signedFields(release, { by: o.by, sources: o.sources as OriginSource[] }));
  const check = verifyDetached(o.signature, message, keys);
  if (!check.ok) {
    return untrusted(
      check.reason === "untrusted-key"
        ? "signed by a key that is not a trusted release key"
        : check.reason === "bad-signature"
          ? "its signature does not match its content (changed after it was signed)"
          : "its signature is malformed",
    );
  }
  return { status: "trusted", keyName: check.keyName, by: shownBy(o.by), sources };
}
