// Terraform type constraints, for checking JSON values against what a module declares: the
// type expressions of variable blocks (`map(string)`, `list(object({a = string}))`, as
// @cdktf/hcl2json gives them, `${...}` around), and the JSON form `terraform output -json`
// prints (`["map", "string"]`). The check is strict: no conversions (a number is not a
// string), no nulls, no attributes an object type does not declare.

export type TfType =
  | { readonly kind: "string" | "number" | "bool" | "any" }
  | { readonly kind: "list" | "set" | "map"; readonly element: TfType }
  | { readonly kind: "tuple"; readonly elements: readonly TfType[] }
  | {
      readonly kind: "object";
      readonly attributes: Readonly<Record<string, { type: TfType; optional: boolean }>>;
    };

const PRIMITIVES = { string: "string", number: "number", bool: "bool", any: "any" } as const;

/** Parses a type expression; `${map(string)}` (hcl2json's form) and `map(string)` alike. */
export function parseTypeExpression(text: string): TfType {
  const body = /^\$\{([\s\S]*)\}$/.exec(text.trim())?.[1] ?? text;
  const tokens = body.match(/[A-Za-z_][A-Za-z0-9_-]*|"(?:[^"\\]|\\.)*"|[-0-9.]+|\S/g) ?? [];
  let i = 0;
  const peek = () => tokens[i];
  const next = () => {
    const token = tokens[i++];
    if (token === undefined) throw new Error(`type ${text}: ends too early`);
    return token;
  };
  const expect = (token: string) => {
    const got = next();
    if (got !== token) throw new Error(`type ${text}: expected '${token}', got '${got}'`);
  };
  /** Skips an expression up to (not past) the `)` that closes the enclosing call. */
  const skipExpression = () => {
    let depth = 0;
    while (depth > 0 || peek() !== ")") {
      const token = next();
      if ("([{".includes(token)) depth++;
      if (")]}".includes(token)) depth--;
    }
  };
  const parseType = (): TfType => {
    const name = next();
    if (name in PRIMITIVES) return { kind: PRIMITIVES[name as keyof typeof PRIMITIVES] };
    expect("(");
    let type: TfType;
    if (name === "list" || name === "set" || name === "map") {
      type = { kind: name, element: parseType() };
    } else if (name === "tuple") {
      expect("[");
      const elements: TfType[] = [];
      while (peek() !== "]") {
        elements.push(parseType());
        if (peek() === ",") next();
      }
      expect("]");
      type = { kind: "tuple", elements };
    } else if (name === "object") {
      expect("{");
      const attributes: Record<string, { type: TfType; optional: boolean }> = {};
      while (peek() !== "}") {
        const attribute = next().replace(/^"(.*)"$/, "$1");
        const separator = next();
        if (separator !== "=" && separator !== ":") {
          throw new Error(`type ${text}: expected '=' after ${attribute}, got '${separator}'`);
        }
        let optional = false;
        if (peek() === "optional") {
          next();
          expect("(");
          optional = true;
          attributes[attribute] = { type: parseType(), optional };
          if (peek() === ",") {
            next();
            skipExpression();
          }
          expect(")");
        } else {
          attributes[attribute] = { type: parseType(), optional };
        }
        if (peek() === ",") next();
      }
      expect("}");
      type = { kind: "object", attributes };
    } else {
      throw new Error(`type ${text}: unknown type constructor '${name}'`);
    }
    expect(")");
    return type;
  };
  const type = parseType();
  if (i !== tokens.length) throw new Error(`type ${text}: unexpected '${tokens[i]}'`);
  return type;
}

/** Parses the JSON type encoding of `terraform output -json` ("string", ["map", "string"]). */
export function parseTypeJson(json: unknown): TfType {
  if (json === "string" || json === "number" || json === "bool") return { kind: json };
  if (json === "dynamic") return { kind: "any" };
  if (Array.isArray(json)) {
    const [name, argument, optionalNames] = json as [unknown, unknown, unknown];
    if (name === "list" || name === "set" || name === "map") {
      return { kind: name, element: parseTypeJson(argument) };
    }
    if (name === "tuple" && Array.isArray(argument)) {
      return { kind: "tuple", elements: argument.map(parseTypeJson) };
    }
    if (name === "object" && isObject(argument)) {
      const optional = Array.isArray(optionalNames) ? optionalNames : [];
      return {
        kind: "object",
        attributes: Object.fromEntries(
          Object.entries(argument).map(([k, v]) => [
            k,
            { type: parseTypeJson(v), optional: optional.includes(k) },
          ]),
        ),
      };
    }
  }
  throw new Error(`not a Terraform type in JSON: ${JSON.stringify(json)}`);
}

/** Where `value` does not conform to `type`: one line per problem, with its path; [] if it does. */
export function typeProblems(type: TfType, value: unknown, path = "value"): string[] {
  const wrong = (what: string) => [`${path}: expected ${what}, got ${JSON.stringify(value)}`];
  switch (type.kind) {
    case "any":
      return [];
    case "string":
      return typeof value === "string" ? [] : wrong("a string");
    case "number":
      return typeof value === "number" ? [] : wrong("a number");
    case "bool":
      return typeof value === "boolean" ? [] : wrong("a bool");
    case "list":
    case "set":
      if (!Array.isArray(value)) return wrong(`a ${type.kind}`);
      return value.flatMap((v, i) => typeProblems(type.element, v, `${path}[${i}]`));
    case "tuple":
      if (!Array.isArray(value) || value.length !== type.elements.length) {
        return wrong(`a tuple of ${type.elements.length}`);
      }
      return type.elements.flatMap((t, i) => typeProblems(t, value[i], `${path}[${i}]`));
    case "map":
      if (!isObject(value)) return wrong("a map");
      return Object.entries(value).flatMap(([k, v]) =>
        typeProblems(type.element, v, `${path}[${JSON.stringify(k)}]`),
      );
    case "object": {
      if (!isObject(value)) return wrong("an object");
      const problems: string[] = [];
      for (const [name, attribute] of Object.entries(type.attributes)) {
        if (name in value)
          problems.push(...typeProblems(attribute.type, value[name], `${path}.${name}`));
        else if (!attribute.optional) problems.push(`${path}.${name}: missing`);
      }
      for (const name of Object.keys(value)) {
        if (!(name in type.attributes)) problems.push(`${path}.${name}: not declared by the type`);
      }
      return problems;
    }
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
