// A small validator for parsed JSON: each reader checks one value, records a problem at its
// JSON path when the value is wrong, and returns the value or undefined. Problems are
// collected so one run reports every mistake in a file, not just the first.
import { InputError } from "../errors.js";
import { likelyTypo } from "./closest.js";
import type { JsonPath } from "./json-path.js";

export interface Problem {
  readonly path: JsonPath;
  readonly message: string;
}

/** The keys an object may hold; any other key is a problem (typos must not pass silently). */
export interface KeyShape {
  readonly required: readonly string[];
  readonly optional: readonly string[];
}

export class Problems {
  readonly list: Problem[] = [];

  add(path: JsonPath, message: string): undefined {
    this.list.push({ path, message });
    return undefined;
  }
}

export function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** What a wrong value was, for messages: `got 3`, `got "Web"`, `got an object`. */
export function got(value: unknown): string {
  if (isJsonObject(value)) return "got an object";
  if (Array.isArray(value)) return "got an array";
  // JSON reads 1e400 as Infinity, which JSON.stringify would show as null.
  const text =
    typeof value === "number" && !Number.isFinite(value)
      ? String(value)
      : (JSON.stringify(value) ?? String(value));
  return `got ${text.length > 60 ? `${text.slice(0, 57)}…` : text}`;
}

export function readObject(
  value: unknown,
  path: JsonPath,
  problems: Problems,
  shape: KeyShape,
): Record<string, unknown> | undefined {
  if (!isJsonObject(value)) return problems.add(path, `must be an object (${got(value)})`);
  const known = [...shape.required, ...shape.optional];
  for (const key of Object.keys(value)) {
    if (known.includes(key)) continue;
    const typo = likelyTypo(key, known);
    const suggestion =
      typo === undefined ? `known keys: ${known.join(", ")}` : `did you mean "${typo}"?`;
    problems.add([...path, key], `unknown key (${suggestion})`);
  }
  for (const key of shape.required) {
    if (value[key] === undefined) problems.add([...path, key], "is required");
  }
  return value;
}

export interface StringRule {
  readonly pattern?: RegExp;
  readonly maxLength?: number;
}

export function readString(
  value: unknown,
  path: JsonPath,
  problems: Problems,
  rule: StringRule = {},
): string | undefined {
  const { pattern, maxLength } = rule;
  const ok =
    typeof value === "string" &&
    value.length > 0 &&
    (pattern === undefined || pattern.test(value)) &&
    (maxLength === undefined || value.length <= maxLength);
  if (ok) return value;
  const limit = maxLength === undefined ? "" : `at most ${maxLength} characters; `;
  const expected =
    pattern === undefined ? "a non-empty string" : `a string matching ${pattern.source}`;
  return problems.add(path, `must be ${expected} (${limit}${got(value)})`);
}

export function readInteger(
  value: unknown,
  path: JsonPath,
  problems: Problems,
  range: { readonly min: number; readonly max?: number },
): number | undefined {
  const { min, max } = range;
  if (
    typeof value === "number" &&
    Number.isSafeInteger(value) &&
    value >= min &&
    (max === undefined || value <= max)
  ) {
    return value;
  }
  // Without a maximum of its own, a whole number too large to hold exactly is told the one it
  // passed: ">= 1" would be true of it.
  const tooLarge = typeof value === "number" && Number.isInteger(value) && value > min;
  const bounds =
    max !== undefined || tooLarge
      ? `from ${min} to ${max ?? Number.MAX_SAFE_INTEGER}`
      : `>= ${min}`;
  return problems.add(path, `must be a whole number ${bounds} (${got(value)})`);
}

export function readArray(
  value: unknown,
  path: JsonPath,
  problems: Problems,
  minItems = 0,
): readonly unknown[] | undefined {
  if (!Array.isArray(value)) return problems.add(path, `must be an array (${got(value)})`);
  if (value.length < minItems) {
    return problems.add(path, `must hold at least ${minItems} item${minItems === 1 ? "" : "s"}`);
  }
  return value;
}

/** The message (and hint) of the InputError `parse` throws, or undefined when it parses. */
export function inputProblem(parse: () => unknown): string | undefined {
  try {
    parse();
    return undefined;
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    return err.hint === undefined ? err.message : `${err.message} (${err.hint})`;
  }
}
