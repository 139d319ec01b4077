// Store paths: `/nix/store/<32 nix32 chars>-<name>`, parsing, validation and construction.
import { InputError } from "../errors.js";
import { Sha256 } from "./hash.js";
import { NIX32_ALPHABET, nix32Encode } from "./nix32.js";

export const STORE_DIR = "/nix/store";
export const HASH_PART_LENGTH = 32;
export const MAX_NAME_LENGTH = 211;

/** A validated absolute store path. The brand stops unchecked strings from passing as one. */
export type StorePath = string & { readonly __brand: "StorePath" };

const STORE_PREFIX = `${STORE_DIR}/`;
/** The hash part and its '-' right after `/nix/store/`. */
const HASH_PART_AT = new RegExp(`^${STORE_DIR}/[${NIX32_ALPHABET}]{${HASH_PART_LENGTH}}-`);
const NAME_CHARS = /^[0-9a-zA-Z+\-._?=]+$/;

export interface StorePathParts {
  readonly path: StorePath;
  readonly hashPart: string;
  readonly name: string;
  /** `<hash>-<name>`, as narinfo References lists it. */
  readonly baseName: string;
}

/** Returns why `name` is not a valid store path name, or undefined when it is. */
export function storePathNameProblem(name: string): string | undefined {
  if (name.length === 0) return "the name is empty";
  if (name.length > MAX_NAME_LENGTH) return `the name is longer than ${MAX_NAME_LENGTH} characters`;
  if (!NAME_CHARS.test(name)) return "the name has characters outside [0-9a-zA-Z+-._?=]";
  if (name === "." || name === "..") return "the name is '.' or '..'";
  if (name.startsWith(".-") || name.startsWith("..-")) return "the name starts with '.-' or '..-'";
  return undefined;
}

/** Parses `<hash>-<name>` (a base name, as in narinfo References). */
export function parseBaseName(baseName: string, where = "store path"): StorePathParts {
  return parseStorePath(`${STORE_DIR}/${baseName}`, where);
}

/**
 * Why `text` is not a store path (`where` names it in the message), or undefined when it is.
 * Throws nothing: hosts check every path of a release, and most are valid.
 */
export function storePathProblem(text: string, where = "store path"): string | undefined {
  if (!text.startsWith(STORE_PREFIX)) return `${where} '${text}' is not under ${STORE_DIR}/`;
  if (!HASH_PART_AT.test(text)) {
    return `${where} '${text}' does not start with a 32-character nix32 hash and '-'`;
  }
  const problem = storePathNameProblem(text.slice(STORE_PREFIX.length + HASH_PART_LENGTH + 1));
  if (problem === undefined) return undefined;
  // A file inside a store path (…-libd-1.0/lib): the path it is in is what was meant.
  const slash = text.indexOf("/", STORE_PREFIX.length);
  const enclosing = slash === -1 ? undefined : text.slice(0, slash);
  if (enclosing !== undefined && storePathProblem(enclosing) === undefined) {
    return `${where} '${text}' is inside the store path '${enclosing}': give that path`;
  }
  return `${where} '${text}': ${problem}`;
}

export function parseStorePath(text: string, where = "store path"): StorePathParts {
  const problem = storePathProblem(text, where);
  if (problem !== undefined) throw new InputError("bad-store-path", problem);
  const baseName = text.slice(STORE_PREFIX.length);
  const hashPart = baseName.slice(0, HASH_PART_LENGTH);
  const name = baseName.slice(HASH_PART_LENGTH + 1);
  return { path: text as StorePath, hashPart, name, baseName };
}

export function isStorePath(text: string): text is StorePath {
  return storePathProblem(text) === undefined;
}

/** Maps `/nix/store/<hash>-name/sub/dir` to its store path, or undefined if not inside one. */
export function storePathOf(text: string): StorePath | undefined {
  const prefix = `${STORE_DIR}/`;
  if (!text.startsWith(prefix)) return undefined;
  const slash = text.indexOf("/", prefix.length);
  const candidate = slash === -1 ? text : text.slice(0, slash);
  return isStorePath(candidate) ? candidate : undefined;
}

/** XOR-folds a digest into `size` bytes, as Nix's compressHash does. */
export function compressHash(hash: Uint8Array, size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < hash.length; i++) out[i % size] = (out[i % size] ?? 0) ^ (hash[i] ?? 0);
  return out;
}

/** `makeStorePath(type, innerHash, name)` from libstore; `type` is e.g. `text:<refs>` or `source`. */
export function makeStorePath(type: string, inner: Sha256, name: string): StorePath {
  const problem = storePathNameProblem(name);
  if (problem) throw new InputError("bad-store-path", `cannot make a store path: ${problem}`);
  const s = `${type}:sha256:${inner.hex}:${STORE_DIR}:${name}`;
  const digest = compressHash(Sha256.of(s).bytes, 20);
  return `${STORE_DIR}/${nix32Encode(digest)}-${name}` as StorePath;
}

function typeWithRefs(base: string, references: readonly StorePath[]): string {
  return [base, ...[...references].sort()].join(":");
}

/** The path of `builtins.toFile name contents` (a text path) with the given references. */
export function makeTextPath(
  name: string,
  contents: string | Uint8Array,
  references: readonly StorePath[] = [],
): StorePath {
  return makeStorePath(typeWithRefs("text", references), Sha256.of(contents), name);
}

/** The path of a source (a NAR-hashed, content-addressed input such as `./dir` in Nix code). */
export function makeSourcePath(
  name: string,
  narHash: Sha256,
  references: readonly StorePath[] = [],
  selfReference = false,
): StorePath {
  const type = typeWithRefs("source", references) + (selfReference ? ":self" : "");
  return makeStorePath(type, narHash, name);
}

const NAMED_STORE_PATH = /^\/nix\/store\/[0-9a-z]{32}-(.+)$/;

/** A store path's name part (`/nix/store/<hash>-web-v1` → `web-v1`); other text as it is. */
export function storeName(path: string): string {
  return NAMED_STORE_PATH.exec(path)?.[1] ?? path;
}
