// A rollout record's signature: the deployer signs each write of its record with the cache key,
// so that what acts on a record (a rollback, which sends hosts to the systems it names) believes
// only one that key wrote, never one that someone else who can write the store put there or
// edited. The record stays one JSON object; the signature is its last member, over the record's
// exact text without it:
//
//   {"version":1,"id":"…",…,"signature":"KEYNAME:BASE64"}
//
// Pure.
import { type PublicKey, type SecretKey, signDetached, verifyDetached } from "../nix/keys.js";

/** What a record's signature signs: this context, then the record's text without it. */
const CONTEXT = "nixship-rollout-record-v1\n";

/** The record's text (one JSON object), signed by `key` when given, as stored. */
export function signedRecordBytes(text: string, key: SecretKey | undefined): Uint8Array {
  if (key === undefined) return Buffer.from(`${text}\n`);
  const signature = signDetached(key, CONTEXT + text);
  return Buffer.from(`${text.slice(0, -1)},"signature":${JSON.stringify(signature)}}\n`);
}

/** The trailing signature member a signed record ends with. */
const SIGNATURE_MEMBER = /,"signature":("[A-Za-z0-9._+/=:-]{1,300}")\}$/;

/**
 * The stored record's text as it was signed, and its signature when it ends with one (a record
 * without one, written before records were signed or by hand, is its whole text).
 */
export function splitSignedRecord(bytes: Uint8Array): { text: string; signature?: string } {
  const text = Buffer.from(bytes).toString("utf8").trimEnd();
  const member = SIGNATURE_MEMBER.exec(text);
  if (member === null) return { text };
  return {
    text: `${text.slice(0, member.index)}}`,
    signature: JSON.parse(member[1] as string) as string,
  };
}

/** Whether one of `keys` signed the record: the key's name, or why not. */
export type RecordTrust =
  | { readonly trusted: true; readonly keyName: string }
  | { readonly trusted: false; readonly why: string };

export function recordTrust(bytes: Uint8Array, keys: readonly PublicKey[]): RecordTrust {
  const { text, signature } = splitSignedRecord(bytes);
  if (signature === undefined) {
    return { trusted: false, why: "it is not signed" };
  }
  const check = verifyDetached(signature, CONTEXT + text, keys);
  if (check.ok) return { trusted: true, keyName: check.keyName };
  switch (check.reason) {
    case "untrusted-key":
      return { trusted: false, why: "it is signed by a key that is not in cache.publicKeys" };
    case "bad-signature":
      return {
        trusted: false,
        why: "its signature does not match it (edited since it was signed)",
      };
    case "malformed":
      return { trusted: false, why: "its signature is malformed" };
  }
}
