// Nix's base-32 ("nix32"): the alphabet without e, o, u, t, most significant group first.
import { InputError } from "../errors.js";

export const NIX32_ALPHABET = "0123456789abcdfghijklmnpqrsvwxyz";
const VALUE = new Map<string, number>([...NIX32_ALPHABET].map((c, i) => [c, i]));

export function nix32Length(byteLength: number): number {
  return Math.floor((byteLength * 8 - 1) / 5) + 1;
}

export function nix32Encode(bytes: Uint8Array): string {
  const len = nix32Length(bytes.length);
  let out = "";
  for (let n = len - 1; n >= 0; n--) {
    const b = n * 5;
    const i = b >> 3;
    const j = b & 7;
    const lo = (bytes[i] ?? 0) >> j;
    const hi = i + 1 < bytes.length ? (bytes[i + 1] ?? 0) << (8 - j) : 0;
    out += NIX32_ALPHABET[(lo | hi) & 31];
  }
  return out;
}

/** Decodes nix32 text into `byteLength` bytes (derived from the text length when omitted). */
export function nix32Decode(text: string, byteLength?: number): Uint8Array {
  const size = byteLength ?? Math.floor((text.length * 5) / 8);
  if (nix32Length(size) !== text.length) {
    throw new InputError(
      "bad-nix32",
      `nix32 string of length ${text.length} cannot hold ${size} bytes`,
    );
  }
  const out = new Uint8Array(size);
  for (let n = 0; n < text.length; n++) {
    const c = text[text.length - 1 - n] as string;
    const digit = VALUE.get(c);
    if (digit === undefined) {
      throw new InputError("bad-nix32", `invalid nix32 character '${c}' in '${text}'`);
    }
    const b = n * 5;
    const i = b >> 3;
    const j = b & 7;
    out[i] = ((out[i] ?? 0) | (digit << j)) & 0xff;
    const carry = digit >> (8 - j);
    if (i + 1 < size) {
      out[i + 1] = ((out[i + 1] ?? 0) | carry) & 0xff;
    } else if (carry !== 0) {
      throw new InputError("bad-nix32", `nix32 string '${text}' has bits set past the last byte`);
    }
  }
  return out;
}
