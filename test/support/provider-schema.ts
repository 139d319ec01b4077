// The AWS provider's schema, as @cdktf/provider-aws generated it, and a check of every
// aws_* resource and data block of parsed .tf files against it.
//
// The package holds one folder per resource and data source (lib/instance,
// lib/data-aws-iam-policy-document…), generated from `terraform providers schema -json`.
// Only the folder of a type that is used is read, never the whole package (lib/ is ~270 MB,
// the .jsii assembly ~125 MB and ~3 s to parse). Two generated files of that folder say it all:
//   - index.js: the synthesis code, the one place where a Terraform name is written. Its
//     `synthesizeHclAttributes()` (the resource itself) and `<struct>ToHclTerraform(struct)`
//     (each nested block) give every settable argument by its Terraform name, whether it is a
//     block (`isBlock`) and, for a block, the function of its nested struct, each read from a
//     camelCase property (`struct.rootBlockDevice`, `this._ami` set from `config.ami`).
//   - index.d.ts: the config and struct interfaces, whose property is optional (`?`) unless
//     the schema says required (for a list or set block: min_items ≥ 1). The camelCase names
//     are not always the snake_case ones converted (get_password_data is fetchPasswordData),
//     so names come from index.js and only the `?` from here, matched on the camelCase name.
// Computed-only attributes are not in either: they cannot be set.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { blocks, labelled, type TfFile } from "./terraform.js";

type Body = Record<string, unknown>;

export interface SchemaBlock {
  /** Arguments (`name = value`) by Terraform name. */
  readonly attributes: ReadonlyMap<string, { readonly required: boolean }>;
  /** Nested blocks (`name { … }`) by Terraform name. */
  readonly blocks: ReadonlyMap<string, NestedBlock>;
}

export interface NestedBlock {
  /** Required: at least one must be written (min_items ≥ 1). */
  readonly required: boolean;
  /** "list", "set", "struct" (single, or max_items = 1) or "map" (labelled). */
  readonly nesting: string;
  readonly block: SchemaBlock;
}

export type BlockKind = "resource" | "data";

/** One entry of a generated `attrs` object: the Terraform name and where its value comes from. */
interface SynthEntry {
  readonly name: string;
  /** The camelCase property (`struct.x`) or storage field (`this._x`) the value is read from. */
  readonly source: string;
  readonly isBlock: boolean;
  readonly nesting: string;
  /** The `…ToHclTerraform` function of a nested struct, when there is one. */
  readonly structFn: string | undefined;
}

const ENTRY =
  /^\s+([a-z0-9_]+): \{\n\s+value: (.+),\n\s+isBlock: (true|false),\n\s+type: "(\w+)",\n\s+storageClassType: "\w+",\n\s+\},?$/gm;

/** The entries of one generated `const attrs = { … }`, checked to be all of them. */
function synthEntries(body: string, where: string): SynthEntry[] {
  const entries: SynthEntry[] = [];
  for (const m of body.matchAll(ENTRY)) {
    const [name, value, isBlock, nesting] = m.slice(1) as [string, string, string, string];
    const source = /\bstruct\.(\w+)/.exec(value)?.[1] ?? /\bthis\.(_\w+)/.exec(value)?.[1];
    if (source === undefined) throw new Error(`${where}: cannot tell where "${name}" is read from`);
    const structFn = /(?<!cdktf\.)\b([a-z]\w*)ToHclTerraform\b/.exec(value)?.[1];
    entries.push({ name, source, isBlock: isBlock === "true", nesting, structFn });
  }
  const expected = body.match(/\bisBlock: /g)?.length ?? 0;
  if (entries.length !== expected) {
    throw new Error(`${where}: read ${entries.length} of its ${expected} arguments`);
  }
  return entries;
}

/** Every file of a folder with the given ending, recursively, concatenated. */
function readAll(dir: string, ending: string): string {
  const parts: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) parts.push(readAll(path, ending));
    else if (entry.name.endsWith(ending)) parts.push(readFileSync(path, "utf8"));
  }
  return parts.join("\n");
}

const CLASS_DECL =
  /^export declare class (\w+) extends cdktf\.(TerraformResource|TerraformDataSource) \{\n\s+static readonly tfResourceType = "([^"]+)";/m;

/** The Terraform type and kind a generated folder declares, from its index.d.ts. */
function declaredType(dts: string): { kind: BlockKind; type: string } | undefined {
  const m = CLASS_DECL.exec(dts);
  if (m === null) return undefined;
  return { kind: m[2] === "TerraformDataSource" ? "data" : "resource", type: m[3] as string };
}

/** The schema of the resource or data source generated into `dir`. */
function readSchema(dir: string, type: string): SchemaBlock {
  const dts = readAll(dir, ".d.ts");
  const js = readAll(dir, ".js");

  // index.d.ts: which properties are optional, per interface; which interface each struct
  // function takes; which interface the constructor takes.
  const optional = new Map<string, Map<string, boolean>>();
  for (const m of dts.matchAll(
    /^export interface (\w+)(?: extends [\w.]+)? \{\n([\s\S]*?)^\}$/gm,
  )) {
    const props = new Map<string, boolean>();
    for (const p of (m[2] as string).matchAll(/^\s+readonly (\w+)(\?)?:/gm)) {
      props.set(p[1] as string, p[2] === "?");
    }
    optional.set(m[1] as string, props);
  }
  const structOf = new Map<string, string>();
  for (const m of dts.matchAll(
    /^export declare function (\w+)ToHclTerraform\(struct\?: ([^)]*)\)/gm,
  )) {
    const iface = (m[2] as string)
      .split("|")
      .map((t) => t.trim())
      .find((t) => t !== "cdktf.IResolvable" && !t.endsWith("OutputReference"));
    if (iface !== undefined) structOf.set(m[1] as string, iface);
  }
  const configIface = /constructor\(scope: Construct, id: string, config\??: (\w+)\);/.exec(
    dts,
  )?.[1];
  if (configIface === undefined) throw new Error(`${dir}: no constructor taking a config`);

  // index.js: the synthesis of each struct, and of the resource itself.
  const structBodies = new Map<string, string>();
  for (const m of js.matchAll(/^function (\w+)ToHclTerraform\(struct\) \{\n([\s\S]*?)^\}$/gm)) {
    structBodies.set(m[1] as string, m[2] as string);
  }
  const topBody = /^ {4}synthesizeHclAttributes\(\) \{\n([\s\S]*?)^ {4}\}$/m.exec(js)?.[1];
  if (topBody === undefined) throw new Error(`${dir}: no synthesizeHclAttributes()`);
  const configProp = new Map<string, string>();
  for (const m of js.matchAll(/^\s+this\.(_\w+)(?:\.internalValue)? = config\.(\w+);$/gm)) {
    configProp.set(m[1] as string, m[2] as string);
  }

  const built = new Map<string, SchemaBlock>();
  const build = (
    entries: readonly SynthEntry[],
    props: ReadonlyMap<string, boolean> | undefined,
    propOf: (source: string) => string | undefined,
    where: string,
  ): SchemaBlock => {
    const attributes = new Map<string, { required: boolean }>();
    const nested = new Map<string, NestedBlock>();
    const block: SchemaBlock = { attributes, blocks: nested };
    for (const e of entries) {
      const prop = propOf(e.source);
      const isOptional = prop === undefined ? undefined : props?.get(prop);
      if (isOptional === undefined) {
        throw new Error(`${where}: "${e.name}" (${e.source}) has no property in index.d.ts`);
      }
      if (!e.isBlock) {
        attributes.set(e.name, { required: !isOptional });
        continue;
      }
      if (e.structFn === undefined) throw new Error(`${where}: block "${e.name}" has no struct`);
      const fn = e.structFn;
      let cached: SchemaBlock | undefined;
      nested.set(e.name, {
        required: !isOptional,
        nesting: e.nesting,
        // Built when first asked: some structs nest themselves.
        get block() {
          cached ??= struct(fn, `${where}.${e.name}`);
          return cached;
        },
      });
    }
    return block;
  };
  const struct = (fn: string, where: string): SchemaBlock => {
    const done = built.get(fn);
    if (done !== undefined) return done;
    const body = structBodies.get(fn);
    const iface = structOf.get(fn);
    if (body === undefined || iface === undefined)
      throw new Error(`${where}: no ${fn}ToHclTerraform`);
    const block = build(synthEntries(body, where), optional.get(iface), (s) => s, where);
    built.set(fn, block);
    return block;
  };
  return build(
    synthEntries(topBody, type),
    optional.get(configIface),
    (s) => configProp.get(s),
    type,
  );
}

/** The schema of every aws_ resource and data source, read from @cdktf/provider-aws as needed. */
export class AwsProviderSchema {
  /** The hashicorp/aws version the package was generated from. */
  readonly providerVersion: string;
  readonly packageVersion: string;
  private readonly lib: string;
  private readonly cache = new Map<string, SchemaBlock | undefined>();
  private index: Map<string, string> | undefined;

  constructor(
    packageDir = dirname(
      createRequire(import.meta.url).resolve("@cdktf/provider-aws/package.json"),
    ),
  ) {
    const pkg = JSON.parse(readFileSync(join(packageDir, "package.json"), "utf8")) as {
      version: string;
      cdktf?: { provider?: { name?: string; version?: string } };
    };
    if (pkg.cdktf?.provider?.name !== "registry.terraform.io/hashicorp/aws") {
      throw new Error(`${packageDir} is not generated from hashicorp/aws`);
    }
    this.providerVersion = pkg.cdktf.provider.version ?? "?";
    this.packageVersion = pkg.version;
    this.lib = join(packageDir, "lib");
  }

  /** The schema of `resource "type"` or `data "type"`; undefined when the provider has none. */
  schemaOf(kind: BlockKind, type: string): SchemaBlock | undefined {
    const key = `${kind} ${type}`;
    if (!this.cache.has(key)) {
      const dir = this.folderOf(kind, type);
      this.cache.set(key, dir === undefined ? undefined : readSchema(dir, `${kind} ${type}`));
    }
    return this.cache.get(key);
  }

  /**
   * The generated folder: aws_s3_bucket is lib/s3-bucket, data aws_vpc lib/data-aws-vpc, as
   * the generator names them, confirmed by the type its index.d.ts declares. A name that does
   * not follow that rule (the generator renames a few) is looked up in every folder.
   */
  private folderOf(kind: BlockKind, type: string): string | undefined {
    if (!type.startsWith("aws_")) return undefined;
    const kebab = (kind === "data" ? type : type.slice("aws_".length)).replaceAll("_", "-");
    const guess = join(this.lib, kind === "data" ? `data-${kebab}` : kebab);
    const dts = join(guess, "index.d.ts");
    if (existsSync(dts)) {
      const declared = declaredType(readFileSync(dts, "utf8"));
      if (declared?.kind === kind && declared.type === type) return guess;
    }
    if (this.index === undefined) {
      this.index = new Map();
      for (const entry of readdirSync(this.lib, { withFileTypes: true })) {
        const file = join(this.lib, entry.name, "index.d.ts");
        if (!entry.isDirectory() || !existsSync(file)) continue;
        const declared = declaredType(readFileSync(file, "utf8"));
        if (declared)
          this.index.set(`${declared.kind} ${declared.type}`, join(this.lib, entry.name));
      }
    }
    return this.index.get(`${kind} ${type}`);
  }
}

// ---------------------------------------------------------------------------------------
// The check

const META_ARGUMENTS: Record<BlockKind, ReadonlySet<string>> = {
  resource: new Set([
    "count",
    "for_each",
    "provider",
    "depends_on",
    "lifecycle",
    "provisioner",
    "connection",
  ]),
  data: new Set(["count", "for_each", "provider", "depends_on", "lifecycle"]),
};
const LIFECYCLE: Record<BlockKind, ReadonlySet<string>> = {
  resource: new Set([
    "create_before_destroy",
    "prevent_destroy",
    "ignore_changes",
    "replace_triggered_by",
    "precondition",
    "postcondition",
    "action_trigger",
  ]),
  data: new Set(["precondition", "postcondition"]),
};
const DYNAMIC_ARGUMENTS = new Set(["for_each", "iterator", "labels", "content"]);

/** Levenshtein distance, for "did you mean". */
function distance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      next.push(
        Math.min(
          (row[j] as number) + 1,
          (next[j - 1] as number) + 1,
          (row[j - 1] as number) + cost,
        ),
      );
    }
    row = next;
  }
  return row[b.length] as number;
}

function suggestion(name: string, block: SchemaBlock): string {
  let best: [string, number] | undefined;
  for (const known of [...block.attributes.keys(), ...block.blocks.keys()]) {
    const d = distance(name, known);
    if (d <= Math.max(2, Math.floor(name.length / 4)) && (best === undefined || d < best[1])) {
      best = [known, d];
    }
  }
  return best ? ` (did you mean "${best[0]}"?)` : "";
}

const isBody = (v: unknown): v is Body => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * Checks one block body against its schema: `at` prefixes each problem, `path` names the block
 * in the schema (aws_instance, aws_instance.root_block_device), `meta` says which
 * meta-arguments the body may have (only the resource or data block itself).
 */
function checkBody(
  body: Body,
  block: SchemaBlock,
  at: string,
  path: string,
  meta: BlockKind | undefined,
  problems: string[],
): void {
  const dynamicLabels = new Set<string>();
  for (const [key, value] of Object.entries(body)) {
    if (meta !== undefined && META_ARGUMENTS[meta].has(key)) {
      if (key === "lifecycle") {
        for (const lifecycle of blocks(value)) {
          for (const k of Object.keys(lifecycle)) {
            if (!LIFECYCLE[meta].has(k))
              problems.push(
                `${at}: lifecycle has "${k}", which is not a lifecycle argument of a ${meta === "data" ? "data source" : "resource"}`,
              );
          }
        }
      }
      continue;
    }
    if (key === "dynamic") {
      for (const [label, d] of labelled(value)) {
        dynamicLabels.add(label);
        const nested = block.blocks.get(label);
        if (nested === undefined) {
          problems.push(
            `${at}: dynamic "${label}": ${path} has no block "${label}"${suggestion(label, block)}`,
          );
          continue;
        }
        for (const k of Object.keys(d)) {
          if (!DYNAMIC_ARGUMENTS.has(k))
            problems.push(
              `${at}: dynamic "${label}" has "${k}", which a dynamic block does not take`,
            );
        }
        const contents = blocks(d.content);
        if (contents.length === 0) problems.push(`${at}: dynamic "${label}" has no content block`);
        for (const content of contents) {
          checkBody(
            content,
            nested.block,
            `${at}: dynamic "${label}" content`,
            `${path}.${label}`,
            undefined,
            problems,
          );
        }
      }
      continue;
    }
    if (block.attributes.has(key)) continue;
    const nested = block.blocks.get(key);
    if (nested === undefined) {
      problems.push(
        `${at}: "${key}" is neither an argument nor a block of ${path}${suggestion(key, block)}`,
      );
      continue;
    }
    // hcl2json gives blocks as a list of bodies (a labelled block: label → bodies); anything
    // else is `name = value`, which Terraform refuses for a block.
    const bodies =
      nested.nesting === "map" && isBody(value)
        ? labelled(value).map(([, b]) => b)
        : Array.isArray(value) && value.every(isBody)
          ? (value as Body[])
          : undefined;
    if (bodies === undefined) {
      problems.push(`${at}: "${key}" is a block of ${path}: write ${key} { … }, not ${key} = …`);
      continue;
    }
    for (const b of bodies)
      checkBody(b, nested.block, `${at}: ${key}`, `${path}.${key}`, undefined, problems);
  }
  for (const [name, attribute] of block.attributes) {
    if (attribute.required && !Object.hasOwn(body, name)) {
      problems.push(`${at}: the required argument "${name}" of ${path} is not set`);
    }
  }
  for (const [name, nested] of block.blocks) {
    if (nested.required && !Object.hasOwn(body, name) && !dynamicLabels.has(name)) {
      problems.push(`${at}: ${path} needs a "${name}" block, and there is none`);
    }
  }
}

export interface AwsBlockCheck {
  /** "FILE: what is wrong" lines. */
  readonly problems: string[];
  /** Every block checked, as `FILE: resource "type" "name"`. */
  readonly checked: string[];
}

/**
 * Every `resource "aws_*"` and `data "aws_*"` block of the files (check blocks' scoped data
 * sources too) against the provider's schema: a type the provider has, no argument or block
 * it does not know (in nested blocks and dynamic blocks' content too), every required
 * argument set and every required block written.
 */
export function checkAwsBlocks(files: readonly TfFile[], schema: AwsProviderSchema): AwsBlockCheck {
  const problems: string[] = [];
  const checked: string[] = [];
  const checkKind = (file: string, kind: BlockKind, byType: unknown): void => {
    for (const [type, byName] of Object.entries((byType ?? {}) as Record<string, unknown>)) {
      if (!type.startsWith("aws_")) continue;
      for (const [name, body] of labelled(byName)) {
        const at = `${file}: ${kind} "${type}" "${name}"`;
        checked.push(at);
        const block = schema.schemaOf(kind, type);
        if (block === undefined) {
          const what = kind === "data" ? "data source" : "resource type";
          problems.push(`${at}: hashicorp/aws ${schema.providerVersion} has no ${what} "${type}"`);
          continue;
        }
        checkBody(body, block, at, type, kind, problems);
      }
    }
  };
  for (const { path, body } of files) {
    checkKind(path, "resource", body.resource);
    checkKind(path, "data", body.data);
    for (const [, check] of labelled(body.check)) checkKind(path, "data", check.data);
  }
  return { problems, checked };
}
