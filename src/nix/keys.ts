// Nix signing keys (`name:base64`) and ed25519 signatures over narinfo fingerprints.

import type { KeyObject } from "node:crypto";
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify } from "node:crypto";
import { InputError } from "../errors.js";

export interface SecretKey {
  readonly name: string;
  /** 32-byte seed followed by the 32-byte public key, as Nix stores it. */
  readonly bytes: Uint8Array;
  readonly key: KeyObject;
}

export interface PublicKey {
  readonly name: string;
  readonly bytes: Uint8Array;
  readonly key: KeyObject;
}

const KEY_NAME = /^[^:\s]+$/;

function b64url(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("base64url");
}

/** Other kinds of key a file given as a Nix secret key may hold, by how their text starts. */
const OTHER_SECRET_KEYS: readonly (readonly [RegExp, string])[] = [
  [/^(# created: .*\n(# public key: .*\n)?)?AGE-SECRET-KEY-1/i, "an age identity"],
  [/^-----BEGIN (OPENSSH|RSA|EC|DSA|ENCRYPTED)? ?PRIVATE KEY-----/, "a PEM or OpenSSH private key"],
];

/** Text that may be a key's own bytes: a run of base64 as long as a public key's or longer. */
const KEY_MATERIAL = /^[A-Za-z0-9+/=_-]{40,}$/;

/**
 * Splits `NAME:BASE64`. A secret key's text is never quoted in an error, nor is its name
 * unless it is one (a file holding something else may hold a password before its first ':').
 */
function splitKey(text: string, what: string, byteLength: number): { name: string; bytes: Buffer } {
  const trimmed = text.trim();
  const secret = what !== "public key";
  // Another kind of secret, where either kind of Nix key belongs: named, never quoted.
  const other = OTHER_SECRET_KEYS.find(([pattern]) => pattern.test(trimmed));
  if (other !== undefined) {
    throw new InputError(
      "bad-key",
      `${what} must look like 'NAME:BASE64' (a Nix signing key); this holds ${other[1]} (its text is not shown)`,
    );
  }
  const colon = trimmed.indexOf(":");
  const name = trimmed.slice(0, Math.max(colon, 0));
  if (colon <= 0 || (secret && !KEY_NAME.test(name))) {
    // Where a public key belongs, a key's bare base64 (a secret key without its name?) is not
    // quoted either.
    const got =
      secret || KEY_MATERIAL.test(trimmed)
        ? " (its text is not shown)"
        : `, got '${preview(trimmed)}'`;
    throw new InputError("bad-key", `${what} must look like 'NAME:BASE64'${got}`);
  }
  const body = trimmed.slice(colon + 1);
  const unlike = notBase64(body);
  if (unlike !== undefined) {
    throw new InputError(
      "bad-key",
      `${what} '${preview(name)}' is not one key in base64: it has ${unlike}`,
    );
  }
  const bytes = Buffer.from(body, "base64");
  if (bytes.length !== byteLength) {
    // A secret key where a public one belongs: its own hint (the reverse has one at --key).
    const hint =
      !secret && bytes.length === 64
        ? ": this is a secret key; give its public half ('nixship key public FILE')"
        : "";
    throw new InputError(
      "bad-key",
      `${what} '${preview(name)}' must hold ${byteLength} bytes of base64, found ${bytes.length}${hint}`,
    );
  }
  return { name, bytes };
}

/** What in `body` base64 does not have (named by kind, never shown), or undefined. */
function notBase64(body: string): string | undefined {
  if (/^[A-Za-z0-9+/]+={0,2}$/.test(body)) return undefined;
  if (/\s/.test(body)) {
    return "a space or a line break inside it (a key is one word: one key per file, not wrapped)";
  }
  if (/[-_]/.test(body)) return "'-' or '_' (base64url's) where base64 has '+' and '/'";
  if (body === "") return "nothing after 'NAME:'";
  return "characters base64 does not use";
}

function preview(text: string): string {
  return text.length > 24 ? `${text.slice(0, 24)}…` : text;
}

export function generateSecretKey(name: string): SecretKey {
  if (!KEY_NAME.test(name)) {
    throw new InputError("bad-key", `key name '${name}' must be non-empty, without ':' or spaces`);
  }
  const { privateKey } = generateKeyPairSync("ed25519");
  const jwk = privateKey.export({ format: "jwk" });
  const seed = Buffer.from(jwk.d as string, "base64url");
  const pub = Buffer.from(jwk.x as string, "base64url");
  return { name, bytes: Buffer.concat([seed, pub]), key: privateKey };
}

export function parseSecretKey(text: string): SecretKey {
  const { name, bytes } = splitKey(text, "secret key", 64);
  const seed = bytes.subarray(0, 32);
  const pub = bytes.subarray(32);
  const key = createPrivateKey({
    key: { kty: "OKP", crv: "Ed25519", d: b64url(seed), x: b64url(pub) },
    format: "jwk",
  });
  const derived = Buffer.from(
    createPublicKey(key).export({ format: "jwk" }).x as string,
    "base64url",
  );
  if (!derived.equals(pub)) {
    throw new InputError(
      "bad-key",
      `secret key '${name}': its public half does not match its seed`,
    );
  }
  return { name, bytes, key };
}

export function parsePublicKey(text: string): PublicKey {
  const { name, bytes } = splitKey(text, "public key", 32);
  const key = createPublicKey({
    key: { kty: "OKP", crv: "Ed25519", x: b64url(bytes) },
    format: "jwk",
  });
  return { name, bytes, key };
}

/** Secret key file text: `name:base64(64 bytes)`, no trailing newline (as `nix key generate-secret`). */
export function formatSecretKey(key: SecretKey): string {
  return `${key.name}:${Buffer.from(key.bytes).toString("base64")}`;
}

export function publicKeyOf(secret: SecretKey): PublicKey {
  return parsePublicKey(
    `${secret.name}:${Buffer.from(secret.bytes.subarray(32)).toString("base64")}`,
  );
}

export function formatPublicKey(key: PublicKey): string {
  return `${key.name}:${Buffer.from(key.bytes).toString("base64")}`;
}

/** Signs `message`, giving `name:base64(signature)`. */
export function signDetached(secret: SecretKey, message: string): string {
  const sig = sign(null, Buffer.from(message), secret.key);
  return `${secret.name}:${sig.toString("base64")}`;
}

export type SignatureCheck =
  | { readonly ok: true; readonly keyName: string }
  | { readonly ok: false; readonly reason: "untrusted-key" | "bad-signature" | "malformed" };

/** Checks one `name:base64` signature of `message` against the trusted keys. */
export function verifyDetached(
  signature: string,
  message: string,
  trusted: readonly PublicKey[],
): SignatureCheck {
  const colon = signature.indexOf(":");
  if (colon <= 0) return { ok: false, reason: "malformed" };
  const name = signature.slice(0, colon);
  const body = signature.slice(colon + 1);
  const sig = Buffer.from(body, "base64");
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body) || sig.length !== 64) {
    return { ok: false, reason: "malformed" };
  }
  const candidates = trusted.filter((k) => k.name === name);
  if (candidates.length === 0) return { ok: false, reason: "untrusted-key" };
  for (const k of candidates) {
    if (verify(null, Buffer.from(message), k.key, sig)) return { ok: true, keyName: name };
  }
  return { ok: false, reason: "bad-signature" };
}
