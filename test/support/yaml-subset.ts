// A strict reader for the part of YAML that examples/ci/github-actions.yml is written in:
// block mappings and sequences, flow sequences of scalars, literal block scalars (`|`, `|-`),
// plain, single- and double-quoted scalars, comments. Anything else (anchors, aliases, tags,
// flow mappings, folded scalars, multi-line plain scalars, tabs, duplicate keys) is an error
// naming the line, so the workflow cannot drift into YAML this reader would misread.
// Scalars resolve as YAML 1.2's core schema does (true, false, null, integers), which is also
// why `on:` stays the string "on", as GitHub reads it.

export type YamlValue =
  | string
  | number
  | boolean
  | null
  | YamlValue[]
  | { [key: string]: YamlValue };

interface Line {
  readonly number: number;
  indent: number;
  text: string;
}

export function parseYamlSubset(source: string): YamlValue {
  const raw = source.split("\n");
  const lines: Line[] = raw.map((text, i) => {
    const indent = /^ */.exec(text)?.[0].length ?? 0;
    if (text.slice(indent).startsWith("\t")) throw fail(i + 1, "a tab in the indentation");
    return { number: i + 1, indent, text: text.slice(indent).replace(/\s+$/, "") };
  });
  let i = 0;
  const significant = (line: Line | undefined) =>
    line !== undefined && line.text !== "" && !line.text.startsWith("#");
  const skip = () => {
    while (i < lines.length && !significant(lines[i])) i++;
  };
  const peek = (): Line | undefined => {
    skip();
    return lines[i];
  };
  const isItem = (line: Line) => line.text === "-" || line.text.startsWith("- ");

  function parseBlock(minIndent: number): YamlValue {
    const line = peek();
    if (line === undefined || line.indent < minIndent) return null;
    return isItem(line) ? parseSequence(line.indent) : parseMapping(line.indent);
  }

  function parseMapping(indent: number): YamlValue {
    const map: Record<string, YamlValue> = {};
    for (let line = peek(); line !== undefined && line.indent >= indent; line = peek()) {
      if (line.indent > indent) throw fail(line.number, "unexpected indentation");
      if (isItem(line)) break;
      const text = stripComment(line.text, line.number);
      const colon = findKeyColon(text);
      if (colon === -1) throw fail(line.number, `expected "key: value", got ${text}`);
      const key = scalarText(text.slice(0, colon), line.number);
      if (typeof key !== "string" || key === "") throw fail(line.number, "a key must be a string");
      if (key in map) throw fail(line.number, `duplicate key "${key}"`);
      const rest = text.slice(colon + 1).trim();
      i++;
      map[key] = parseValue(rest, indent, line.number);
    }
    return map;
  }

  function parseSequence(indent: number): YamlValue {
    const items: YamlValue[] = [];
    for (let line = peek(); line !== undefined && line.indent >= indent; line = peek()) {
      if (line.indent > indent) throw fail(line.number, "unexpected indentation");
      if (!isItem(line)) break;
      const rest = stripComment(line.text.slice(1), line.number);
      const content = rest.trimStart();
      if (content === "") {
        i++;
        items.push(parseBlock(indent + 1));
      } else if (findKeyColon(content) !== -1 && !/^["'[]/.test(content)) {
        // `- key: value` opens a mapping whose keys sit where `key` does.
        line.indent = indent + 1 + (rest.length - content.length);
        line.text = content;
        items.push(parseMapping(line.indent));
      } else {
        i++;
        items.push(parseValue(content, indent, line.number));
      }
    }
    return items;
  }

  /** The value after `key:` (or `- `) at `indent`: inline, a block scalar, or a nested block. */
  function parseValue(rest: string, indent: number, number: number): YamlValue {
    if (rest === "") {
      const next = peek();
      if (next === undefined) return null;
      if (next.indent > indent) return parseBlock(indent + 1);
      if (next.indent === indent && isItem(next)) return parseSequence(indent);
      return null;
    }
    if (rest === "|" || rest === "|-") return blockScalar(indent, rest === "|-");
    if (rest.startsWith("[")) return flowSequence(rest, number);
    return scalarText(rest, number);
  }

  function blockScalar(parentIndent: number, strip: boolean): string {
    const body: string[] = [];
    let contentIndent: number | undefined;
    while (i < lines.length) {
      const line = lines[i] as Line;
      if (line.text !== "") {
        if (line.indent <= parentIndent) break;
        contentIndent ??= line.indent;
        if (line.indent < contentIndent) throw fail(line.number, "block scalar dedented");
      }
      body.push(
        line.text === "" ? "" : `${" ".repeat(line.indent - (contentIndent ?? 0))}${line.text}`,
      );
      i++;
    }
    while (body.at(-1) === "") body.pop();
    return strip ? body.join("\n") : `${body.join("\n")}\n`;
  }

  const value = parseBlock(0);
  const left = peek();
  if (left !== undefined) throw fail(left.number, "unexpected text after the document");
  return value;
}

function fail(line: number, message: string): Error {
  return new Error(`YAML line ${line}: ${message}`);
}

/** The text without a trailing comment (`#` after whitespace, outside quotes). */
function stripComment(text: string, number: number): string {
  let quote: string | undefined;
  for (let j = 0; j < text.length; j++) {
    const c = text[j] as string;
    if (quote !== undefined) {
      if (c === "\\" && quote === '"') j++;
      else if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") {
      if (j === 0 || /[\s:[,-]/.test(text[j - 1] as string)) quote = c;
    } else if (c === "#" && (j === 0 || /\s/.test(text[j - 1] as string))) {
      return text.slice(0, j).trimEnd();
    }
  }
  if (quote !== undefined) throw fail(number, "an unterminated quoted scalar");
  return text;
}

/** Where the `:` of `key: value` (or `key:`) is, outside quotes; -1 when none. */
function findKeyColon(text: string): number {
  let quote: string | undefined;
  for (let j = 0; j < text.length; j++) {
    const c = text[j] as string;
    if (quote !== undefined) {
      if (c === "\\" && quote === '"') j++;
      else if (c === quote) quote = undefined;
    } else if ((c === '"' || c === "'") && j === 0) quote = c;
    else if (c === ":" && (j === text.length - 1 || text[j + 1] === " ")) return j;
  }
  return -1;
}

function flowSequence(text: string, number: number): YamlValue[] {
  if (!text.endsWith("]")) throw fail(number, "a flow sequence must end on its line");
  const inner = text.slice(1, -1).trim();
  if (inner === "") return [];
  if (/[[\]{}]/.test(inner)) throw fail(number, "nested flow collections are not supported");
  return inner.split(",").map((item) => scalarText(item.trim(), number));
}

function scalarText(text: string, number: number): YamlValue {
  const t = text.trim();
  if (t.startsWith('"')) {
    if (!t.endsWith('"') || t.length < 2) throw fail(number, `bad double-quoted scalar ${t}`);
    return t.slice(1, -1).replace(/\\(.)/g, (_, c: string) => {
      const escapes: Record<string, string> = { n: "\n", t: "\t", '"': '"', "\\": "\\", "/": "/" };
      const out = escapes[c];
      if (out === undefined) throw fail(number, `unsupported escape \\${c}`);
      return out;
    });
  }
  if (t.startsWith("'")) {
    if (!t.endsWith("'") || t.length < 2) throw fail(number, `bad single-quoted scalar ${t}`);
    return t.slice(1, -1).replaceAll("''", "'");
  }
  if (/^[&*!|>%@`{]/.test(t)) throw fail(number, `unsupported YAML: ${t}`);
  if (/: |\s#/.test(t)) throw fail(number, `ambiguous plain scalar: ${t}`);
  if (t === "true" || t === "false") return t === "true";
  if (t === "null" || t === "~") return null;
  if (/^-?(0|[1-9][0-9]*)$/.test(t)) return Number(t);
  return t;
}
