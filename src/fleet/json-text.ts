// JSON text to a value, with errors that give line and column. Duplicate keys are refused:
// JSON.parse silently keeps the last one, which would hide a copy-pasted, unrenamed host.
import { InputError } from "../errors.js";
import { jsonErrorText } from "../util/text.js";
import { formatJsonPath, type JsonPath } from "./json-path.js";

/**
 * How deep objects and arrays may nest in the JSON nixship reads: real files (fleet files,
 * releases, configs, Terraform outputs) stay under 10; what goes deeper is refused before
 * anything walks it.
 */
export const JSON_DEPTH_LIMIT = 64;

/** Where `text` first nests deeper than `limit` (outside strings), or undefined. */
export function tooDeep(text: string, limit = JSON_DEPTH_LIMIT): number | undefined {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // a backslash escapes the next character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > limit) return i;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return undefined;
}

export function parseJsonText(text: string, source: string): unknown {
  const body = text.startsWith("\uFEFF") ? text.slice(1) : text;
  const deep = tooDeep(body);
  if (deep !== undefined) {
    throw new InputError(
      "bad-json",
      `${source}:${lineColumn(body, deep)}: objects and arrays nest deeper than ${JSON_DEPTH_LIMIT} levels`,
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch (err) {
    const { message, offset } = describeSyntaxError(err, body);
    const where = offset === undefined ? "" : `:${lineColumn(body, offset)}`;
    throw new InputError("bad-json", `${source}${where}: invalid JSON: ${message}`, { cause: err });
  }
  const duplicate = findDuplicateKey(body);
  if (duplicate !== undefined) {
    throw new InputError(
      "bad-json",
      `${source}:${lineColumn(body, duplicate.offset)}: ${formatJsonPath(duplicate.path)}: duplicate key ${JSON.stringify(duplicate.key)}`,
      { hint: "JSON keeps only the last of two equal keys; rename or remove one" },
    );
  }
  return value;
}

/** `line:column`, both counted from 1. */
export function lineColumn(text: string, offset: number): string {
  const before = text.slice(0, offset);
  const line = before.split("\n").length;
  return `${line}:${offset - before.lastIndexOf("\n")}`;
}

function describeSyntaxError(err: unknown, text: string): { message: string; offset?: number } {
  if (text.trim() === "") return { message: "the text is empty" };
  const raw = jsonErrorText(err);
  // Node 20 says "… in JSON at position N"; newer V8 adds "(line L column C)"; some messages
  // quote the input instead ("Unexpected token 'x', \"…\" is not valid JSON").
  const lineCol = / \(line (\d+) column (\d+)\)/.exec(raw);
  const position = / in JSON at position (\d+)/.exec(raw);
  let offset: number | undefined;
  if (lineCol) offset = offsetOf(text, Number(lineCol[1]), Number(lineCol[2]));
  else if (position) offset = Number(position[1]);
  else if (/Unexpected end of JSON input/.test(raw)) offset = text.length;
  const message = raw
    .replace(/ \(line \d+ column \d+\)/, "")
    .replace(/ in JSON at position \d+/, "");
  return {
    message: message.charAt(0).toLowerCase() + message.slice(1),
    ...(offset === undefined ? {} : { offset }),
  };
}

function offsetOf(text: string, line: number, column: number): number {
  let offset = 0;
  for (let l = 1; l < line; l++) offset = text.indexOf("\n", offset) + 1;
  return offset + column - 1;
}

interface Container {
  readonly keys: Set<string> | undefined; // undefined for an array
  expectKey: boolean;
  segment: string | number;
}

/** Scans text that JSON.parse accepted for an object with the same key twice. */
export function findDuplicateKey(
  text: string,
): { path: JsonPath; key: string; offset: number } | undefined {
  const stack: Container[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    const top = stack.at(-1);
    if (c === '"') {
      let end = i + 1;
      while (text[end] !== '"') end += text[end] === "\\" ? 2 : 1;
      if (top?.keys !== undefined && top.expectKey) {
        const key = JSON.parse(text.slice(i, end + 1)) as string;
        if (top.keys.has(key)) {
          return { path: stack.slice(0, -1).map((s) => s.segment), key, offset: i };
        }
        top.keys.add(key);
        top.expectKey = false;
        top.segment = key;
      }
      i = end;
    } else if (c === "{") {
      stack.push({ keys: new Set(), expectKey: true, segment: "" });
    } else if (c === "[") {
      stack.push({ keys: undefined, expectKey: false, segment: 0 });
    } else if (c === "}" || c === "]") {
      stack.pop();
    } else if (c === "," && top !== undefined) {
      if (top.keys === undefined) top.segment = (top.segment as number) + 1;
      else top.expectKey = true;
    }
  }
  return undefined;
}
