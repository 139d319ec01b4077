// nixship's age layer (agenix model): recipients and identities as the fleet names them, secrets
// encrypted to a recipient set the header records, and decryption that tells "not for you" from
// "corrupt". typage does the format and X25519; ./ssh-ed25519.ts adds SSH host keys.

import { x25519 } from "@noble/curves/ed25519.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex } from "@noble/hashes/utils.js";
import type { Identity, Recipient } from "age-encryption";
import { InputError, OperationError } from "../errors.js";
import { bech32Decode, bech32Encode } from "./bech32.js";
import {
  decodeBase64NoPad,
  formatSshEd25519PublicKey,
  type Parsed,
  parseOpenSshPrivateKey,
  parseSshEd25519PublicKeyLine,
  SSH_ED25519_STANZA,
  SshEd25519Identity,
  type SshEd25519PublicKey,
  SshEd25519Recipient,
  sshEd25519Tag,
} from "./ssh-ed25519.js";
import { typage } from "./typage.js";

/** A recipient as written in the fleet file or known_hosts: "age1…" (X25519) or "ssh-ed25519 AAAA… [comment]". */
export interface AgeRecipient {
  readonly kind: "x25519" | "ssh-ed25519";
  /** Canonical text: "age1…", or "ssh-ed25519 BASE64" without the comment. */
  readonly text: string;
  /** ssh-ed25519 only: the stanza's key tag (base64, no padding, of the first 4 bytes of SHA-256 of the SSH wire-format public key), as it appears in the stanza args. */
  readonly sshTag?: string;
}

export interface AgeHeader {
  /** The stanzas' types and args, in order (bodies omitted). */
  readonly stanzas: readonly { readonly type: string; readonly args: readonly string[] }[];
  /** From the nixship-recipients stanza; undefined when absent (e.g. a file the age CLI wrote). */
  readonly recipientsDigest: string | undefined;
  /**
   * From the nixship-secret stanza: the name of the secret the file was encrypted as, under
   * the header's MAC (a host installs it under that name alone); undefined when absent.
   */
  readonly secretName: string | undefined;
  /** Tags of the ssh-ed25519 stanzas. */
  readonly sshTags: readonly string[];
  /** How many X25519 stanzas. */
  readonly x25519Count: number;
}

/** An identity that can decrypt: parsed from an identity file's text. */
export interface AgeIdentity {
  readonly kind: "x25519" | "ssh-ed25519";
  /** its recipient */
  readonly recipient: AgeRecipient;
}

const X25519_STANZA = "X25519";
const DIGEST_STANZA = "nixship-recipients";
/** The stanza naming the secret a file was encrypted as; activate.sh reads it too. */
const SECRET_STANZA = "nixship-secret";
const MAX_HEADER = 64 * 1024;
const ARMOR_BEGIN = "-----BEGIN AGE ENCRYPTED FILE-----";
const ONLY_SUPPORTED = "only ssh-ed25519 host keys and age1 recipients are supported";

// ---- recipients ----

function badRecipient(where: string, what: string): InputError {
  return new InputError("bad-recipient", `${where}: ${what}`);
}

/** Recipient text is public, but a pasted secret key is not: messages never quote the input. */
export function parseRecipient(text: string, where: string): AgeRecipient {
  return resolveRecipient(text, where).recipient;
}

/** The recipient and what typage needs to encrypt to it. */
function resolveRecipient(
  text: string,
  where: string,
): { recipient: AgeRecipient; typage: string | Recipient } {
  const trimmed = text.trim();
  if (trimmed === "") throw badRecipient(where, "the recipient is empty");
  if (/^AGE-SECRET-KEY-/i.test(trimmed)) {
    throw badRecipient(
      where,
      "this is an age secret key, not a recipient; give its age1… recipient",
    );
  }
  if (/^age1/i.test(trimmed)) {
    const recipient = parseX25519Recipient(trimmed, where);
    return { recipient, typage: recipient.text };
  }
  const type = trimmed.split(/\s+/)[0] ?? "";
  if (type === SSH_ED25519_STANZA) {
    const parsed = parseSshEd25519PublicKeyLine(trimmed);
    if (!parsed.ok) throw badRecipient(where, `the ssh-ed25519 recipient ${parsed.reason}`);
    return { recipient: sshRecipient(parsed.value), typage: new SshEd25519Recipient(parsed.value) };
  }
  if (/^(ssh-|ecdsa-|sk-)/.test(type)) {
    const name = /^[A-Za-z0-9@._-]{1,64}$/.test(type) ? type : "SSH";
    throw badRecipient(where, `a ${name} key cannot be a recipient: ${ONLY_SUPPORTED}`);
  }
  throw badRecipient(where, `not a recipient: ${ONLY_SUPPORTED}`);
}

function sshRecipient(publicKey: SshEd25519PublicKey): AgeRecipient {
  return Object.freeze({
    kind: "ssh-ed25519",
    text: formatSshEd25519PublicKey(publicKey),
    sshTag: sshEd25519Tag(publicKey),
  });
}

function x25519Recipient(key: Uint8Array): AgeRecipient {
  return Object.freeze({ kind: "x25519", text: bech32Encode("age", key) });
}

function parseX25519Recipient(text: string, where: string): AgeRecipient {
  const decoded = bech32Decode(text);
  if (decoded === undefined) {
    throw badRecipient(
      where,
      "the age1 recipient is malformed (bad Bech32 checksum or characters)",
    );
  }
  if (decoded.hrp === "age1pq") {
    throw badRecipient(
      where,
      "post-quantum age1pq1 recipients are not supported (Debian's age 1.1.1 cannot decrypt them)",
    );
  }
  if (decoded.hrp !== "age") {
    throw badRecipient(where, `plugin and tag recipients are not supported: ${ONLY_SUPPORTED}`);
  }
  if (decoded.data.length !== 32 || !usableX25519(decoded.data)) {
    throw badRecipient(where, "the age1 recipient is not a usable 32-byte X25519 key");
  }
  return x25519Recipient(decoded.data);
}

/** noble refuses low-order points in any multiplication, so one test multiplication tells. */
function usableX25519(key: Uint8Array): boolean {
  try {
    x25519.scalarMult(new Uint8Array(32).fill(9), key);
    return true;
  } catch {
    return false;
  }
}

/** Digest over the canonical texts, sorted and deduplicated: sha256 hex of their "\n"-joined list. */
export function recipientsDigest(recipients: readonly AgeRecipient[]): string {
  const texts = [...new Set(recipients.map((r) => r.text))].sort();
  return bytesToHex(sha256(new TextEncoder().encode(texts.join("\n"))));
}

// ---- encryption ----

/** The anonymous stanza that records the recipient set; identities ignore its type. */
function digestRecipient(digest: string): Recipient {
  return { wrapFileKey: () => [{ args: [DIGEST_STANZA, digest], body: new Uint8Array(0) }] };
}

/** The anonymous stanza that names the secret; identities ignore its type. */
function secretNameStanza(name: string): Recipient {
  return { wrapFileKey: () => [{ args: [SECRET_STANZA, name], body: new Uint8Array(0) }] };
}

/**
 * Encrypts to every recipient (binary age format), recording recipientsDigest in the header,
 * and `as.secret`, the name of the secret the file is, where given: the header's MAC binds it,
 * so a host can tell one secret's file installed as another's.
 */
export async function encryptSecret(
  plaintext: Uint8Array,
  recipients: readonly AgeRecipient[],
  as: { readonly secret?: string } = {},
): Promise<Uint8Array> {
  if (recipients.length === 0) {
    throw new InputError("no-recipients", "refusing to encrypt a secret to no recipients");
  }
  const { Encrypter } = await typage();
  const encrypter = new Encrypter();
  const texts = new Set(recipients.map((r) => r.text));
  for (const [index, text] of [...texts].entries()) {
    // Resolved from the canonical text, so a hand-built AgeRecipient is checked like a parsed one.
    encrypter.addRecipient(resolveRecipient(text, `recipient ${index + 1}`).typage);
  }
  encrypter.addRecipient(digestRecipient(recipientsDigest(recipients)));
  if (as.secret !== undefined) {
    if (!/^[\x21-\x7e]{1,64}$/.test(as.secret)) {
      throw new InputError(
        "bad-secret-name",
        `cannot encrypt as secret ${JSON.stringify(as.secret)}: a secret's name is 1 to 64 printable characters without spaces`,
      );
    }
    encrypter.addRecipient(secretNameStanza(as.secret));
  }
  const ciphertext = await encrypter.encrypt(plaintext);
  // A header past MAX_HEADER is one nixship itself (and parseHeader) refuses to read back.
  const size = headerSize(ciphertext);
  if (size > MAX_HEADER) {
    throw new InputError(
      "too-many-recipients",
      `a secret for ${texts.size} recipients would have an age header of ${size} bytes, more than the ${MAX_HEADER} bytes (64 KiB) an age file's header may hold here (at most ${MAX_SSH_RECIPIENTS} ssh-ed25519 or ${MAX_X25519_RECIPIENTS} age1 recipients); nothing was written`,
      {
        hint: 'encrypt each secret to fewer hosts: split it into secrets of the same value for parts of the fleet, each with a file of its own (e.g. one per tag, "hosts": "@web"; hosts that share none may keep them at one path)',
      },
    );
  }
  return ciphertext;
}

/**
 * How many recipients fit a header of MAX_HEADER: each ssh-ed25519 stanza is 110 bytes (its
 * line, then its 32-byte body's), each X25519 one 98, beside the version line (22), the
 * nixship-recipients stanza (88), the nixship-secret stanza (84 with a name of 64) and the MAC
 * line (48).
 */
const HEADER_OVERHEAD = 22 + 88 + 84 + 48;
const MAX_SSH_RECIPIENTS = Math.floor((MAX_HEADER - HEADER_OVERHEAD) / 110);
const MAX_X25519_RECIPIENTS = Math.floor((MAX_HEADER - HEADER_OVERHEAD) / 98);

/** The length of a binary age file's header, through its MAC line's newline. */
function headerSize(file: Uint8Array): number {
  const mac = Buffer.from(file.buffer, file.byteOffset, file.byteLength).indexOf("\n--- ");
  if (mac === -1) return file.length;
  const end = file.indexOf(0x0a, mac + 1);
  return end === -1 ? file.length : end + 1;
}

// ---- header ----

interface HeaderStanza {
  readonly args: readonly string[];
  readonly body: Uint8Array;
}

/** Armored input is decoded whole (typage's strict PEM); binary input passes through. */
async function unarmor(input: Uint8Array): Promise<Parsed<Uint8Array>> {
  const head = Buffer.from(input.subarray(0, 64 + ARMOR_BEGIN.length)).toString("latin1");
  if (!head.trimStart().startsWith(ARMOR_BEGIN)) return { ok: true, value: input };
  const { armor } = await typage();
  try {
    return { ok: true, value: armor.decode(Buffer.from(input).toString("latin1")) };
  } catch (err) {
    return { ok: false, reason: `its ASCII armor is malformed (${(err as Error).message})` };
  }
}

/**
 * The header per the age v1 ABNF, read line by line and never past 64 KiB. typage parses it
 * again to decrypt; this copy exists to read a header without a key and synchronously.
 */
function parseHeader(bytes: Uint8Array): Parsed<HeaderStanza[]> {
  let pos = 0;
  const next = (): string | undefined => {
    const limit = Math.min(bytes.length, MAX_HEADER);
    const end = bytes.subarray(0, limit).indexOf(0x0a, pos);
    if (end === -1) return undefined;
    const line = Buffer.from(bytes.subarray(pos, end)).toString("latin1");
    pos = end + 1;
    return line;
  };
  const ended = (): Parsed<HeaderStanza[]> =>
    bytes.length > MAX_HEADER
      ? { ok: false, reason: "its age header is larger than 64 KiB" }
      : { ok: false, reason: "its age header ends early" };

  const version = next();
  if (version !== "age-encryption.org/v1") {
    return version?.startsWith("age-encryption.org/")
      ? { ok: false, reason: "it is an age file of an unsupported version" }
      : { ok: false, reason: "it is not an age-encryption.org/v1 file" };
  }
  const stanzas: HeaderStanza[] = [];
  for (let lineNo = 2; ; lineNo++) {
    const line = next();
    if (line === undefined) return ended();
    if (line.startsWith("--- ")) {
      const mac = decodeBase64NoPad(line.slice(4));
      if (mac?.length !== 32 || stanzas.length === 0) {
        return { ok: false, reason: `its age header is malformed at line ${lineNo}` };
      }
      return { ok: true, value: stanzas };
    }
    const args = line.slice(3).split(" ");
    if (!line.startsWith("-> ") || !args.every((a) => /^[\x21-\x7e]+$/.test(a))) {
      return { ok: false, reason: `its age header is malformed at line ${lineNo}` };
    }
    const body: Uint8Array[] = [];
    for (;;) {
      const bodyLine = next();
      lineNo++;
      if (bodyLine === undefined) return ended();
      const chunk = bodyLine.length <= 64 ? decodeBase64NoPad(bodyLine) : undefined;
      if (chunk === undefined) {
        return {
          ok: false,
          reason: `its age header has a malformed stanza body at line ${lineNo}`,
        };
      }
      body.push(chunk);
      if (bodyLine.length < 64) break;
    }
    stanzas.push({ args, body: new Uint8Array(Buffer.concat(body)) });
  }
}

function summarize(stanzas: readonly HeaderStanza[]): Parsed<AgeHeader> {
  const digests: string[] = [];
  const names: string[] = [];
  const sshTags: string[] = [];
  let x25519Count = 0;
  for (const { args, body } of stanzas) {
    const [type, ...rest] = args;
    if (type === DIGEST_STANZA) {
      if (rest.length !== 1 || !/^[0-9a-f]{64}$/.test(rest[0] ?? "") || body.length !== 0) {
        return { ok: false, reason: "its nixship-recipients stanza is malformed" };
      }
      digests.push(rest[0] as string);
    } else if (type === SECRET_STANZA) {
      if (rest.length !== 1 || body.length !== 0) {
        return { ok: false, reason: "its nixship-secret stanza is malformed" };
      }
      names.push(rest[0] as string);
    } else if (type === SSH_ED25519_STANZA) {
      if (rest.length !== 2) return { ok: false, reason: "it has a malformed ssh-ed25519 stanza" };
      sshTags.push(rest[0] as string);
    } else if (type === X25519_STANZA) {
      if (rest.length !== 1) return { ok: false, reason: "it has a malformed X25519 stanza" };
      x25519Count++;
    }
  }
  if (digests.length > 1)
    return { ok: false, reason: "it has more than one nixship-recipients stanza" };
  if (names.length > 1) return { ok: false, reason: "it has more than one nixship-secret stanza" };
  return {
    ok: true,
    value: {
      stanzas: stanzas.map(({ args: [type = "", ...args] }) => ({ type, args })),
      recipientsDigest: digests[0],
      secretName: names[0],
      sshTags,
      x25519Count,
    },
  };
}

async function readHeader(
  ciphertext: Uint8Array,
): Promise<Parsed<{ binary: Uint8Array; header: AgeHeader }>> {
  const binary = await unarmor(ciphertext);
  if (!binary.ok) return binary;
  const stanzas = parseHeader(binary.value);
  if (!stanzas.ok) return stanzas;
  const header = summarize(stanzas.value);
  if (!header.ok) return header;
  return { ok: true, value: { binary: binary.value, header: header.value } };
}

/** What to do with a secret's file that is not a whole age file. */
const DAMAGED_HINT =
  "restore the file from version control (it is kept beside the fleet file), or set the secret anew with 'nixship secrets set NAME'";

/** Reads only the header (at most 64 KiB of it), binary or armored. */
export async function readAgeHeader(ciphertext: Uint8Array, where: string): Promise<AgeHeader> {
  const read = await readHeader(ciphertext);
  if (!read.ok) throw new InputError("not-age", `${where}: ${read.reason}`, { hint: DAMAGED_HINT });
  return read.value.header;
}

// ---- identities ----

/** Each AgeIdentity's key stays in this closure: the object itself holds only public data. */
const unlockers = new WeakMap<AgeIdentity, () => string | Identity>();

function badIdentity(where: string, what: string): InputError {
  return new InputError("bad-identity", `${where}: ${what}`);
}

function makeIdentity(recipient: AgeRecipient, unlock: () => string | Identity): AgeIdentity {
  const identity: AgeIdentity = Object.freeze({ kind: recipient.kind, recipient });
  unlockers.set(identity, unlock);
  return identity;
}

/**
 * Parses an identity file: AGE-SECRET-KEY-1 lines (with "#" comments and blank lines), or one
 * unencrypted OpenSSH ed25519 private key. Messages name lines, never their text.
 */
export function parseIdentities(text: string, where: string): AgeIdentity[] {
  const pem = /-----BEGIN ([A-Z0-9 ]{1,40})-----/.exec(text);
  if (pem !== null) return [parsePemIdentity(text, pem[1] as string, where)];
  const identities: AgeIdentity[] = [];
  for (const [index, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    identities.push(parseAgeSecretKey(line, `${where}, line ${index + 1}`));
  }
  if (identities.length === 0) {
    throw badIdentity(
      where,
      "holds no identities (expected AGE-SECRET-KEY-1… lines or an OpenSSH key)",
    );
  }
  return identities;
}

function parsePemIdentity(text: string, label: string, where: string): AgeIdentity {
  const refusals: Record<string, string> = {
    "RSA PRIVATE KEY": "is an RSA key; only ssh-ed25519 keys can be identities",
    "EC PRIVATE KEY": "is an ECDSA key; only ssh-ed25519 keys can be identities",
    "DSA PRIVATE KEY": "is a DSA key; only ssh-ed25519 keys can be identities",
    "ENCRYPTED PRIVATE KEY":
      "is a passphrase-protected key; nixship needs an unencrypted ed25519 key",
    "AGE ENCRYPTED FILE":
      "is an age-encrypted file; passphrase-protected identity files are not supported",
  };
  const refusal = refusals[label];
  if (refusal !== undefined) throw badIdentity(where, refusal);
  if (label !== "OPENSSH PRIVATE KEY") {
    throw badIdentity(where, `holds a '${label}' block, not an OpenSSH ed25519 private key`);
  }
  const parsed = parseOpenSshPrivateKey(text);
  if (!parsed.ok) throw badIdentity(where, `the SSH key ${parsed.reason}`);
  const identity = new SshEd25519Identity(parsed.value);
  return makeIdentity(sshRecipient(parsed.value.publicKey), () => identity);
}

function parseAgeSecretKey(line: string, where: string): AgeIdentity {
  if (/^AGE-SECRET-KEY-PQ-1/i.test(line)) {
    throw badIdentity(
      where,
      "post-quantum identities are not supported (Debian's age 1.1.1 cannot use them)",
    );
  }
  if (/^AGE-PLUGIN-/i.test(line)) throw badIdentity(where, "plugin identities are not supported");
  if (/^(ssh-|ecdsa-|sk-)/.test(line)) {
    throw badIdentity(where, "is an SSH public key; an identity file needs the private key");
  }
  if (!/^AGE-SECRET-KEY-1/i.test(line)) {
    throw badIdentity(where, "not an AGE-SECRET-KEY-1… identity (its text is not shown)");
  }
  const decoded = bech32Decode(line);
  if (decoded?.hrp !== "age-secret-key-" || decoded.data.length !== 32) {
    throw badIdentity(where, "malformed AGE-SECRET-KEY-1… identity (bad checksum or length)");
  }
  const canonical = bech32Encode("age-secret-key-", decoded.data).toUpperCase();
  return makeIdentity(x25519Recipient(x25519.getPublicKey(decoded.data)), () => canonical);
}

/** A fresh X25519 identity (not the post-quantum kind, which Debian's age 1.1.1 cannot read). */
export async function generateAgeIdentity(): Promise<{ identity: string; recipient: string }> {
  const { generateX25519Identity, identityToRecipient } = await typage();
  const identity = await generateX25519Identity();
  return { identity, recipient: await identityToRecipient(identity) };
}

// ---- decryption ----

/**
 * Decrypts (binary or armored). typage tries identities in order and stops at the first that
 * returns a key; a last probe identity that is reached therefore means no identity matched, and
 * any other failure means the file is corrupt.
 */
export async function decryptSecret(
  ciphertext: Uint8Array,
  identities: readonly AgeIdentity[],
  where: string,
): Promise<Uint8Array> {
  const read = await readHeader(ciphertext);
  if (!read.ok) {
    throw new OperationError("secret-corrupt", `${where}: ${read.reason}`, { hint: DAMAGED_HINT });
  }
  const { binary, header } = read.value;
  if (identities.length === 0) {
    throw new OperationError(
      "secret-not-for-identity",
      `${where}: no identities to decrypt it with`,
    );
  }
  const { Decrypter } = await typage();
  const decrypter = new Decrypter();
  for (const identity of identities) {
    const unlock = unlockers.get(identity);
    if (unlock === undefined)
      throw new TypeError("decryptSecret: identity not made by parseIdentities");
    decrypter.addIdentity(unlock());
  }
  let noneMatched = false;
  decrypter.addIdentity({
    unwrapFileKey: () => {
      noneMatched = true;
      return null;
    },
  });
  try {
    return await decrypter.decrypt(binary);
  } catch (err) {
    if (noneMatched) {
      const tried = identities.map((i) => shorten(i.recipient.text)).join(", ");
      throw new OperationError(
        "secret-not-for-identity",
        `${where}: none of the identities (${tried}) can open it; it is for ` +
          `${header.sshTags.length} ssh-ed25519 and ${header.x25519Count} X25519 recipient(s)`,
        { hint: "re-encrypt the secret with this key among its recipients" },
      );
    }
    throw new OperationError(
      "secret-corrupt",
      `${where}: the secret is corrupt or was tampered with`,
      { cause: err, hint: DAMAGED_HINT },
    );
  }
}

function shorten(text: string): string {
  return text.length > 28 ? `${text.slice(0, 27)}…` : text;
}
