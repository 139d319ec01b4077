// A stored release file read back: UTF-8, JSON, the strict reader, and the bytes in canonical form
// (one release, one digest). Checks no signature (release-sign.ts does).
import { InputError } from "../errors.js";
import { isJsonObject } from "../fleet/json-check.js";
import { findDuplicateKey, parseJsonText } from "../fleet/json-text.js";
import type { ParsedHead, ParsedRelease, Release } from "./release.js";
import { type Body, canonicalForms, releaseDigest } from "./release-canonical.js";
import { malformed, readReleaseValue } from "./release-read.js";

/**
 * Parses a stored release of version 1 (a whole release) strictly; see parseReleaseHead. A
 * sharded release is refused here: its hosts are in its shards (release-shard.ts joins them,
 * and release-store.ts reads them).
 */
export function parseRelease(bytes: Uint8Array, source: string): ParsedRelease {
  return wholeRelease(parseReleaseHead(bytes, source), source);
}

/** The release of a version 1 file; a sharded one fails with release-sharded. */
export function wholeRelease<T extends ParsedHead>(
  parsed: T,
  source: string,
): Omit<T, "head" | "hosts" | "shards"> & { release: Release } {
  const { head, hosts, shards: _shards, ...rest } = parsed;
  if (hosts !== undefined) return { ...rest, release: { ...head, hosts } };
  throw new InputError(
    "release-sharded",
    `${source}: release ${head.seq} of channel ${head.channel} is sharded: its hosts are in its ${parsed.shards.length} shards`,
    { hint: "read it with its shards (release-store's readers join them)" },
  );
}

/**
 * Parses a stored release file strictly: every field present with the right type, nothing
 * unknown, and the bytes in canonical form (so one release has one digest). Checks no signature.
 * `source` names the bytes in errors (a file, an object key). A sharded release gives its head
 * and its shards' digests; its shards are not read here.
 */
export function parseReleaseHead(bytes: Uint8Array, source: string): ParsedHead {
  // TextDecoder drops a byte-order mark; the release would then have two stored forms.
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
    throw malformed(
      `${source}: starts with a byte-order mark: a release is exactly its canonical bytes`,
      undefined,
      "releases are written by nixship and must not be edited by hand",
    );
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (err) {
    throw malformed(`${source}: is not UTF-8 text`, err);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // Only a text that does not parse pays for the error with line and column.
    detailedJsonError(text, source);
    throw malformed(`${source}: is not JSON (a byte-order mark is not allowed)`);
  }
  let read: ReturnType<typeof readReleaseValue>;
  try {
    read = readReleaseValue(value, source);
  } catch (err) {
    // A duplicate key (JSON.parse keeps the last) is the better explanation when there is one.
    refuseDuplicateHost(text, value, source);
    detailedJsonError(text, source);
    throw err;
  }
  const { head: release, signature } = read;
  const body: Body = read.hosts !== undefined ? { hosts: read.hosts } : { shards: read.shards };
  const { message, stored } = canonicalForms(release, body, signature);
  if (text !== stored) {
    // A duplicate key is one way to differ (JSON.parse keeps the last); name it if so.
    refuseDuplicateHost(text, value, source);
    detailedJsonError(text, source);
    throw malformed(
      `${source}: release ${release.seq} of channel ${release.channel} is not in canonical form (keys sorted, no whitespace, one final newline)`,
      undefined,
      "releases are written by nixship and must not be edited by hand",
    );
  }
  return { ...read, digest: releaseDigest(bytes), bytes, message };
}

/**
 * Throws release-host-twice when `text` (which JSON.parse took: `value`) names a host twice in
 * its `hosts` (JSON.parse would keep the last entry); a release file's or a shard's.
 */
export function refuseDuplicateHost(text: string, value: unknown, source: string): void {
  const duplicate = findDuplicateKey(text);
  if (duplicate === undefined || duplicate.path.length !== 1 || duplicate.path[0] !== "hosts") {
    return;
  }
  const doc = isJsonObject(value) ? value : {};
  const what = `release ${String(doc.seq)} of channel ${String(doc.channel)}`;
  const index = typeof doc.index === "number" ? doc.index : undefined;
  throw hostTwice(
    `${source}: ${what} names host '${duplicate.key}' twice${index === undefined ? "" : ` in shard ${index}`}`,
  );
}

/**
 * The error every reader, the agent and the publisher give a release that names a host twice:
 * twice in one file or shard, or in a shard that is not its own (release-shard.ts).
 */
export function hostTwice(message: string): InputError {
  return new InputError("release-host-twice", message, {
    hint: "a release names each host once (in a sharded release, in the one shard its name hashes to), and nixship's publisher writes no other: do not deploy it; publish a new release",
  });
}

/**
 * Whether `err` is hostTwice's refusal: one every full reader gives the release's signed bytes
 * alike, a fault of its signer (where a shard missing is the store's). An agent meets it only
 * when its own shard is the one at fault; the agents of the release's sound shards apply it.
 */
export function isHostTwice(err: unknown): boolean {
  return err instanceof InputError && err.code === "release-host-twice";
}

/** Throws the parse error parseJsonText gives `text` (line, column, duplicate keys), if any. */
function detailedJsonError(text: string, source: string): void {
  try {
    parseJsonText(text, source);
  } catch (err) {
    if (err instanceof InputError) throw malformed(err.message, err, err.hint);
    throw err;
  }
}
