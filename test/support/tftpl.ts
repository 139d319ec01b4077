// Renders the Terraform templates of terraform/modules/*/ (`templatefile`) for tests, where no
// terraform binary exists. Only what the templates use is supported, as Terraform does it:
// `${NAME}` (a string or number), `${jsonencode(NAME)}`, `${join("SEP", NAME)}` and the
// escapes `$${` and `%%{`. Anything else (directives, other functions, unknown names) throws,
// so a template never renders here differently from how Terraform would render it.

export type TemplateValue = string | number | readonly string[];

export interface Rendered {
  readonly text: string;
  /** The names the template refers to. */
  readonly used: ReadonlySet<string>;
}

const NAME = "[A-Za-z_][A-Za-z0-9_-]*";
const PLAIN = new RegExp(`^(${NAME})$`);
const JSONENCODE = new RegExp(`^jsonencode\\((${NAME})\\)$`);
/** A quoted separator without escapes or interpolations, which Terraform takes as written. */
const JOIN = new RegExp(`^join\\("([^"\\\\$%]*)",\\s*(${NAME})\\)$`);

export function renderTemplate(
  template: string,
  values: Readonly<Record<string, TemplateValue>>,
  source = "template",
): Rendered {
  const used = new Set<string>();
  let out = "";
  let i = 0;
  const where = (at: number) => {
    const before = template.slice(0, at);
    return `${source}:${before.split("\n").length}`;
  };
  const value = (name: string, at: number): TemplateValue => {
    if (!Object.hasOwn(values, name)) {
      throw new Error(`${where(at)}: the template refers to "${name}", which is not given`);
    }
    used.add(name);
    return values[name] as TemplateValue;
  };
  while (i < template.length) {
    const dollar = template.indexOf("${", i);
    const percent = template.indexOf("%{", i);
    const next = [dollar, percent].filter((n) => n >= 0).sort((a, b) => a - b)[0];
    if (next === undefined) {
      out += template.slice(i);
      break;
    }
    // `$${` and `%%{` are the escapes for a literal `${` and `%{`.
    if (next > 0 && template[next - 1] === template[next]) {
      out += `${template.slice(i, next - 1)}${template[next]}{`;
      i = next + 2;
      continue;
    }
    out += template.slice(i, next);
    if (next === percent) {
      throw new Error(`${where(next)}: template directives (%{...}) are not supported here`);
    }
    const close = template.indexOf("}", next + 2);
    if (close < 0) throw new Error(`${where(next)}: "\${" is never closed`);
    const expr = template.slice(next + 2, close);
    out += evaluate(expr.trim(), next, value, where);
    i = close + 1;
  }
  return { text: out, used };
}

function evaluate(
  expr: string,
  at: number,
  value: (name: string, at: number) => TemplateValue,
  where: (at: number) => string,
): string {
  const plain = PLAIN.exec(expr);
  if (plain) {
    const v = value(plain[1] as string, at);
    if (typeof v === "string") return v;
    if (typeof v === "number") return String(v);
    throw new Error(`${where(at)}: \${${expr}} interpolates a list; Terraform refuses that`);
  }
  const json = JSONENCODE.exec(expr);
  if (json) return terraformJson(value(json[1] as string, at));
  const join = JOIN.exec(expr);
  if (join) {
    const v = value(join[2] as string, at);
    if (!Array.isArray(v)) throw new Error(`${where(at)}: join() of "${join[2]}", not a list`);
    return v.join(join[1] as string);
  }
  throw new Error(`${where(at)}: the expression \${${expr}} is not supported by this renderer`);
}

/**
 * `jsonencode` as Terraform writes it: compact, with Go's escapes (`<`, `>` and `&` as
 * \u003c, \u003e and \u0026; U+2028 and U+2029 escaped; control characters as \u00XX except
 * \n, \r and \t).
 */
export function terraformJson(v: TemplateValue): string {
  if (typeof v === "number") {
    if (!Number.isFinite(v)) throw new Error(`jsonencode of ${v}`);
    return String(v);
  }
  if (typeof v === "string") return goJsonString(v);
  return `[${v.map((s) => goJsonString(s)).join(",")}]`;
}

const SHORT: Record<string, string> = {
  '"': '\\"',
  "\\": "\\\\",
  "\n": "\\n",
  "\r": "\\r",
  "\t": "\\t",
};

function goJsonString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const code = ch.codePointAt(0) as number;
    const short = SHORT[ch];
    if (short !== undefined) out += short;
    else if (code < 0x20 || "<>&\u2028\u2029".includes(ch)) {
      out += `\\u${code.toString(16).padStart(4, "0")}`;
    } else out += ch;
  }
  return `${out}"`;
}
