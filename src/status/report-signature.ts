// An agent's status report, signed with its host's SSH ed25519 host key: the marker it leaves
// on a release (status.ts) is what a deploy judges its canary by, what the channel keeper steps
// back over when a system failed, and what `nixship rollback` walks back through, so whoever
// can write the store must not be able to write one for a host. The fleet knows each agent
// host's key (its `hostKey`, or the key it published and the fleet pinned), and the host holds
// the private half already (its secrets are decrypted with it). Layout: signed-record.ts; the
// signature is `ssh-ed25519:BASE64` of Ed25519 over a context and the record's text.
// Pure, but for loadHostSigningKey.
import { createPrivateKey, createPublicKey, type KeyObject, sign, verify } from "node:crypto";
import { stat } from "node:fs/promises";
import { parseOpenSshPrivateKey, parseSshEd25519PublicKeyLine } from "../age/ssh-ed25519.js";
import { InputError } from "../errors.js";
import { readFileBounded } from "../util/bounded-file.js";
import { splitSignedRecord, withSignature } from "./signed-record.js";
import { parseStatusRecord, type StatusRecord } from "./status.js";

/** What a report's signature signs: this context, then the record's text without it. */
const CONTEXT = "nixship-host-report-v1\n";
const PREFIX = "ssh-ed25519:";

/** A host's private key, as an agent signs its reports with it. */
export interface HostSigningKey {
  readonly key: KeyObject;
}

/** The record as stored, signed by the host's key when given. */
export function signedReportBytes(record: StatusRecord, key: HostSigningKey | undefined) {
  const text = JSON.stringify(record);
  if (key === undefined) return withSignature(text, undefined);
  // Node's own Ed25519: a verify costs 0.1 ms where noble's costs 1.5 (a deploy of 10,000
  // agent hosts verifies 10,000 reports).
  const signature = sign(null, Buffer.from(CONTEXT + text), key.key);
  return withSignature(text, PREFIX + Buffer.from(signature).toString("base64"));
}

/** Whether a report is its host's: the record, and why not when it is not to be believed. */
export type ReportTrust =
  | { readonly trusted: true; readonly record: StatusRecord }
  | { readonly trusted: false; readonly record: StatusRecord; readonly why: string };

/** Where a report lies: a marker names its host, channel, release and state in its key. */
export interface ReportPlace {
  readonly host: string;
  readonly channel?: string;
  readonly seq?: number;
  readonly state?: StatusRecord["state"];
}

/**
 * Parses a stored report (malformed: InputError) and judges it: signed by `hostKey` (the host's
 * `ssh-ed25519 BASE64`), and about the place it lies at (a host's own report of another
 * release, copied into this one's marker, is not this release's report).
 */
export function judgeReport(
  bytes: Uint8Array,
  source: string,
  hostKey: string,
  place: ReportPlace,
): ReportTrust {
  const record = parseStatusRecord(bytes, source);
  const why = untrustedBecause(bytes, record, hostKey, place);
  return why === undefined ? { trusted: true, record } : { trusted: false, record, why };
}

function untrustedBecause(
  bytes: Uint8Array,
  record: StatusRecord,
  hostKey: string,
  place: ReportPlace,
): string | undefined {
  const { text, signature } = splitSignedRecord(bytes);
  if (signature === undefined) return "it is not signed";
  const key = parseSshEd25519PublicKeyLine(hostKey);
  if (!key.ok) return `the host key the fleet knows for ${place.host} ${key.reason}`;
  const raw = signature.startsWith(PREFIX)
    ? Buffer.from(signature.slice(PREFIX.length), "base64")
    : undefined;
  if (raw?.length !== 64) return "its signature is malformed";
  let good = false;
  try {
    const publicKey = createPublicKey({
      key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(key.value.key).toString("base64url") },
      format: "jwk",
    });
    good = verify(null, Buffer.from(CONTEXT + text), publicKey, raw);
  } catch {
    good = false;
  }
  if (!good) return `it is not signed by ${place.host}'s host key (or was edited since)`;
  const elsewhere =
    record.host !== place.host ||
    (place.channel !== undefined && record.channel !== place.channel) ||
    (place.seq !== undefined && record.seq !== place.seq) ||
    (place.state !== undefined && record.state !== place.state);
  return elsewhere
    ? `it is ${record.host}'s report of ${record.state} on release ${record.seq ?? "none"} of ${record.channel ?? "no channel"}, copied here`
    : undefined;
}

/** The most a host key file may hold. */
const KEY_FILE_LIMIT = 16 * 1024;

/**
 * The host's private key from `file` (an unencrypted OpenSSH ed25519 key, as sshd's host keys
 * are). InputError naming the file and what is wrong, never the key's bytes.
 */
export async function loadHostSigningKey(file: string): Promise<HostSigningKey> {
  // A key others may read is no proof of the host: whoever read it can sign as it.
  const info = await stat(file).catch(() => undefined);
  if (info !== undefined && (info.mode & 0o077) !== 0) {
    const mode = (info.mode & 0o777).toString(8).padStart(4, "0");
    throw new InputError(
      "key-exposed",
      `${file} may be read by others (mode ${mode}), so it signs nothing (chmod 600 ${file}, as sshd requires of a host key)`,
    );
  }
  const bytes = await readFileBounded(
    file,
    KEY_FILE_LIMIT,
    (size) =>
      new InputError("host-key-unreadable", `${file} holds ${size} bytes, more than a host key`),
  );
  if (bytes === undefined) throw new InputError("host-key-unreadable", `${file}: no such file`);
  const parsed = parseOpenSshPrivateKey(bytes.toString("utf8"));
  if (!parsed.ok) throw new InputError("host-key-unreadable", `${file} ${parsed.reason}`);
  const { seed, publicKey } = parsed.value;
  const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64url");
  return {
    key: createPrivateKey({
      key: { kty: "OKP", crv: "Ed25519", d: b64(seed), x: b64(publicKey.key) },
      format: "jwk",
    }),
  };
}
