// A signed record's layout, for the records nixship signs (rollout records with the cache key,
// agents' status reports with their host key): the record stays one JSON object, and the
// signature is its last member, over the record's exact text without it:
//
//   {"version":1,…,"signature":"…"}
//
// Readers that ignore unknown members read a signed record as the record. Pure.

/** The record's text (one JSON object), ending with `signature` when given, as stored. */
export function withSignature(text: string, signature: string | undefined): Uint8Array {
  if (signature === undefined) return Buffer.from(`${text}\n`);
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
