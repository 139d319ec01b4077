// Object keys: the one set of rules every adapter applies, so that a key names the same object
// in a directory and in a bucket, and can never climb out of a store's root or prefix.
import { InputError } from "../errors.js";

export const MAX_KEY_BYTES = 1024;

/**
 * Names the fs store uses for its temp and lock files (`.<name>.nixship-tmp-<hex>`,
 * `.<name>.nixship-lock`). They are reserved in every store so that keys stay portable.
 */
const RESERVED_SEGMENT = /\.nixship-(?:tmp-[0-9a-f]+|lock)$/;
// Control characters, and lone surrogates, which have no UTF-8 form and so cannot round-trip.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const BAD_CHAR = /[\u0000-\u001f\u007f\\]|\p{Surrogate}/u;

export function isReservedSegment(segment: string): boolean {
  return RESERVED_SEGMENT.test(segment);
}

/** Returns what is wrong with the key, or undefined when it is valid. */
export function keyProblem(key: string): string | undefined {
  if (key === "") return "it is empty";
  if (Buffer.byteLength(key, "utf8") > MAX_KEY_BYTES) return `it is over ${MAX_KEY_BYTES} bytes`;
  if (BAD_CHAR.test(key)) return "it contains a backslash, a control character or a lone surrogate";
  if (key.startsWith("/")) return 'it starts with "/"';
  for (const segment of key.split("/")) {
    if (segment === "") return "it has an empty segment (// or a trailing /)";
    if (segment === "." || segment === "..") return `it has a "${segment}" segment`;
    if (isReservedSegment(segment)) return `segment "${segment}" is reserved for temp/lock files`;
  }
  return undefined;
}

/** Throws InputError("bad-object-key") unless the key is valid; returns it unchanged. */
export function validateKey(key: string): string {
  const problem = keyProblem(key);
  if (problem !== undefined) {
    throw new InputError("bad-object-key", `bad object key ${JSON.stringify(key)}: ${problem}`, {
      hint: 'keys are relative paths like "nar/abc.nar.xz": no leading "/", no "." or ".." segments',
    });
  }
  return key;
}

/**
 * A list prefix is valid when some valid key could start with it: "" and "nar/" are fine,
 * "../" and "/x" are not. Checking `prefix + "x"` says exactly that.
 */
export function validatePrefix(prefix: string): string {
  if (prefix === "") return prefix;
  const problem = keyProblem(`${prefix}x`);
  if (problem !== undefined) {
    throw new InputError("bad-object-key", `bad list prefix ${JSON.stringify(prefix)}: ${problem}`);
  }
  return prefix;
}

export const MAX_PAGE = 1000;

/** The page size for `list`: default and cap 1000, as in S3. */
export function pageLimit(limit: number | undefined): number {
  if (limit === undefined) return MAX_PAGE;
  if (!Number.isInteger(limit) || limit < 1) {
    throw new InputError("bad-list-limit", `bad list limit ${limit}: expected a positive integer`);
  }
  return Math.min(limit, MAX_PAGE);
}

/** Ascending UTF-8 byte order, the order S3 lists keys in (differs from JS `<` on astral chars). */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}
