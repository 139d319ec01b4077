// GitHub Actions expressions (`${{ … }}`), evaluated as GitHub does for the parts the example
// workflow uses: literals, context properties (github.event_name, inputs.via, vars.X …),
// ! == != < <= > >= && || and parentheses, and the functions format, contains, startsWith,
// endsWith and the status checks. Comparison and truthiness follow GitHub's rules (strings
// compare ignoring case, && and || give an operand's value). Anything else is an error, so a
// test cannot pass on an expression this evaluator misread.

export type GhValue = string | number | boolean | null | GhObject | GhValue[];
export interface GhObject {
  readonly [key: string]: GhValue;
}

/** What the status functions answer: whether the job's (or step's) needs all succeeded. */
export interface GhStatus {
  readonly success: boolean;
}

type Token =
  | { readonly kind: "number"; readonly value: number }
  | { readonly kind: "string"; readonly value: string }
  | { readonly kind: "name"; readonly value: string }
  | { readonly kind: "op"; readonly value: string };

const OPERATORS = ["==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "(", ")", "[", "]", ".", ","];

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i] as string;
    if (/\s/.test(c)) {
      i++;
    } else if (c === "'") {
      let value = "";
      i++;
      for (;;) {
        if (i >= text.length) throw new Error(`unterminated string in: ${text}`);
        if (text[i] === "'" && text[i + 1] === "'") {
          value += "'";
          i += 2;
        } else if (text[i] === "'") {
          i++;
          break;
        } else {
          value += text[i];
          i++;
        }
      }
      tokens.push({ kind: "string", value });
    } else if (/[0-9]/.test(c) || (c === "-" && /[0-9]/.test(text[i + 1] ?? ""))) {
      const m = /^-?[0-9]+(\.[0-9]+)?/.exec(text.slice(i)) as RegExpExecArray;
      tokens.push({ kind: "number", value: Number(m[0]) });
      i += m[0].length;
    } else if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][A-Za-z0-9_-]*/.exec(text.slice(i)) as RegExpExecArray;
      tokens.push({ kind: "name", value: m[0] });
      i += m[0].length;
    } else {
      const op = OPERATORS.find((o) => text.startsWith(o, i));
      if (op === undefined) throw new Error(`unexpected "${c}" in: ${text}`);
      tokens.push({ kind: "op", value: op });
      i += op.length;
    }
  }
  return tokens;
}

export function truthy(v: GhValue): boolean {
  return !(v === false || v === null || v === "" || v === 0 || Number.isNaN(v));
}

function toNumber(v: GhValue): number {
  if (v === null) return 0;
  if (typeof v === "boolean") return v ? 1 : 0;
  if (typeof v === "number") return v;
  if (typeof v === "string") return v.trim() === "" ? 0 : Number(v);
  return Number.NaN;
}

function equal(a: GhValue, b: GhValue): boolean {
  if (typeof a === "string" && typeof b === "string") return a.toLowerCase() === b.toLowerCase();
  if (typeof a === "object" || typeof b === "object") return a === b;
  if (typeof a === typeof b) return a === b;
  return toNumber(a) === toNumber(b);
}

function asText(v: GhValue): string {
  if (v === null) return "";
  if (typeof v === "object") throw new Error("an object or array used as text");
  return String(v);
}

class Parser {
  private i = 0;
  constructor(
    private readonly tokens: Token[],
    private readonly context: GhObject,
    private readonly status: GhStatus,
    private readonly text: string,
  ) {}

  parse(): GhValue {
    const value = this.or();
    if (this.i !== this.tokens.length) this.fail("unexpected text at the end");
    return value;
  }

  private fail(message: string): never {
    throw new Error(`${message} in: ${this.text}`);
  }

  private peek(): Token | undefined {
    return this.tokens[this.i];
  }

  private isOp(value: string): boolean {
    const t = this.peek();
    return t?.kind === "op" && t.value === value;
  }

  private expectOp(value: string): void {
    if (!this.isOp(value)) this.fail(`expected "${value}"`);
    this.i++;
  }

  private or(): GhValue {
    let left = this.and();
    while (this.isOp("||")) {
      this.i++;
      const right = this.and();
      left = truthy(left) ? left : right;
    }
    return left;
  }

  private and(): GhValue {
    let left = this.comparison();
    while (this.isOp("&&")) {
      this.i++;
      const right = this.comparison();
      left = truthy(left) ? right : left;
    }
    return left;
  }

  private comparison(): GhValue {
    let left = this.unary();
    for (;;) {
      const t = this.peek();
      if (t?.kind !== "op" || !["==", "!=", "<", "<=", ">", ">="].includes(t.value)) return left;
      this.i++;
      const right = this.unary();
      if (t.value === "==") left = equal(left, right);
      else if (t.value === "!=") left = !equal(left, right);
      else {
        const [a, b] = [toNumber(left), toNumber(right)];
        left =
          t.value === "<" ? a < b : t.value === "<=" ? a <= b : t.value === ">" ? a > b : a >= b;
      }
    }
  }

  private unary(): GhValue {
    if (this.isOp("!")) {
      this.i++;
      return !truthy(this.unary());
    }
    return this.primary();
  }

  private primary(): GhValue {
    const t = this.peek();
    if (t === undefined) this.fail("the expression ends too early");
    this.i++;
    if (t.kind === "number" || t.kind === "string") return t.value;
    if (t.kind === "op") {
      if (t.value !== "(") this.fail(`unexpected "${t.value}"`);
      const value = this.or();
      this.expectOp(")");
      return value;
    }
    if (t.value === "true" || t.value === "false") return t.value === "true";
    if (t.value === "null") return null;
    if (this.isOp("(")) return this.call(t.value);
    let value: GhValue = Object.hasOwn(this.context, t.value)
      ? (this.context[t.value] as GhValue)
      : this.fail(`unknown context "${t.value}"`);
    for (;;) {
      if (this.isOp(".")) {
        this.i++;
        const name = this.peek();
        if (name?.kind !== "name") this.fail('expected a property name after "."');
        this.i++;
        value = property(value, name.value);
      } else if (this.isOp("[")) {
        this.i++;
        const key = this.or();
        this.expectOp("]");
        value = property(value, asText(key));
      } else {
        return value;
      }
    }
  }

  private call(name: string): GhValue {
    this.expectOp("(");
    const args: GhValue[] = [];
    while (!this.isOp(")")) {
      args.push(this.or());
      if (!this.isOp(")")) this.expectOp(",");
    }
    this.expectOp(")");
    switch (name) {
      case "always":
        return true;
      case "success":
        return this.status.success;
      case "failure":
        return !this.status.success;
      case "cancelled":
        return false;
      case "format": {
        const [template, ...rest] = args;
        return asText(template ?? null).replace(/\{(\d+)\}/g, (_, n: string) =>
          asText(rest[Number(n)] ?? null),
        );
      }
      case "contains": {
        const [haystack, needle] = args;
        if (Array.isArray(haystack)) return haystack.some((x) => equal(x, needle ?? null));
        return asText(haystack ?? null)
          .toLowerCase()
          .includes(asText(needle ?? null).toLowerCase());
      }
      case "startsWith":
        return asText(args[0] ?? null)
          .toLowerCase()
          .startsWith(asText(args[1] ?? null).toLowerCase());
      case "endsWith":
        return asText(args[0] ?? null)
          .toLowerCase()
          .endsWith(asText(args[1] ?? null).toLowerCase());
      default:
        return this.fail(`unsupported function ${name}()`);
    }
  }
}

/** A property of a value; a missing one is null, as in GitHub. */
function property(value: GhValue, name: string): GhValue {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return null;
  const key = Object.keys(value).find((k) => k.toLowerCase() === name.toLowerCase());
  return key === undefined ? null : (value[key] as GhValue);
}

/** Evaluates one expression (the text inside `${{ }}`, or an `if:` written without it). */
export function evaluateExpression(
  text: string,
  context: GhObject,
  status: GhStatus = { success: true },
): GhValue {
  return new Parser(tokenize(text), context, status, text).parse();
}

/** Whether the expression calls a status function (then `success()` is not implied). */
export function callsStatusFunction(text: string): boolean {
  return tokenize(text).some(
    (t, i, all) =>
      t.kind === "name" &&
      ["always", "success", "failure", "cancelled"].includes(t.value) &&
      all[i + 1]?.kind === "op" &&
      all[i + 1]?.value === "(",
  );
}

/** An `if:` value: `${{ expr }}` or a bare expression. */
export function conditionText(value: string): string {
  const m = /^\s*\$\{\{([\s\S]*)\}\}\s*$/.exec(value);
  return m ? (m[1] as string) : value;
}

/**
 * A value with `${{ }}` inside it: a lone expression gives its value, anything else the text
 * with each expression's value in its place.
 */
export function interpolate(value: string, context: GhObject): GhValue {
  const lone = /^\$\{\{([\s\S]*?)\}\}$/.exec(value);
  if (lone && !(lone[1] as string).includes("}}")) {
    return evaluateExpression(lone[1] as string, context);
  }
  return value.replace(/\$\{\{([\s\S]*?)\}\}/g, (_, expr: string) =>
    asText(evaluateExpression(expr, context)),
  );
}
