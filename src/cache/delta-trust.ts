// What the delta step believes of the cache (docs/deltas.md, "Trust"): a narinfo only when a
// key of the fleet signed it, and a skip note only when the deployer's key signed it, so that
// no one who can write to the cache without the key can make the deployer fetch more than the
// paths hold, or switch a pair's delta off.
import { InputError } from "../errors.js";
import { type PublicKey, type SecretKey, signDetached, verifyDetached } from "../nix/keys.js";
import { checkNarInfoSignatures, type NarInfo } from "../nix/narinfo.js";
import type { StorePath } from "../nix/store-path.js";
import { readAll } from "../store/helpers.js";
import type { ObjectStore } from "../store/object-store.js";
import { deltaSkipKey, deltaTargetHashPart } from "./delta-path.js";
import { readNarInfoText } from "./read.js";

/** Something the cache holds that the delta step does not believe, and why. */
export interface Refused {
  readonly kind: "refused";
  readonly reason: string;
}

/** A narinfo as read, once one of `trusted` signed it. */
export interface SignedNarInfo {
  readonly kind: "signed";
  readonly text: string;
  readonly info: NarInfo;
}

/**
 * The most read of a delta path's own narinfo: it names no references and few signatures
 * (about 500 bytes), where one planted by a cache writer could be the 4 MiB any narinfo may be,
 * read on every plan and deploy.
 */
export const DELTA_PATH_NARINFO_LIMIT = 16 * 1024;

/**
 * The narinfo of `path` when a key of `trusted` signed it; refused when it is malformed, names
 * another path, or no trusted key signed it; undefined when the cache has none. Only its
 * signed fields (NarHash, NarSize, References) are believed; the others are checked against
 * the NAR as it is read (streamVerifiedNar).
 */
export async function readSignedNarInfo(
  store: ObjectStore,
  path: StorePath,
  trusted: readonly PublicKey[],
): Promise<SignedNarInfo | Refused | undefined> {
  let read: { readonly text: string; readonly info: NarInfo } | undefined;
  try {
    const limit = deltaTargetHashPart(path) === undefined ? undefined : DELTA_PATH_NARINFO_LIMIT;
    read = await readNarInfoText(store, path, limit);
  } catch (err) {
    if (err instanceof InputError) return { kind: "refused", reason: err.message };
    throw err;
  }
  if (read === undefined) return undefined;
  const check = checkNarInfoSignatures(read.info, trusted);
  if (!check.ok) {
    return { kind: "refused", reason: `the narinfo of ${path}: ${check.problems.join("; ")}` };
  }
  return { kind: "signed", ...read };
}

/** A skip note's content: that the pair was computed and its delta not worth it, and with what. */
export interface DeltaSkipNote {
  readonly engine: "zstd-patch";
  readonly level: number;
  readonly target: StorePath;
  readonly base: StorePath;
  readonly deltaBytes: number;
  readonly targetBytes: number;
}

/** The most a skip note may hold (one is about 400 bytes). */
export const SKIP_NOTE_LIMIT = 4096;

/** What a skip note's signature covers: every field, the pair first. */
function skipFingerprint(note: DeltaSkipNote): string {
  return [
    "nixship-delta-skip-v1",
    note.target,
    note.base,
    note.engine,
    note.level,
    note.deltaBytes,
    note.targetBytes,
  ].join(";");
}

/** The note's JSON document, signed with `key` (`sig`, as a narinfo's `Sig`). */
export function formatSkipNote(note: DeltaSkipNote, key: SecretKey): Buffer {
  const sig = signDetached(key, skipFingerprint(note));
  return Buffer.from(`${JSON.stringify({ ...note, sig })}\n`);
}

/**
 * The pair's skip note when a key of `trusted` signed it for this pair; refused when it is not
 * (unsigned, signed by another key, for another pair, malformed); undefined when there is none.
 */
export async function readSkipNote(
  store: ObjectStore,
  pair: { readonly target: StorePath; readonly base: StorePath },
  trusted: readonly PublicKey[],
): Promise<{ readonly kind: "signed"; readonly note: DeltaSkipNote } | Refused | undefined> {
  const key = deltaSkipKey(pair.target, pair.base);
  let bytes: Buffer | undefined;
  try {
    bytes = await readAll(store, key, SKIP_NOTE_LIMIT);
  } catch (err) {
    if (err instanceof InputError) return { kind: "refused", reason: err.message };
    throw err;
  }
  if (bytes === undefined) return undefined;
  const refused = (why: string): Refused => ({ kind: "refused", reason: `${key}: ${why}` });
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString("utf8"));
  } catch {
    return refused("not JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return refused("not a JSON object");
  }
  const doc = value as Record<string, unknown>;
  const count = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0;
  if (
    doc.engine !== "zstd-patch" ||
    doc.target !== pair.target ||
    doc.base !== pair.base ||
    !count(doc.level) ||
    !count(doc.deltaBytes) ||
    !count(doc.targetBytes)
  ) {
    return refused("not a skip note of this pair");
  }
  if (typeof doc.sig !== "string") return refused("unsigned");
  const note: DeltaSkipNote = {
    engine: "zstd-patch",
    level: doc.level as number,
    target: pair.target,
    base: pair.base,
    deltaBytes: doc.deltaBytes as number,
    targetBytes: doc.targetBytes as number,
  };
  const check = verifyDetached(doc.sig, skipFingerprint(note), trusted);
  if (!check.ok) {
    return refused(
      check.reason === "untrusted-key"
        ? "signed by a key the fleet does not trust"
        : "its signature does not match it",
    );
  }
  return { kind: "signed", note };
}
