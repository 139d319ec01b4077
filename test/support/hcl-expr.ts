// HCL expressions as @cdktf/hcl2json leaves them: every string is a template (`${…}` holds
// expression source, `$${` is a literal `${`). They are parsed by HCL's own parser (through
// hcl2json's getExpressionAst), then walked: the references an expression makes, and a small
// evaluator for the subset of the language the tests need, which refuses anything else.
import { readFileSync } from "node:fs";
import { isAbsolute } from "node:path";
import { getExpressionAst } from "@cdktf/hcl2json";

interface Marker {
  readonly byte: number;
}
export interface AstNode {
  readonly type: string;
  readonly children: readonly AstNode[];
  readonly range: { readonly start: Marker; readonly end: Marker };
  readonly meta?: Record<string, unknown>;
}
interface TraversalPart {
  readonly type: "nameTraversal" | "indexTraversal";
  readonly segment: string;
}

/** A parsed template: its root node and the source its byte ranges point into. */
export interface ParsedTemplate {
  readonly root: AstNode;
  readonly source: Buffer;
}

const parsed = new Map<string, Promise<ParsedTemplate>>();

/** Parses an hcl2json string value as the template it is (cached per text). */
export function parseTemplate(text: string): Promise<ParsedTemplate> {
  let found = parsed.get(text);
  if (found === undefined) {
    found = parseUncached(text);
    parsed.set(text, found);
  }
  return found;
}

async function parseUncached(text: string): Promise<ParsedTemplate> {
  // A heredoc takes the text as it is: no quote or backslash in it needs escaping.
  let marker = "EOT_NIXSHIP_TEST";
  while (text.includes(marker)) marker += "_";
  const source = `<<${marker}\n${text}\n${marker}\n`;
  const root = (await getExpressionAst("expression.tf", source)) as AstNode | null;
  if (root === null) throw new Error(`HCL parser returned nothing for: ${text}`);
  return { root, source: Buffer.from(source, "utf8") };
}

/** Whether a string value holds an interpolation or a directive at all. */
export function isTemplate(text: string): boolean {
  return /(^|[^$])\$\{|(^|[^%])%\{/.test(text);
}

/** The source text of a node. */
export function sourceOf(t: ParsedTemplate, node: AstNode): string {
  return t.source.subarray(node.range.start.byte, node.range.end.byte).toString("utf8");
}

function traversalOf(node: AstNode): readonly TraversalPart[] {
  return (node.meta?.traversal as TraversalPart[] | undefined) ?? [];
}

/** One reference an expression makes: its text and its name segments (indexes left out). */
export interface ExprReference {
  readonly text: string;
  readonly names: readonly string[];
}

/**
 * Every reference in a string value, except to names bound inside it (for-expression
 * variables) or given in `bound` (a dynamic block's iterator).
 */
export async function referencesIn(
  text: string,
  bound: ReadonlySet<string> = new Set(),
): Promise<ExprReference[]> {
  if (!isTemplate(text)) return [];
  const t = await parseTemplate(text);
  const found: ExprReference[] = [];
  const visit = (node: AstNode, scope: ReadonlySet<string>): void => {
    if (node.type === "scopeTraversal") {
      const names = traversalOf(node)
        .filter((p) => p.type === "nameTraversal")
        .map((p) => p.segment);
      const root = names[0];
      if (root !== undefined && !scope.has(root)) {
        found.push({ text: String(node.meta?.value ?? names.join(".")), names });
      }
      return;
    }
    if (node.type === "for") {
      const [collection, ...rest] = node.children;
      if (collection) visit(collection, scope);
      const inner = new Set(scope);
      for (const name of [node.meta?.keyVar, node.meta?.valVar]) {
        if (typeof name === "string" && name !== "") inner.add(name);
      }
      for (const child of rest) visit(child, inner);
      return;
    }
    for (const child of node.children) visit(child, scope);
  };
  visit(t.root, bound);
  return found;
}

/** Every call of function `name` in a string value, with its parsed template. */
export async function callsIn(
  text: string,
  name: string,
): Promise<{ template: ParsedTemplate; call: AstNode }[]> {
  if (!isTemplate(text)) return [];
  const t = await parseTemplate(text);
  const calls: { template: ParsedTemplate; call: AstNode }[] = [];
  const visit = (node: AstNode): void => {
    if (node.type === "function" && node.meta?.name === name)
      calls.push({ template: t, call: node });
    for (const child of node.children) visit(child);
  };
  visit(t.root);
  return calls;
}

// ---------------------------------------------------------------------------------------
// Evaluation

export type HclValue =
  | string
  | number
  | boolean
  | null
  | readonly HclValue[]
  | { readonly [key: string]: HclValue };

/** Resolves a reference (var.x, local.y, aws_s3_bucket.this.arn…) to a value, or throws. */
export type Resolver = (names: readonly string[], text: string) => Promise<HclValue>;

export class RenderError extends Error {
  override name = "RenderError";
}

/**
 * What the evaluator does not implement: never caught by can() or try(), so a test cannot pass
 * on a function or expression the renderer skipped.
 */
export class UnsupportedError extends RenderError {
  override name = "UnsupportedError";
}

/**
 * Evaluates an hcl2json value: strings as templates, arrays and objects member by member.
 * Anything outside the supported subset throws a RenderError that names it.
 */
export async function evaluateValue(value: unknown, resolve: Resolver): Promise<HclValue> {
  if (typeof value === "string") return evaluateString(value, resolve);
  if (value === null || typeof value === "number" || typeof value === "boolean") return value;
  if (Array.isArray(value)) {
    const out: HclValue[] = [];
    for (const item of value) out.push(await evaluateValue(item, resolve));
    return out;
  }
  if (typeof value === "object") {
    const out: Record<string, HclValue> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      out[asString(await evaluateString(k, resolve), k)] = await evaluateValue(v, resolve);
    }
    return out;
  }
  throw new RenderError(`cannot evaluate a ${typeof value}`);
}

/** Evaluates one string value (a template; a lone `${expr}` yields expr's value unconverted). */
export async function evaluateString(text: string, resolve: Resolver): Promise<HclValue> {
  if (!isTemplate(text)) return unescapeTemplateText(text);
  const t = await parseTemplate(text);
  return new Evaluator(t, resolve).template(t.root, false, true);
}

/** Evaluates one node of a parsed template (e.g. an argument of a call found by callsIn). */
export function evaluateNode(
  t: ParsedTemplate,
  node: AstNode,
  resolve: Resolver,
): Promise<HclValue> {
  return new Evaluator(t, resolve).eval(node, new Map());
}

function unescapeTemplateText(text: string): string {
  return text.replaceAll("$${", "${").replaceAll("%%{", "%{");
}

/** The escapes of a quoted HCL string (the parser hands literals over as written). */
function unescapeQuoted(text: string): string {
  return unescapeTemplateText(text).replace(
    /\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)/g,
    (_, e: string) => {
      if (e.length > 1) return String.fromCodePoint(Number.parseInt(e.slice(1), 16));
      const simple: Record<string, string> = { n: "\n", r: "\r", t: "\t", '"': '"', "\\": "\\" };
      const out = simple[e];
      if (out === undefined) throw new RenderError(`unknown escape \\${e} in a quoted string`);
      return out;
    },
  );
}

function asString(value: HclValue, what: string): string {
  if (typeof value === "string") return value;
  if (typeof value === "number") return String(value);
  if (typeof value === "boolean") return value ? "true" : "false";
  throw new RenderError(`${what}: expected a string, got ${JSON.stringify(value)}`);
}

function asList(value: HclValue, what: string): readonly HclValue[] {
  if (Array.isArray(value)) return value;
  throw new RenderError(`${what}: expected a list, got ${JSON.stringify(value)}`);
}

function asMap(value: HclValue, what: string): { readonly [key: string]: HclValue } {
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    return value as { readonly [key: string]: HclValue };
  }
  throw new RenderError(`${what}: expected a map, got ${JSON.stringify(value)}`);
}

function asBool(value: HclValue, what: string): boolean {
  if (typeof value === "boolean") return value;
  throw new RenderError(`${what}: expected a bool, got ${JSON.stringify(value)}`);
}

/** One step of a traversal (`.name` or `[index]`) applied to a value. */
export function step(value: HclValue, segment: string, text: string): HclValue {
  if (Array.isArray(value)) {
    const item = value[Number(segment)];
    if (!/^\d+$/.test(segment) || item === undefined) {
      throw new RenderError(`${text}: no element ${segment}`);
    }
    return item;
  }
  const map = asMap(value, text);
  if (!Object.hasOwn(map, segment)) throw new RenderError(`${text}: no attribute "${segment}"`);
  return map[segment] as HclValue;
}

type Fn = (args: readonly HclValue[], what: string) => HclValue;

const FUNCTIONS: Readonly<Record<string, Fn>> = {
  concat: (args, what) => args.flatMap((a) => asList(a, what)),
  join: ([sep, list], what) =>
    asList(list ?? null, what)
      .map((x) => asString(x, what))
      .join(asString(sep ?? null, what)),
  keys: ([map], what) => Object.keys(asMap(map ?? null, what)).sort(),
  values: ([map], what) => {
    const m = asMap(map ?? null, what);
    return Object.keys(m)
      .sort()
      .map((k) => m[k] as HclValue);
  },
  sort: ([list], what) => [...asList(list ?? null, what).map((x) => asString(x, what))].sort(),
  length: ([x], what) =>
    typeof x === "string" ? [...x].length : Object.keys(asMapOrList(x, what)).length,
  contains: ([list, item], what) =>
    asList(list ?? null, what).some((x) => JSON.stringify(x) === JSON.stringify(item)),
  merge: (args, what) => Object.assign({}, ...args.map((a) => asMap(a, what))),
  replace: ([s, find, repl], what) => {
    const f = asString(find ?? null, what);
    if (f.length > 1 && f.startsWith("/") && f.endsWith("/")) {
      throw new RenderError(`${what}: replace() with a regular expression is not supported`);
    }
    return asString(s ?? null, what).replaceAll(f, asString(repl ?? null, what));
  },
  trim: ([s, chars], what) => {
    const set = new Set(asString(chars ?? null, what));
    const str = [...asString(s ?? null, what)];
    let a = 0;
    let b = str.length;
    while (a < b && set.has(str[a] as string)) a++;
    while (b > a && set.has(str[b - 1] as string)) b--;
    return str.slice(a, b).join("");
  },
  trimspace: ([s], what) => asString(s ?? null, what).trim(),
  lower: ([s], what) => asString(s ?? null, what).toLowerCase(),
  tostring: ([s], what) => asString(s ?? null, what),
  jsonencode: ([v]) => JSON.stringify(v ?? null),
  // Terraform's regex(): the match, or with capture groups a list of them (named: a map); an
  // error when nothing matches.
  regex: ([pattern, s], what) => {
    const match = new RegExp(asString(pattern ?? null, what)).exec(asString(s ?? null, what));
    if (match === null) throw new RenderError(`${what}: regex() found no match`);
    if (match.length === 1) return match[0];
    if (match.groups !== undefined) {
      return Object.fromEntries(Object.entries(match.groups).map(([k, v]) => [k, v ?? null]));
    }
    return match.slice(1).map((v) => v ?? null);
  },
  alltrue: ([list], what) => asList(list ?? null, what).every((x) => asBool(x, what)),
  flatten: ([list], what) => {
    const out: HclValue[] = [];
    const walk = (v: HclValue) => (Array.isArray(v) ? v.forEach(walk) : out.push(v));
    asList(list ?? null, what).forEach(walk);
    return out;
  },
  floor: ([n], what) => {
    if (typeof n !== "number") throw new RenderError(`${what}: floor() of a non-number`);
    return Math.floor(n);
  },
  // Terraform's distinct(): the first occurrence of each element, in order.
  distinct: ([list], what) => {
    const seen = new Set<string>();
    return asList(list ?? null, what).filter((x) => {
      const key = JSON.stringify(x);
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
  },
  jsondecode: ([text], what) => {
    try {
      return JSON.parse(asString(text ?? null, what)) as HclValue;
    } catch (err) {
      throw new RenderError(`${what}: jsondecode() of text that is not JSON: ${err}`);
    }
  },
  // file() of an absolute path (path.module makes one), read as UTF-8 text: a relative path
  // would depend on the directory terraform runs in, which the tests do not have.
  file: ([path], what) => {
    const p = asString(path ?? null, what);
    if (!isAbsolute(p)) throw new UnsupportedError(`${what}: file() of a relative path ${p}`);
    try {
      return readFileSync(p, "utf8");
    } catch (err) {
      throw new RenderError(`${what}: file() cannot read ${p}: ${err}`);
    }
  },
};

function asMapOrList(x: HclValue | undefined, what: string): object {
  if (x !== null && typeof x === "object") return x;
  throw new RenderError(`${what}: expected a collection, got ${JSON.stringify(x)}`);
}

class Evaluator {
  constructor(
    private readonly t: ParsedTemplate,
    private readonly resolve: Resolver,
  ) {}

  private what(node: AstNode): string {
    const text = typeof node.meta?.value === "string" ? node.meta.value : sourceOf(this.t, node);
    return `"${text}"`;
  }

  /** A template: literal parts and interpolations, concatenated; a lone interpolation as is. */
  async template(
    node: AstNode,
    quoted: boolean,
    outer: boolean,
    locals: ReadonlyMap<string, HclValue> = new Map(),
    alwaysString = false,
  ): Promise<HclValue> {
    const parts = [...node.children];
    const last = parts.at(-1);
    // The heredoc around the outer template added one newline at its end.
    if (outer && last?.type === "literalValue") {
      const text = String(last.meta?.value ?? "");
      parts[parts.length - 1] = { ...last, meta: { ...last.meta, value: text.slice(0, -1) } };
    }
    const meaningful = parts.filter(
      (p) => !(p.type === "literalValue" && p.meta?.type === "string" && p.meta.value === ""),
    );
    const only = meaningful[0];
    if (!alwaysString && meaningful.length === 1 && only !== undefined && !isStringLiteral(only)) {
      return this.eval(only, locals);
    }
    let out = "";
    for (const part of parts) {
      if (isStringLiteral(part)) {
        const text = String(part.meta?.value ?? "");
        out += quoted ? unescapeQuoted(text) : unescapeTemplateText(text);
      } else {
        out += asString(await this.eval(part, locals), this.what(part));
      }
    }
    return out;
  }

  async eval(node: AstNode, locals: ReadonlyMap<string, HclValue>): Promise<HclValue> {
    const what = this.what(node);
    const kids = node.children;
    const ev = (n: AstNode | undefined, l = locals) => {
      if (n === undefined) throw new RenderError(`${what}: malformed expression`);
      return this.eval(n, l);
    };
    switch (node.type) {
      case "literalValue": {
        const { type, value } = node.meta as { type: string; value: string };
        if (type === "number") return Number(value);
        if (type === "bool") return value === "true";
        if (type === "dynamic" && value === "null") return null;
        if (type === "string") return unescapeQuoted(value);
        throw new RenderError(`${what}: unsupported literal of type ${type}`);
      }
      case "template":
      case "templateWrap": {
        const text = String(node.meta?.value ?? "");
        if (text.startsWith('"')) return this.template(node, true, false, locals);
        if (text.startsWith("<<"))
          throw new RenderError(`${what}: nested heredocs are not supported`);
        // The body of a %{if} directive: hcl2json writes a conditional inside a template so.
        return this.template(node, false, false, locals, true);
      }
      case "scopeTraversal": {
        const parts = traversalOf(node);
        const [root, ...rest] = parts;
        if (root !== undefined && locals.has(root.segment)) {
          let value = locals.get(root.segment) as HclValue;
          for (const p of rest) value = step(value, p.segment, what);
          return value;
        }
        return this.resolve(
          parts.map((p) => p.segment),
          sourceOf(this.t, node),
        );
      }
      case "relativeTraversal": {
        let value = await ev(kids[0]);
        for (const p of traversalOf(node)) value = step(value, p.segment, what);
        return value;
      }
      case "index": {
        const key = await ev(kids[1]);
        return step(await ev(kids[0]), asString(key, what), what);
      }
      case "tuple": {
        const out: HclValue[] = [];
        for (const k of kids) out.push(await ev(k));
        return out;
      }
      case "object": {
        const out: Record<string, HclValue> = {};
        for (let i = 0; i + 1 < kids.length; i += 2) {
          const keyNode = kids[i] as AstNode;
          const key =
            keyNode.children.length === 0
              ? sourceOf(this.t, keyNode)
              : asString(await ev(keyNode.children[0]), what);
          out[key] = await ev(kids[i + 1]);
        }
        return out;
      }
      case "": {
        // Parentheses around one expression.
        if (kids.length === 1) return ev(kids[0]);
        throw new UnsupportedError(`${what}: unsupported expression`);
      }
      case "function": {
        const name = String(node.meta?.name);
        // can() and try() evaluate their arguments themselves: an error is their answer (one
        // the evaluator raises for what it does not implement is not).
        if (name === "can" || name === "try") {
          for (const kid of kids) {
            try {
              const value = await ev(kid);
              return name === "can" ? true : value;
            } catch (err) {
              if (!(err instanceof RenderError) || err instanceof UnsupportedError) throw err;
            }
          }
          if (name === "can") return false;
          throw new RenderError(`${what}: no argument of try() could be evaluated`);
        }
        const fn = FUNCTIONS[name];
        if (fn === undefined)
          throw new UnsupportedError(`${what}: function ${name}() is not supported`);
        if (node.meta?.expandedFinalArgument === true) {
          throw new UnsupportedError(`${what}: expanding arguments (...) is not supported`);
        }
        const args: HclValue[] = [];
        for (const k of kids) args.push(await ev(k));
        return fn(args, what);
      }
      case "conditional":
        return asBool(await ev(kids[0]), what) ? ev(kids[1]) : ev(kids[2]);
      case "binaryOp":
        return this.binary(String(node.meta?.operator), await ev(kids[0]), await ev(kids[1]), what);
      case "unaryOp": {
        const v = await ev(kids[0]);
        if (node.meta?.operator === "logicalNot") return !asBool(v, what);
        if (node.meta?.operator === "negate" && typeof v === "number") return -v;
        throw new UnsupportedError(`${what}: unsupported unary operator`);
      }
      case "for":
        return this.forExpression(node, locals, what);
      default:
        throw new UnsupportedError(`${what}: unsupported expression (${node.type})`);
    }
  }

  private binary(op: string, a: HclValue, b: HclValue, what: string): HclValue {
    switch (op) {
      case "equal":
        return JSON.stringify(a) === JSON.stringify(b);
      case "notEqual":
        return JSON.stringify(a) !== JSON.stringify(b);
      case "logicalAnd":
        return asBool(a, what) && asBool(b, what);
      case "logicalOr":
        return asBool(a, what) || asBool(b, what);
      case "greaterThan":
      case "lessThan":
      case "greaterThanOrEqual":
      case "lessThanOrEqual": {
        if (typeof a !== "number" || typeof b !== "number") {
          throw new RenderError(`${what}: comparing non-numbers`);
        }
        if (op === "greaterThan") return a > b;
        if (op === "lessThan") return a < b;
        return op === "greaterThanOrEqual" ? a >= b : a <= b;
      }
      default:
        throw new UnsupportedError(`${what}: unsupported operator ${op}`);
    }
  }

  private async forExpression(
    node: AstNode,
    locals: ReadonlyMap<string, HclValue>,
    what: string,
  ): Promise<HclValue> {
    const meta = node.meta as {
      keyVar: string;
      valVar: string;
      openRangeValue: string;
      conditionalExpression?: string;
      groupedValue?: boolean;
    };
    if (meta.groupedValue) throw new RenderError(`${what}: grouping (...) is not supported`);
    const [collectionNode, ...rest] = node.children;
    const isObject = meta.openRangeValue === "{";
    const keyNode = isObject ? rest.shift() : undefined;
    const valueNode = rest.shift();
    const condNode = meta.conditionalExpression ? rest.shift() : undefined;
    if (rest.length > 0) throw new RenderError(`${what}: malformed for expression`);
    if (collectionNode === undefined || valueNode === undefined) {
      throw new RenderError(`${what}: malformed for expression`);
    }
    const collection = await this.eval(collectionNode, locals);
    const entries: [HclValue, HclValue][] = Array.isArray(collection)
      ? collection.map((v, i) => [i, v])
      : Object.keys(asMap(collection, what))
          .sort()
          .map((k) => [k, (collection as Record<string, HclValue>)[k] as HclValue]);
    const list: HclValue[] = [];
    const map: Record<string, HclValue> = {};
    for (const [k, v] of entries) {
      const inner = new Map(locals);
      if (meta.keyVar !== "") inner.set(meta.keyVar, k);
      inner.set(meta.valVar, v);
      if (condNode && !asBool(await this.eval(condNode, inner), what)) continue;
      const value = await this.eval(valueNode, inner);
      if (keyNode) map[asString(await this.eval(keyNode, inner), what)] = value;
      else list.push(value);
    }
    return isObject ? map : list;
  }
}

function isStringLiteral(node: AstNode): boolean {
  return node.type === "literalValue" && node.meta?.type === "string";
}
