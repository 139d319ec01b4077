// Validates a JSON value against src/fleet/nixship.schema.json: the JSON Schema 2020-12
// keywords that file uses, and an error for any other, so a new keyword cannot pass unchecked.
// Returns where the value fails (instance paths), or [] when it is valid.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

type Schema = boolean | Readonly<Record<string, unknown>>;

export const FLEET_SCHEMA_FILE = fileURLToPath(
  new URL("../../src/fleet/nixship.schema.json", import.meta.url),
);

const IGNORED = new Set([
  "$schema",
  "$id",
  "$comment",
  "$defs",
  "title",
  "description",
  "default",
  "then",
  "else",
]);

export function fleetSchemaProblems(value: unknown): string[] {
  const root = JSON.parse(readFileSync(FLEET_SCHEMA_FILE, "utf8")) as Record<string, unknown>;
  const defs = root.$defs as Record<string, Schema>;
  const deref = (ref: string): Schema => {
    const name = /^#\/\$defs\/(\w+)$/.exec(ref)?.[1];
    const target = name === undefined ? undefined : defs[name];
    if (target === undefined) throw new Error(`unresolved $ref ${ref}`);
    return target;
  };
  const check = (schema: Schema, v: unknown, at: string): string[] => {
    if (schema === true) return [];
    if (schema === false) return [`${at}: not allowed`];
    return Object.entries(schema).flatMap(([keyword, arg]) =>
      IGNORED.has(keyword) ? [] : checkKeyword(schema, keyword, arg, v, at),
    );
  };
  const fails = (schema: Schema, v: unknown, at: string) => check(schema, v, at).length > 0;

  const checkKeyword = (
    schema: Readonly<Record<string, unknown>>,
    keyword: string,
    arg: unknown,
    v: unknown,
    at: string,
  ): string[] => {
    const problem = (ok: boolean) => (ok ? [] : [`${at}: fails ${keyword} ${JSON.stringify(arg)}`]);
    const obj = isObject(v) ? v : undefined;
    const arr = Array.isArray(v) ? v : undefined;
    const str = typeof v === "string" ? v : undefined;
    switch (keyword) {
      case "$ref":
        return check(deref(arg as string), v, at);
      case "type":
        return problem(hasType(arg as string, v));
      case "enum":
        return problem((arg as unknown[]).includes(v));
      case "const":
        return problem(v === arg);
      case "pattern":
        return problem(str === undefined || new RegExp(arg as string, "u").test(str));
      case "minLength":
        return problem(str === undefined || str.length >= (arg as number));
      case "maxLength":
        return problem(str === undefined || str.length <= (arg as number));
      case "minimum":
        return problem(typeof v !== "number" || v >= (arg as number));
      case "maximum":
        return problem(typeof v !== "number" || v <= (arg as number));
      case "required":
        return obj === undefined
          ? []
          : (arg as string[]).filter((k) => !(k in obj)).map((k) => `${at}.${k}: required`);
      case "minProperties":
        return problem(obj === undefined || Object.keys(obj).length >= (arg as number));
      case "properties":
        return obj === undefined
          ? []
          : Object.entries(arg as Record<string, Schema>).flatMap(([k, sub]) =>
              k in obj ? check(sub, obj[k], `${at}.${k}`) : [],
            );
      case "additionalProperties": {
        if (obj === undefined) return [];
        const known = Object.keys((schema.properties as object | undefined) ?? {});
        return Object.entries(obj).flatMap(([k, sub]) =>
          known.includes(k) ? [] : check(arg as Schema, sub, `${at}.${k}`),
        );
      }
      case "propertyNames":
        return obj === undefined
          ? []
          : Object.keys(obj).flatMap((k) => check(arg as Schema, k, `${at} key ${k}`));
      case "items":
        return arr === undefined
          ? []
          : arr.flatMap((item, i) => check(arg as Schema, item, `${at}[${i}]`));
      case "minItems":
        return problem(arr === undefined || arr.length >= (arg as number));
      case "maxItems":
        return problem(arr === undefined || arr.length <= (arg as number));
      case "uniqueItems":
        return problem(
          arr === undefined ||
            !arg ||
            new Set(arr.map((x) => JSON.stringify(x))).size === arr.length,
        );
      case "contains":
        return problem(arr === undefined || arr.some((item) => !fails(arg as Schema, item, at)));
      case "allOf":
        return (arg as Schema[]).flatMap((sub) => check(sub, v, at));
      case "anyOf":
        return problem((arg as Schema[]).some((sub) => !fails(sub, v, at)));
      case "oneOf":
        return problem((arg as Schema[]).filter((sub) => !fails(sub, v, at)).length === 1);
      case "not":
        return problem(fails(arg as Schema, v, at));
      case "if": {
        const branch = fails(arg as Schema, v, at) ? schema.else : schema.then;
        return branch === undefined ? [] : check(branch as Schema, v, at);
      }
      default:
        throw new Error(`the schema uses "${keyword}", which this validator does not know`);
    }
  };
  return check(root, value, "(root)");
}

function hasType(type: string, value: unknown): boolean {
  switch (type) {
    case "object":
      return isObject(value);
    case "array":
      return Array.isArray(value);
    case "string":
      return typeof value === "string";
    case "integer":
      return Number.isInteger(value);
    case "number":
      return typeof value === "number";
    case "boolean":
      return typeof value === "boolean";
    default:
      throw new Error(`unknown JSON Schema type ${type}`);
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
