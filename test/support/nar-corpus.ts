// Malformed NARs, one per rejection rule of the strict parser, each with the error it must
// raise. Shared by the decoder's and the restorer's unit tests.
import { buildNar, type NarToken, narNode, narTokens, narU64 } from "../../src/nix/nar-write.js";

export interface BadNar {
  readonly rule: string;
  readonly nar: Buffer;
  readonly message: RegExp;
}

const file = narNode.regular;
const dir = narNode.directory;

/** A NAR whose bad part starts right after `before`; returns it with that byte offset. */
function at(before: readonly NarToken[], after: readonly NarToken[]): [Buffer, number] {
  return [buildNar([...before, ...after]), buildNar(before).length];
}

function bad(
  rule: string,
  [nar, offset]: [Buffer, number],
  message: string,
  where = "root",
): BadNar {
  const place = where === "root" ? "the root node" : `'${where}'`;
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return {
    rule,
    nar,
    message: new RegExp(`^${esc(`${message} at byte ${offset} (in ${place})`)}$`),
  };
}

/** `depth` directories nested in each other, each holding the next under the name "d". */
export function nestedDirs(depth: number): NarToken[] {
  let node = file("leaf");
  for (let i = 0; i < depth; i++) node = dir([["d", node]]);
  return node;
}

const entryHead = (name: NarToken): NarToken[] => [
  "(",
  "type",
  "directory",
  "entry",
  "(",
  "name",
  name,
];
const barNar = buildNar(file("bar"));

export const BAD_NARS: readonly BadNar[] = [
  {
    rule: "wrong magic",
    nar: narTokens("nix-archive-2", ...file("bar")),
    message: /^not a NAR: expected magic "nix-archive-1", got "nix-archive-2" at byte 0$/,
  },
  bad(
    "unexpected tag",
    at([], ["[", "type", "regular", "contents", "", ")"]),
    'expected "(", got "["',
  ),
  bad(
    "unexpected tag: contents missing",
    at(["(", "type", "regular"], [")"]),
    'expected "executable" or "contents", got ")"',
  ),
  bad("unknown type", at(["(", "type"], ["fifo", ")"]), 'unknown node type "fifo"'),
  bad(
    "non-empty value after executable",
    at(["(", "type", "regular", "executable"], ["x", "contents", "", ")"]),
    'non-empty value after "executable"',
  ),
  bad(
    "entries out of order",
    at(
      [...entryHead("b"), "node", ...file(""), ")", "entry", "(", "name"],
      ["a", "node", ...file(""), ")", ")"],
    ),
    'entry "a" is out of order: it follows "b"',
  ),
  bad(
    "duplicate entries",
    at(
      [...entryHead("a"), "node", ...file(""), ")", "entry", "(", "name"],
      ["a", "node", ...file(""), ")", ")"],
    ),
    'duplicate entry "a"',
  ),
  bad(
    "empty name",
    at(entryHead("").slice(0, -1), ["", "node", ...file("x"), ")", ")"]),
    'invalid entry name "": it is empty',
  ),
  bad(
    "name '.'",
    at(entryHead(".").slice(0, -1), [".", "node", ...file("x"), ")", ")"]),
    `invalid entry name ".": '.' and '..' are not allowed`,
  ),
  bad(
    "name '..'",
    at(entryHead("..").slice(0, -1), ["..", "node", ...file("x"), ")", ")"]),
    `invalid entry name "..": '.' and '..' are not allowed`,
  ),
  bad(
    "name with '/'",
    at(entryHead("").slice(0, -1), ["a/b", "node", ...file("x"), ")", ")"]),
    `invalid entry name "a/b": it contains '/'`,
  ),
  bad(
    "name with NUL",
    at(entryHead("").slice(0, -1), ["a\0b", "node", ...file("x"), ")", ")"]),
    'invalid entry name "a\\u0000b": it contains a NUL byte',
  ),
  bad(
    "empty symlink target",
    at(["(", "type", "symlink", "target"], ["", ")"]),
    "symlink target is empty",
  ),
  bad(
    "symlink target with NUL",
    at(["(", "type", "symlink", "target"], ["a\0", ")"]),
    "symlink target contains a NUL byte",
  ),
  bad("non-zero padding in contents", [flip(barNar, 100), 99], "non-zero padding"),
  bad("non-zero padding in a tag", [flip(barNar, 35), 33], "non-zero padding"),
  bad(
    "file size that overflows",
    at(["(", "type", "regular", "contents"], [{ raw: narU64(0xffff_ffff_ffff_ffffn) }]),
    "file size 0xffffffffffffffff is too large",
  ),
  bad(
    "tag length that overflows",
    at([], [{ raw: narU64(1n << 63n) }]),
    'expected "(", got a string of 0x8000000000000000 bytes',
  ),
  bad(
    "name length that overflows",
    at(entryHead("").slice(0, -1), [{ raw: narU64(1n << 40n) }]),
    "entry name of 1099511627776 bytes is longer than 255",
  ),
  {
    rule: "trailing garbage",
    nar: Buffer.concat([barNar, narU64(0)]),
    message: /^trailing data after the root node at byte 120$/,
  },
  bad(
    "depth >= 64",
    [buildNar(nestedDirs(64)), deepNameOffset(64)],
    `'${"d/".repeat(63)}d' is nested 64 levels deep (limit 63)`,
    `${"d/".repeat(62)}d`,
  ),
  bad(
    "name longer than 255 bytes",
    at(entryHead("").slice(0, -1), ["n".repeat(256), "node", ...file(""), ")", ")"]),
    "entry name of 256 bytes is longer than 255",
  ),
  bad(
    "target longer than 4095 bytes",
    at(["(", "type", "symlink", "target"], ["t".repeat(4096), ")"]),
    "symlink target of 4096 bytes is longer than 4095",
  ),
  {
    rule: "truncated",
    nar: barNar.subarray(0, 100),
    message: /^unexpected end of NAR at byte 100 \(in the root node\)$/,
  },
];

/** Where the name of the innermost entry of `nestedDirs(levels)` starts. */
function deepNameOffset(levels: number): number {
  const before: NarToken[] = [];
  for (let i = 0; i < levels; i++) {
    if (i > 0) before.push("d", "node");
    before.push(...entryHead("d").slice(0, -1));
  }
  return buildNar(before).length;
}

function flip(nar: Buffer, index: number): Buffer {
  const copy = Buffer.from(nar);
  copy[index] = 1;
  return copy;
}
