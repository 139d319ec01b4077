// A JSON value written as Nix text, for the fleet files nixship writes in Nix: sets and lists on
// one line when short, else one binding or item a line, strings escaped as Nix reads them, and a raw
// Nix expression where the caller marks one (an input's attribute, say).

import { nixString } from "../nix/nix-string.js";

export { nixString };

/** Nix text that is written as it is (the caller vouches for it). */
export interface NixExpression {
  readonly nix: string;
}

export function nixExpression(text: string): NixExpression {
  return { nix: text };
}

export type NixValue =
  | string
  | number
  | boolean
  | null
  | NixExpression
  | readonly NixValue[]
  | { readonly [key: string]: NixValue | undefined };

const NIX_NAME = /^[A-Za-z_][A-Za-z0-9_'-]*$/;
/** Words Nix reserves, which an attribute name must quote. */
const KEYWORDS = new Set([
  "if",
  "then",
  "else",
  "assert",
  "with",
  "let",
  "in",
  "rec",
  "inherit",
  "or",
]);
/** A list or set whose text is at most this long is written on one line. */
const SHORT_LINE = 72;

/** An attribute name as Nix writes it: bare when it can be, else quoted. */
export function nixName(name: string): string {
  return NIX_NAME.test(name) && !KEYWORDS.has(name) ? name : nixString(name);
}

function isExpression(value: unknown): value is NixExpression {
  return (
    typeof value === "object" &&
    value !== null &&
    !Array.isArray(value) &&
    Object.keys(value).length === 1 &&
    typeof (value as { nix?: unknown }).nix === "string"
  );
}

/** `value` as Nix text, its nested lines indented from `indent`. */
export function formatNix(value: NixValue, indent = ""): string {
  if (value === null) return "null";
  if (typeof value === "string") return nixString(value);
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new Error(`formatNix: ${value} is no Nix number`);
    // Nix has no negative literal: `-3` is negation, which a list element must parenthesise.
    return value < 0 ? `(${value})` : String(value);
  }
  if (isExpression(value)) return value.nix;
  const inner = `${indent}  `;
  if (Array.isArray(value)) {
    if (value.length === 0) return "[ ]";
    const items = value.map((v) => formatNix(v, inner));
    const oneLine = `[ ${items.join(" ")} ]`;
    if (oneLine.length <= SHORT_LINE && !oneLine.includes("\n")) return oneLine;
    return `[\n${items.map((i) => `${inner}${i}`).join("\n")}\n${indent}]`;
  }
  const entries = Object.entries(value as Record<string, NixValue | undefined>).filter(
    (e): e is [string, NixValue] => e[1] !== undefined,
  );
  if (entries.length === 0) return "{ }";
  const bindings = entries.map(([k, v]) => `${nixName(k)} = ${formatNix(v, inner)};`);
  const oneLine = `{ ${bindings.join(" ")} }`;
  if (oneLine.length <= SHORT_LINE && !oneLine.includes("\n")) return oneLine;
  return `{\n${bindings.map((b) => `${inner}${b}`).join("\n")}\n${indent}}`;
}
