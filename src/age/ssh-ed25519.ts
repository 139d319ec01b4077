// age's ssh-ed25519 recipient type (age-encryption.org/v1, as age and rage implement it) on noble's
// primitives, plus the two SSH encodings it needs: the public key line and openssh-key-v1.

import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { ed25519, x25519 } from "@noble/curves/ed25519.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256, sha512 } from "@noble/hashes/sha2.js";
import type { Identity, Recipient, Stanza } from "age-encryption";

export const SSH_ED25519_STANZA = "ssh-ed25519";
const LABEL = new TextEncoder().encode("age-encryption.org/v1/ssh-ed25519");
const ZERO_NONCE = new Uint8Array(12);

/** A parse that can be refused: the reason names what is wrong, never the key bytes. */
export type Parsed<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly reason: string };

export interface SshEd25519PublicKey {
  /** The 32-byte Ed25519 public key. */
  readonly key: Uint8Array;
  /** SSH wire format (RFC 8709): string "ssh-ed25519" || string key. */
  readonly wire: Uint8Array;
}

export interface SshEd25519PrivateKey {
  readonly publicKey: SshEd25519PublicKey;
  /** The 32-byte Ed25519 seed (RFC 8032 private key). */
  readonly seed: Uint8Array;
}

/** age's unpadded base64; decoders must refuse non-canonical text, so this re-encodes to check. */
export function decodeBase64NoPad(text: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9+/]*$/.test(text) || text.length % 4 === 1) return undefined;
  const bytes = new Uint8Array(Buffer.from(text, "base64"));
  return encodeBase64NoPad(bytes) === text ? bytes : undefined;
}

export function encodeBase64NoPad(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("base64").replace(/=+$/, "");
}

function sshString(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + bytes.length);
  new DataView(out.buffer).setUint32(0, bytes.length);
  out.set(bytes, 4);
  return out;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a).equals(Buffer.from(b));
}

function isAllZero(bytes: Uint8Array): boolean {
  return bytes.every((b) => b === 0);
}

export function sshEd25519PublicKey(key: Uint8Array): SshEd25519PublicKey {
  const wire = concat(sshString(new TextEncoder().encode(SSH_ED25519_STANZA)), sshString(key));
  return { key: new Uint8Array(key), wire };
}

/** The stanza's key tag: base64 (unpadded) of SHA-256 of the wire-format key, first 4 bytes. */
export function sshEd25519Tag(publicKey: SshEd25519PublicKey): string {
  return encodeBase64NoPad(sha256(publicKey.wire).subarray(0, 4));
}

/** "ssh-ed25519 BASE64", the authorized_keys form without a comment. */
export function formatSshEd25519PublicKey(publicKey: SshEd25519PublicKey): string {
  return `${SSH_ED25519_STANZA} ${Buffer.from(publicKey.wire).toString("base64")}`;
}

/** A point that decodes and is not of small order: the X25519 it converts to must be usable. */
function usableEd25519Point(key: Uint8Array): boolean {
  try {
    return !ed25519.Point.fromBytes(key).isSmallOrder();
  } catch {
    return false; // not a point on the curve: refused below with a reason
  }
}

/** Reads SSH wire strings and integers; running past the end throws, which callers turn into a reason. */
class WireReader {
  readonly #bytes: Uint8Array;
  #pos = 0;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
  }

  u32(): number {
    if (this.#pos + 4 > this.#bytes.length) throw new RangeError("truncated");
    const v = new DataView(this.#bytes.buffer, this.#bytes.byteOffset).getUint32(this.#pos);
    this.#pos += 4;
    return v;
  }

  string(): Uint8Array {
    const length = this.u32();
    if (this.#pos + length > this.#bytes.length) throw new RangeError("truncated");
    const out = this.#bytes.subarray(this.#pos, this.#pos + length);
    this.#pos += length;
    return out;
  }

  text(): string {
    return Buffer.from(this.string()).toString("latin1");
  }

  rest(): Uint8Array {
    const out = this.#bytes.subarray(this.#pos);
    this.#pos = this.#bytes.length;
    return out;
  }
}

/** Parses the wire format of an ssh-ed25519 public key; other key types are refused by name. */
function parseWirePublicKey(wire: Uint8Array): Parsed<SshEd25519PublicKey> {
  try {
    const r = new WireReader(wire);
    const type = r.text();
    if (type !== SSH_ED25519_STANZA) {
      return {
        ok: false,
        reason: `is a ${printable(type)} key; only ssh-ed25519 keys are supported`,
      };
    }
    const key = r.string();
    if (key.length !== 32 || r.rest().length !== 0) {
      return { ok: false, reason: "holds a malformed ssh-ed25519 public key" };
    }
    if (!usableEd25519Point(key)) {
      return { ok: false, reason: "holds an ssh-ed25519 key that is not a usable curve point" };
    }
    return { ok: true, value: sshEd25519PublicKey(key) };
  } catch {
    return { ok: false, reason: "holds a truncated SSH public key" };
  }
}

/** Key type names come from the file; show them only when they look like names. */
function printable(type: string): string {
  return /^[A-Za-z0-9@._-]{1,64}$/.test(type) ? type : "unknown";
}

/** "ssh-ed25519 BASE64 [comment]", as in a .pub file, authorized_keys or the fleet file. */
export function parseSshEd25519PublicKeyLine(line: string): Parsed<SshEd25519PublicKey> {
  const [type, body] = line.trim().split(/\s+/);
  if (type !== SSH_ED25519_STANZA) {
    return {
      ok: false,
      reason: `is a ${printable(type ?? "")} key; only ssh-ed25519 keys are supported`,
    };
  }
  if (body === undefined || !/^[A-Za-z0-9+/]+={0,2}$/.test(body) || body.length % 4 !== 0) {
    return { ok: false, reason: "has no base64 key after 'ssh-ed25519'" };
  }
  const wire = new Uint8Array(Buffer.from(body, "base64"));
  if (Buffer.from(wire).toString("base64") !== body) {
    return { ok: false, reason: "has a key that is not canonical base64" };
  }
  return parseWirePublicKey(wire);
}

const OPENSSH_BEGIN = "-----BEGIN OPENSSH PRIVATE KEY-----";
const OPENSSH_END = "-----END OPENSSH PRIVATE KEY-----";
const OPENSSH_MAGIC = "openssh-key-v1\0";

/**
 * One unencrypted OpenSSH ed25519 private key (PROTOCOL.key, openssh-key-v1). Reasons never
 * carry key bytes or the comment.
 */
export function parseOpenSshPrivateKey(text: string): Parsed<SshEd25519PrivateKey> {
  const lines = text.trim().split(/\r?\n/);
  if (lines[0] !== OPENSSH_BEGIN || lines[lines.length - 1] !== OPENSSH_END) {
    return { ok: false, reason: "is not a single OpenSSH private key block" };
  }
  const body = lines.slice(1, -1).join("");
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body)) {
    return { ok: false, reason: "has an OpenSSH private key that is not base64" };
  }
  try {
    return parseOpenSshBlob(new Uint8Array(Buffer.from(body, "base64")));
  } catch {
    return { ok: false, reason: "has a truncated OpenSSH private key" };
  }
}

function parseOpenSshBlob(blob: Uint8Array): Parsed<SshEd25519PrivateKey> {
  const magic = new TextEncoder().encode(OPENSSH_MAGIC);
  if (blob.length < magic.length || !equalBytes(blob.subarray(0, magic.length), magic)) {
    return { ok: false, reason: "is not in the openssh-key-v1 format" };
  }
  const r = new WireReader(blob.subarray(magic.length));
  const cipher = r.text();
  const kdf = r.text();
  r.string(); // kdf options: only used with a passphrase
  if (r.u32() !== 1) return { ok: false, reason: "holds more than one key; give one key per file" };
  const publicKey = parseWirePublicKey(r.string());
  if (!publicKey.ok) return publicKey;
  if (cipher !== "none" || kdf !== "none") {
    return {
      ok: false,
      reason: "is passphrase-protected; nixship needs an unencrypted key (as sshd's host keys are)",
    };
  }
  const secret = r.string();
  if (r.rest().length !== 0 || secret.length % 8 !== 0) {
    return { ok: false, reason: "has trailing or misaligned data in its OpenSSH private key" };
  }
  const s = new WireReader(secret);
  const check1 = s.u32();
  const check2 = s.u32();
  if (check1 !== check2) {
    return { ok: false, reason: "has mismatched check numbers in its OpenSSH private key" };
  }
  if (s.text() !== SSH_ED25519_STANZA) {
    return { ok: false, reason: "has a private key whose type differs from its public key" };
  }
  const pub = s.string();
  const priv = s.string();
  s.string(); // comment
  const padding = s.rest();
  const pk = publicKey.value.key;
  if (
    !equalBytes(pub, pk) ||
    priv.length !== 64 ||
    !equalBytes(priv.subarray(32), pk) ||
    !padding.every((b, i) => b === i + 1)
  ) {
    return { ok: false, reason: "has an inconsistent OpenSSH private key" };
  }
  const seed = new Uint8Array(priv.subarray(0, 32));
  if (!equalBytes(ed25519.getPublicKey(seed), pk)) {
    return { ok: false, reason: "has a private key that does not match its public key" };
  }
  return { ok: true, value: { publicKey: publicKey.value, seed } };
}

/** The recipient's X25519 key and the tweak both sides apply (they depend on public data only). */
function recipientParams(publicKey: SshEd25519PublicKey): {
  montgomery: Uint8Array;
  tweak: Uint8Array;
} {
  return {
    montgomery: ed25519.utils.toMontgomery(publicKey.key),
    tweak: hkdf(sha256, new Uint8Array(0), publicKey.wire, LABEL, 32),
  };
}

function wrapKey(sharedSecret: Uint8Array, share: Uint8Array, montgomery: Uint8Array): Uint8Array {
  return hkdf(sha256, sharedSecret, concat(share, montgomery), LABEL, 32);
}

/** typage Recipient for one ssh-ed25519 public key. */
export class SshEd25519Recipient implements Recipient {
  readonly #tag: string;
  readonly #montgomery: Uint8Array;
  readonly #tweak: Uint8Array;

  constructor(publicKey: SshEd25519PublicKey) {
    this.#tag = sshEd25519Tag(publicKey);
    ({ montgomery: this.#montgomery, tweak: this.#tweak } = recipientParams(publicKey));
  }

  wrapFileKey(fileKey: Uint8Array): Stanza[] {
    const ephemeral = x25519.utils.randomSecretKey();
    const share = x25519.getPublicKey(ephemeral);
    const shared = x25519.scalarMult(this.#tweak, x25519.scalarMult(ephemeral, this.#montgomery));
    const body = chacha20poly1305(wrapKey(shared, share, this.#montgomery), ZERO_NONCE).encrypt(
      fileKey,
    );
    // A Stanza is plain data (typage's class adds no behaviour): written as such, typage itself
    // stays unloaded until something is encrypted (see typage.ts).
    return [{ args: [SSH_ED25519_STANZA, this.#tag, encodeBase64NoPad(share)], body }];
  }
}

/**
 * typage Identity for one ssh-ed25519 private key. The X25519 scalar lives in a private field;
 * the seed is not kept.
 */
export class SshEd25519Identity implements Identity {
  readonly #tag: string;
  readonly #scalar: Uint8Array;
  readonly #montgomery: Uint8Array;
  readonly #tweak: Uint8Array;

  constructor(privateKey: SshEd25519PrivateKey) {
    this.#tag = sshEd25519Tag(privateKey.publicKey);
    this.#scalar = sha512(privateKey.seed).slice(0, 32);
    ({ montgomery: this.#montgomery, tweak: this.#tweak } = recipientParams(privateKey.publicKey));
  }

  /**
   * null when no ssh-ed25519 stanza carries this key's tag. Throws on any malformed ssh-ed25519
   * stanza (whoever it is for), on a low-order share, and when stanzas carry this key's tag but
   * none decrypts: with a tag match the file was meant for this key, so that is corruption.
   */
  unwrapFileKey(stanzas: Stanza[]): Uint8Array | null {
    let tagMatched = false;
    for (const s of stanzas) {
      if (s.args[0] !== SSH_ED25519_STANZA) continue;
      const [, tag = "", shareText = ""] = s.args;
      const share = decodeBase64NoPad(shareText);
      if (s.args.length !== 3 || decodeBase64NoPad(tag)?.length !== 4 || share?.length !== 32) {
        throw new Error("malformed ssh-ed25519 stanza: expected a 4-byte tag and a 32-byte share");
      }
      if (s.body.length !== 32)
        throw new Error("malformed ssh-ed25519 stanza: body is not 32 bytes");
      if (tag !== this.#tag) continue;
      tagMatched = true;
      const shared = this.#sharedSecret(share);
      try {
        return chacha20poly1305(wrapKey(shared, share, this.#montgomery), ZERO_NONCE).decrypt(
          s.body,
        );
      } catch {
        // A tag is 32 bits: another stanza with this tag may still be ours.
      }
    }
    if (tagMatched) throw new Error("the ssh-ed25519 stanza for this key does not decrypt");
    return null;
  }

  /** X25519(scalar, share), refused when all zero (the spec's MUST), then tweaked. */
  #sharedSecret(share: Uint8Array): Uint8Array {
    let untweaked: Uint8Array;
    try {
      untweaked = x25519.scalarMult(this.#scalar, share);
    } catch (err) {
      // noble refuses the low-order points, the inputs that give an all-zero secret, up front
      throw new Error("ssh-ed25519 stanza: the share is a low-order point", { cause: err });
    }
    if (isAllZero(untweaked)) throw new Error("ssh-ed25519 stanza: the shared secret is all zero");
    return x25519.scalarMult(this.#tweak, untweaked);
  }
}
