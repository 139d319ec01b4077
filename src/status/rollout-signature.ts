// A rollout record's signature: the deployer signs each write of its record with the cache key,
// so that what acts on a record (a rollback, which sends hosts to the systems it names) believes
// only one that key wrote, never one that someone else who can write the store put there or
// edited. The layout (the signature, the record's last member) is signed-record.ts's. Pure.
import { type PublicKey, type SecretKey, signDetached, verifyDetached } from "../nix/keys.js";
import { signatureKeyName } from "../util/text.js";
import { splitSignedRecord, withSignature } from "./signed-record.js";

/** What a record's signature signs: this context, then the record's text without it. */
const CONTEXT = "nixship-rollout-record-v1\n";

/** The record's text (one JSON object), signed by `key` when given, as stored. */
export function signedRecordBytes(text: string, key: SecretKey | undefined): Uint8Array {
  return withSignature(text, key === undefined ? undefined : signDetached(key, CONTEXT + text));
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
    case "untrusted-key": {
      // The name as the signature gives it: whoever wrote the record chose it.
      const name = signatureKeyName(signature);
      return {
        trusted: false,
        why: `it is signed by key '${name}', which is not in cache.publicKeys (one dropped from them, rotated or leaked, or a stranger's)`,
      };
    }
    case "bad-signature":
      return {
        trusted: false,
        why: "its signature does not match it (edited since it was signed)",
      };
    case "malformed":
      return { trusted: false, why: "its signature is malformed" };
  }
}
