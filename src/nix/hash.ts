// sha256 hashes in the four text forms Nix uses: nix32, hex, base64 and SRI.
import { createHash } from "node:crypto";
import { InputError } from "../errors.js";
import { nix32Decode, nix32Encode } from "./nix32.js";

export const SHA256_BYTES = 32;

export type HashFormat = "nix32" | "hex" | "base64" | "sri";

/** A sha256 digest. `toString()` gives Nix's canonical `sha256:<nix32>` form. */
export class Sha256 {
  readonly bytes: Uint8Array;

  constructor(bytes: Uint8Array) {
    if (bytes.length !== SHA256_BYTES) {
      throw new InputError("bad-hash", `a sha256 digest has 32 bytes, not ${bytes.length}`);
    }
    this.bytes = bytes;
  }

  static of(data: string | Uint8Array): Sha256 {
    return new Sha256(createHash("sha256").update(data).digest());
  }

  /**
   * Parses `sha256:<nix32|hex|base64>`, `sha256-<base64>` (SRI) or a bare digest in any
   * of those encodings, telling them apart by length as Nix does.
   */
  static parse(text: string): Sha256 {
    let body = text;
    if (text.startsWith("sha256-")) {
      return new Sha256(decodeBase64Strict(text.slice(7), text));
    }
    if (text.startsWith("sha256:")) body = text.slice(7);
    else if (/^[a-z0-9]+[:-]/.test(text)) {
      throw new InputError("bad-hash", `unsupported hash type in '${text}' (only sha256 is used)`);
    }
    if (body.length === 52) return new Sha256(nix32Decode(body, SHA256_BYTES));
    if (body.length === 64 && /^[0-9a-f]+$/i.test(body)) {
      return new Sha256(Buffer.from(body, "hex"));
    }
    if (body.length === 44) return new Sha256(decodeBase64Strict(body, text));
    throw new InputError(
      "bad-hash",
      `'${text}' is not a sha256 hash in nix32, hex, base64 or SRI form`,
    );
  }

  format(form: HashFormat): string {
    switch (form) {
      case "nix32":
        return `sha256:${nix32Encode(this.bytes)}`;
      case "hex":
        return `sha256:${Buffer.from(this.bytes).toString("hex")}`;
      case "base64":
        return `sha256:${Buffer.from(this.bytes).toString("base64")}`;
      case "sri":
        return `sha256-${Buffer.from(this.bytes).toString("base64")}`;
    }
  }

  get nix32(): string {
    return nix32Encode(this.bytes);
  }

  get hex(): string {
    return Buffer.from(this.bytes).toString("hex");
  }

  equals(other: Sha256): boolean {
    return Buffer.from(this.bytes).equals(Buffer.from(other.bytes));
  }

  toString(): string {
    return this.format("nix32");
  }
}

function decodeBase64Strict(body: string, whole: string): Uint8Array {
  if (!/^[A-Za-z0-9+/]{43}=$/.test(body)) {
    throw new InputError("bad-hash", `'${whole}' is not valid base64 for a sha256 digest`);
  }
  return Buffer.from(body, "base64");
}
