// NAR framing shared by the encoder and by tests: str() tokens, u64 lengths, and a small
// builder that writes tokens in exactly the order given, so tests can craft malformed NARs.

export const NAR_MAGIC = "nix-archive-1";

/** A token for `narTokens`: strings and byte arrays are framed with str(), `raw` bytes are not. */
export type NarToken = string | Uint8Array | { readonly raw: Uint8Array };

/** Zero bytes that pad a string of `length` bytes up to the next multiple of 8. */
export function narPadding(length: number): number {
  return (8 - (length % 8)) % 8;
}

/** A u64 little-endian integer, as NAR lengths are written. */
export function narU64(n: number | bigint): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64LE(BigInt(n));
  return out;
}

/** `str(s)`: u64 LE length, the bytes, then zero padding to a multiple of 8. */
export function narString(s: string | Uint8Array): Buffer {
  const bytes = typeof s === "string" ? Buffer.from(s, "utf8") : s;
  const out = Buffer.alloc(8 + bytes.length + narPadding(bytes.length));
  out.writeBigUInt64LE(BigInt(bytes.length));
  out.set(bytes, 8);
  return out;
}

/** Concatenates tokens; used for the encoder's fixed token runs and by tests. */
export function narTokens(...tokens: readonly NarToken[]): Buffer {
  return Buffer.concat(
    tokens.map((t) => (typeof t === "string" || t instanceof Uint8Array ? narString(t) : t.raw)),
  );
}

/** Token lists for single nodes; `directory` keeps the entries in the order given. */
export const narNode = {
  regular(contents: string | Uint8Array, executable = false): NarToken[] {
    const exec: NarToken[] = executable ? ["executable", ""] : [];
    return ["(", "type", "regular", ...exec, "contents", contents, ")"];
  },
  symlink(target: string | Uint8Array): NarToken[] {
    return ["(", "type", "symlink", "target", target, ")"];
  },
  directory(entries: ReadonlyArray<readonly [string | Uint8Array, NarToken[]]>): NarToken[] {
    const body = entries.flatMap(([name, node]) => [
      "entry",
      "(",
      "name",
      name,
      "node",
      ...node,
      ")",
    ]);
    return ["(", "type", "directory", ...body, ")"];
  },
};

/** A whole NAR: the magic followed by the root node's tokens. */
export function buildNar(root: readonly NarToken[]): Buffer {
  return narTokens(NAR_MAGIC, ...root);
}
