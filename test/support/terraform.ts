// Terraform modules read without a terraform binary: .tf files parsed as HCL2 with
// @cdktf/hcl2json into a model of each module (variables, outputs, locals, resources, module
// calls, every reference and templatefile() call), and the structural checks over that model
// as pure functions, each returning its problems as "FILE: what is wrong" lines.
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import { parse } from "@cdktf/hcl2json";
import {
  type AstNode,
  callsIn,
  type ExprReference,
  evaluateNode,
  type HclValue,
  type ParsedTemplate,
  RenderError,
  type Resolver,
  referencesIn,
  sourceOf,
} from "./hcl-expr.js";

type Body = Record<string, unknown>;

export interface TfFile {
  /** The path shown in problems (relative to the display root). */
  readonly path: string;
  readonly body: Body;
}

export interface TfVariable {
  readonly name: string;
  readonly file: string;
  readonly required: boolean;
  /** The type as written (`map(string)`), or undefined when none is declared. */
  readonly type: string | undefined;
  readonly default: unknown;
  readonly description: string | undefined;
}

export interface TfOutput {
  readonly name: string;
  readonly file: string;
  readonly description: string | undefined;
  readonly value: unknown;
}

export interface TfBlock {
  readonly file: string;
  readonly body: Body;
}

export interface TfModuleCall {
  readonly name: string;
  readonly file: string;
  readonly source: string;
  /** The arguments passed, meta-arguments (source, count, for_each…) left out. */
  readonly args: readonly string[];
}

/** A reference made somewhere in the module. */
export interface TfUse {
  readonly file: string;
  /** Where: `output "x"`, `resource "aws_iam_policy" "y"`, `locals` … */
  readonly where: string;
  readonly ref: ExprReference;
  /** Set when the reference sits in the validation block of this variable. */
  readonly validationOf?: string;
}

/** A templatefile() call whose template file could be read. */
export interface TfTemplateCall {
  readonly file: string;
  readonly where: string;
  /** The template file (display path), and whether it exists. */
  readonly template: string;
  readonly exists: boolean;
  /** Names the vars argument passes; undefined when it is not an object literal or a local set to one. */
  readonly passed: readonly string[] | undefined;
  /** Names the template reads. */
  readonly used: readonly string[];
}

export interface TfModule {
  /** The module's directory as shown in problems. */
  readonly dir: string;
  readonly absDir: string;
  readonly files: readonly TfFile[];
  /** Every entry of the directory (files and folders). */
  readonly entries: readonly string[];
  readonly variables: ReadonlyMap<string, TfVariable>;
  readonly outputs: ReadonlyMap<string, TfOutput>;
  readonly locals: ReadonlyMap<string, TfBlock & { readonly value: unknown }>;
  /** Keyed "type.name". */
  readonly resources: ReadonlyMap<string, TfBlock>;
  /** Keyed "type.name". */
  readonly dataSources: ReadonlyMap<string, TfBlock>;
  readonly moduleCalls: ReadonlyMap<string, TfModuleCall>;
  readonly uses: readonly TfUse[];
  readonly templateCalls: readonly TfTemplateCall[];
  /** The terraform blocks' settings. */
  readonly requiredVersion: string | undefined;
  readonly requiredProviders: ReadonlyMap<string, { source?: string; version?: string }>;
  readonly readme: string | undefined;
}

// ---------------------------------------------------------------------------------------
// Finding and parsing files

/** Every .tf file under `dir`, recursively (never inside .terraform or node_modules). */
export async function findTfFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const entry of await readdir(d, { withFileTypes: true })) {
      const path = join(d, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== ".terraform" && entry.name !== "node_modules") await walk(path);
      } else if (entry.isFile() && entry.name.endsWith(".tf")) {
        out.push(path);
      }
    }
  };
  if (existsSync(dir)) await walk(dir);
  return out.sort();
}

/** Every directory that holds .tf files (a Terraform module), under any of `roots`. */
export async function findModuleDirs(roots: readonly string[]): Promise<string[]> {
  const dirs = new Set<string>();
  for (const root of roots) for (const file of await findTfFiles(root)) dirs.add(dirname(file));
  return [...dirs].sort();
}

/** Parses one .tf file; a syntax error throws naming the file and the position. */
export async function parseTfFile(absPath: string, displayPath: string): Promise<TfFile> {
  const text = await readFile(absPath, "utf8");
  try {
    return { path: displayPath, body: (await parse(displayPath, text)) as Body };
  } catch (err) {
    throw new Error(`${displayPath}: not valid HCL2: ${(err as Error).message}`);
  }
}

/** The parse problems of the given files (none when every one parses). */
export async function parseProblems(files: readonly string[], root: string): Promise<string[]> {
  const problems: string[] = [];
  for (const file of files) {
    await parseTfFile(file, relative(root, file)).catch((err: Error) => {
      problems.push(err.message);
    });
  }
  return problems;
}

// ---------------------------------------------------------------------------------------
// The module model

/** hcl2json's `{ name: [body, …] }` as (name, body) pairs. */
export function labelled(value: unknown): [string, Body][] {
  const out: [string, Body][] = [];
  for (const [name, bodies] of Object.entries((value ?? {}) as Record<string, unknown>)) {
    for (const body of bodies as Body[]) out.push([name, body]);
  }
  return out;
}

/** A block (or list of blocks) as hcl2json gives it, as a list. */
export function blocks(value: unknown): Body[] {
  return Array.isArray(value) ? (value as Body[]) : value === undefined ? [] : [value as Body];
}

/** A type expression as written: hcl2json keeps `map(string)` as "${map(string)}". */
function typeText(value: unknown): string | undefined {
  if (typeof value !== "string") return undefined;
  return value.startsWith("${") && value.endsWith("}") ? value.slice(2, -1) : value;
}

const MODULE_META_ARGUMENTS = new Set([
  "source",
  "version",
  "count",
  "for_each",
  "providers",
  "depends_on",
]);

/** Loads the module in `absDir`; paths in problems are shown relative to `displayRoot`. */
export async function loadModule(absDir: string, displayRoot: string): Promise<TfModule> {
  const show = (p: string) => relative(displayRoot, p) || ".";
  const entries = (await readdir(absDir)).sort();
  const files: TfFile[] = [];
  for (const name of entries.filter((e) => e.endsWith(".tf"))) {
    files.push(await parseTfFile(join(absDir, name), show(join(absDir, name))));
  }
  const variables = new Map<string, TfVariable>();
  const outputs = new Map<string, TfOutput>();
  const locals = new Map<string, TfBlock & { value: unknown }>();
  const resources = new Map<string, TfBlock>();
  const dataSources = new Map<string, TfBlock>();
  const moduleCalls = new Map<string, TfModuleCall>();
  const requiredProviders = new Map<string, { source?: string; version?: string }>();
  let requiredVersion: string | undefined;
  const collector = new UseCollector(absDir, displayRoot);

  for (const { path: file, body } of files) {
    for (const [name, v] of labelled(body.variable)) {
      variables.set(name, {
        name,
        file,
        required: !Object.hasOwn(v, "default"),
        type: typeText(v.type),
        default: v.default,
        description: v.description as string | undefined,
      });
      for (const validation of blocks(v.validation)) {
        await collector.walk(validation, file, `variable "${name}" validation`, new Set(), name);
      }
    }
    for (const [name, o] of labelled(body.output)) {
      outputs.set(name, {
        name,
        file,
        description: o.description as string | undefined,
        value: o.value,
      });
      await collector.walk(o, file, `output "${name}"`);
    }
    for (const block of blocks(body.locals)) {
      for (const [name, value] of Object.entries(block)) {
        locals.set(name, { file, body: block, value });
        await collector.walk(value, file, `local "${name}"`);
      }
    }
    for (const [kind, map, word] of [
      ["resource", resources, "resource"],
      ["data", dataSources, "data"],
    ] as const) {
      for (const [type, byName] of Object.entries((body[kind] ?? {}) as Record<string, unknown>)) {
        for (const [name, b] of labelled(byName)) {
          map.set(`${type}.${name}`, { file, body: b });
          await collector.walk(b, file, `${word} "${type}" "${name}"`);
        }
      }
    }
    for (const [name, m] of labelled(body.module)) {
      moduleCalls.set(name, {
        name,
        file,
        source: String(m.source ?? ""),
        args: Object.keys(m).filter((k) => !MODULE_META_ARGUMENTS.has(k)),
      });
      const args = Object.fromEntries(Object.entries(m).filter(([k]) => k !== "providers"));
      await collector.walk(args, file, `module "${name}"`);
    }
    for (const [name, p] of labelled(body.provider)) {
      await collector.walk(p, file, `provider "${name}"`);
    }
    for (const [name, c] of labelled(body.check)) {
      await collector.walk(c, file, `check "${name}"`);
    }
    for (const t of blocks(body.terraform)) {
      if (typeof t.required_version === "string") requiredVersion = t.required_version;
      for (const providers of blocks(t.required_providers)) {
        for (const [name, req] of Object.entries(providers)) {
          requiredProviders.set(name, req as { source?: string; version?: string });
        }
      }
    }
  }
  const readmePath = join(absDir, "README.md");
  return {
    dir: show(absDir),
    absDir,
    files,
    entries,
    variables,
    outputs,
    locals,
    resources,
    dataSources,
    moduleCalls,
    uses: collector.uses,
    templateCalls: collector.templateCallsWith(locals),
    requiredVersion,
    requiredProviders,
    readme: existsSync(readmePath) ? await readFile(readmePath, "utf8") : undefined,
  };
}

/** Loads every module under the roots, keyed by absolute directory. */
export async function loadModules(
  roots: readonly string[],
  displayRoot: string,
): Promise<Map<string, TfModule>> {
  const modules = new Map<string, TfModule>();
  for (const dir of await findModuleDirs(roots)) {
    modules.set(dir, await loadModule(dir, displayRoot));
  }
  return modules;
}

/** Walks block bodies for references and templatefile() calls. */
class UseCollector {
  readonly uses: TfUse[] = [];

  constructor(
    private readonly absDir: string,
    private readonly displayRoot: string,
  ) {}

  async walk(
    value: unknown,
    file: string,
    where: string,
    bound: ReadonlySet<string> = new Set(),
    validationOf?: string,
  ): Promise<void> {
    if (typeof value === "string") {
      for (const ref of await referencesIn(value, bound)) {
        this.uses.push({ file, where, ref, ...(validationOf ? { validationOf } : {}) });
      }
      for (const { template, call } of await callsIn(value, "templatefile")) {
        await this.templateCall(template, call, file, where);
      }
      return;
    }
    if (Array.isArray(value)) {
      for (const item of value) await this.walk(item, file, where, bound, validationOf);
      return;
    }
    if (value === null || typeof value !== "object") return;
    for (const [key, v] of Object.entries(value as Body)) {
      await this.walk(key, file, where, bound, validationOf);
      // Addresses and provider names, not expressions.
      if (key === "provider" || key === "ignore_changes") continue;
      if (key === "dynamic") {
        for (const [label, d] of labelled(v)) {
          const iterator = typeof d.iterator === "string" ? d.iterator : label;
          const { content, ...rest } = d;
          await this.walk(rest, file, where, bound, validationOf);
          await this.walk(content, file, where, new Set([...bound, iterator]), validationOf);
        }
        continue;
      }
      await this.walk(v, file, where, bound, validationOf);
    }
  }

  /**
   * The calls found, with the names passed through `local.X` filled in from X's value when it
   * is an object literal (known only once every file is read).
   */
  templateCallsWith(locals: ReadonlyMap<string, { readonly value: unknown }>): TfTemplateCall[] {
    return this.calls.map(({ passedLocal, ...call }) => {
      if (passedLocal === undefined) return call;
      const value = locals.get(passedLocal)?.value;
      const isObject = value !== null && typeof value === "object" && !Array.isArray(value);
      return { ...call, passed: isObject ? Object.keys(value) : undefined };
    });
  }

  private readonly calls: (TfTemplateCall & { passedLocal?: string })[] = [];

  private async templateCall(
    t: ParsedTemplate,
    call: AstNode,
    file: string,
    where: string,
  ): Promise<void> {
    const [pathNode, varsNode] = call.children;
    if (pathNode === undefined) return;
    // Only templates named from path.module can be found without running Terraform.
    const absDir = this.absDir;
    const resolvePath: Resolver = async (names, text) => {
      if (names[0] === "path" && names[1] === "module") return absDir;
      throw new RenderError(`${text} is not path.module`);
    };
    let path: string;
    try {
      path = String(await evaluateNode(t, pathNode, resolvePath));
    } catch {
      return;
    }
    const templateFile = resolve(absDir, path);
    if (!existsSync(templateFile)) {
      this.calls.push({
        file,
        where,
        template: relative(this.displayRoot, templateFile),
        exists: false,
        passed: undefined,
        used: [],
      });
      return;
    }
    const text = await readFile(templateFile, "utf8");
    const used = [...new Set((await referencesIn(text)).map((r) => r.names[0] as string))];
    const local = varsNode === undefined ? undefined : localName(varsNode);
    this.calls.push({
      file,
      where,
      template: relative(this.displayRoot, templateFile),
      exists: true,
      passed: varsNode === undefined ? [] : objectKeys(t, varsNode),
      used,
      ...(local !== undefined ? { passedLocal: local } : {}),
    });
  }
}

/** X, when the node is the reference local.X. */
function localName(node: AstNode): string | undefined {
  if (node.type !== "scopeTraversal") return undefined;
  const names = (node.meta?.traversal as { segment: string }[] | undefined)?.map((p) => p.segment);
  return names?.length === 2 && names[0] === "local" ? names[1] : undefined;
}

/** The keys of an object literal, or undefined when the node is not one with plain keys. */
function objectKeys(t: ParsedTemplate, node: AstNode): string[] | undefined {
  if (node.type !== "object") return undefined;
  const keys: string[] = [];
  for (let i = 0; i < node.children.length; i += 2) {
    const key = node.children[i] as AstNode;
    if (key.children.length === 0) keys.push(sourceOf(t, key));
    else {
      const text = sourceOf(t, key);
      if (!/^"[^"$%\\]*"$/.test(text)) return undefined;
      keys.push(text.slice(1, -1));
    }
  }
  return keys;
}

// ---------------------------------------------------------------------------------------
// Structural checks (pure)

/** Every var.X used is declared, and every declared variable is used outside its own validation. */
export function checkVariables(mod: TfModule): string[] {
  const problems: string[] = [];
  const used = new Set<string>();
  for (const use of mod.uses) {
    if (use.ref.names[0] !== "var") continue;
    const name = use.ref.names[1];
    if (name === undefined) continue;
    if (!mod.variables.has(name)) {
      problems.push(
        `${use.file}: ${use.where} uses var.${name}, but the module declares no variable "${name}"`,
      );
    }
    if (use.validationOf !== name) used.add(name);
  }
  for (const v of mod.variables.values()) {
    if (!used.has(v.name)) {
      problems.push(`${v.file}: variable "${v.name}" is declared but never used`);
    }
  }
  return problems;
}

/** Looks a module up by absolute directory (undefined: no module there). */
export type ModuleLookup = (absDir: string) => TfModule | undefined;

function isLocalSource(source: string): boolean {
  return source.startsWith("./") || source.startsWith("../");
}

/** Every call of a local module passes all its required variables and nothing it does not declare. */
export function checkModuleCalls(mod: TfModule, lookup: ModuleLookup): string[] {
  const problems: string[] = [];
  for (const call of mod.moduleCalls.values()) {
    if (!isLocalSource(call.source)) continue;
    const calleeDir = resolve(mod.absDir, call.source);
    const callee = lookup(calleeDir);
    const at = `${call.file}: module "${call.name}"`;
    if (callee === undefined) {
      problems.push(`${at} has source "${call.source}", but no Terraform module is there`);
      continue;
    }
    for (const v of callee.variables.values()) {
      if (v.required && !call.args.includes(v.name)) {
        problems.push(
          `${at} does not pass "${v.name}", a required variable of ${callee.dir} (${v.file} gives it no default)`,
        );
      }
    }
    for (const arg of call.args) {
      if (!callee.variables.has(arg)) {
        problems.push(`${at} passes "${arg}", but ${callee.dir} declares no variable "${arg}"`);
      }
    }
  }
  return problems;
}

const BUILTIN_ROOTS = new Set(["each", "count", "path", "terraform", "self"]);

/**
 * Every output, and every other expression, refers to things that exist: locals, resources,
 * data sources, module calls and the outputs of local modules. (Variables: checkVariables.)
 */
export function checkReferences(mod: TfModule, lookup: ModuleLookup): string[] {
  const problems: string[] = [];
  for (const { file, where, ref } of mod.uses) {
    const [root, a, b] = ref.names;
    const at = `${file}: ${where} refers to ${ref.text}`;
    if (root === undefined || root === "var" || BUILTIN_ROOTS.has(root)) continue;
    if (root === "local") {
      if (a === undefined || !mod.locals.has(a)) problems.push(`${at}, but no local "${a}" is set`);
    } else if (root === "module") {
      const call = a === undefined ? undefined : mod.moduleCalls.get(a);
      if (call === undefined) {
        problems.push(`${at}, but there is no module "${a}"`);
      } else if (b !== undefined && isLocalSource(call.source)) {
        const callee = lookup(resolve(mod.absDir, call.source));
        if (callee !== undefined && !callee.outputs.has(b)) {
          problems.push(`${at}, but ${callee.dir} has no output "${b}"`);
        }
      }
    } else if (root === "data") {
      if (!mod.dataSources.has(`${a}.${b}`)) {
        problems.push(`${at}, but there is no data "${a}" "${b}"`);
      }
    } else if (a === undefined) {
      problems.push(`${at}, which names nothing (not a resource, variable, local or module)`);
    } else if (!mod.resources.has(`${root}.${a}`)) {
      problems.push(`${at}, but there is no resource "${root}" "${a}"`);
    }
  }
  return problems;
}

/** Every templatefile() call passes exactly what its template reads. */
export function checkTemplateCalls(mod: TfModule): string[] {
  const problems: string[] = [];
  for (const call of mod.templateCalls) {
    const at = `${call.file}: ${call.where} calls templatefile("${call.template}")`;
    if (!call.exists) {
      problems.push(`${at}, but that file does not exist`);
      continue;
    }
    if (call.passed === undefined) continue;
    for (const name of call.used) {
      if (!call.passed.includes(name)) {
        problems.push(`${at}, whose template reads \${${name}}, but the call does not pass it`);
      }
    }
    for (const name of call.passed) {
      if (!call.used.includes(name)) {
        problems.push(`${at} passing "${name}", which the template never reads`);
      }
    }
  }
  return problems;
}

/**
 * The files every module under terraform/modules has (README.md: checkReadme), and the
 * versions it pins: Terraform's,
 * and hashicorp/aws when it uses aws_ resources or data sources.
 */
export function checkLayout(mod: TfModule): string[] {
  const problems: string[] = [];
  for (const name of ["main.tf", "variables.tf", "outputs.tf", "versions.tf"]) {
    if (!mod.entries.includes(name)) problems.push(`${mod.dir}: ${name} is missing`);
  }
  if (mod.requiredVersion === undefined) {
    problems.push(`${mod.dir}: no terraform { required_version = … } is declared`);
  }
  const usesAws = [...mod.resources.keys(), ...mod.dataSources.keys()].some((k) =>
    k.startsWith("aws_"),
  );
  if (usesAws && mod.requiredProviders.get("aws")?.source !== "hashicorp/aws") {
    problems.push(
      `${mod.dir}: uses aws_ resources but required_providers does not declare aws = { source = "hashicorp/aws" }`,
    );
  }
  return problems;
}

/** Every variable and output carries a description. */
export function checkDescriptions(mod: TfModule): string[] {
  const problems: string[] = [];
  for (const v of mod.variables.values()) {
    if (!v.description?.trim()) problems.push(`${v.file}: variable "${v.name}" has no description`);
  }
  for (const o of mod.outputs.values()) {
    if (!o.description?.trim()) problems.push(`${o.file}: output "${o.name}" has no description`);
  }
  return problems;
}

// README tables

interface MarkdownTable {
  readonly header: readonly string[];
  readonly rows: readonly (readonly string[])[];
}

/** The first table of the `## HEADING` section, or undefined when there is no such section. */
export function readmeSection(
  readme: string,
  heading: string,
): { table: MarkdownTable | undefined } | undefined {
  const lines = readme.split("\n");
  const start = lines.findIndex((l) => new RegExp(`^##\\s+${heading}\\s*$`, "i").test(l.trim()));
  if (start < 0) return undefined;
  const tableLines: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (/^#{1,2}\s/.test(line)) break;
    if (line.trim().startsWith("|")) tableLines.push(line.trim());
    else if (tableLines.length > 0) break;
  }
  if (tableLines.length < 2) return { table: undefined };
  const cells = (line: string) =>
    line
      .replace(/^\|/, "")
      .replace(/\|$/, "")
      .split(/(?<!\\)\|/)
      .map((c) => c.trim());
  return {
    table: {
      header: cells(tableLines[0] as string).map((h) => plainText(h).toLowerCase()),
      rows: tableLines.slice(2).map(cells),
    },
  };
}

/** A cell's text without markdown: links, anchors, code ticks and escapes. */
function plainText(cell: string): string {
  return cell
    .replace(/<[^>]*>/g, "")
    .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
    .replaceAll("`", "")
    .replace(/\\([_|*])/g, "$1")
    .trim();
}

const squash = (s: string) => s.replace(/\s+/g, "");
const REQUIRED_MARKS = new Set(["", "n/a", "-", "required", "none", "(required)", "—"]);

/** How a default may be written in a README cell, squashed (quotes optional, = or :). */
function defaultForms(value: unknown): string[] {
  const json = squash(JSON.stringify(value) ?? "null");
  const loose = json.replaceAll('"', "").replaceAll(":", "=");
  return [json, loose];
}

/**
 * The README lists exactly the module's variables (## Inputs: name, and type and default
 * where those columns exist, matching the declarations) and outputs (## Outputs), each
 * with a description.
 */
export function checkReadme(mod: TfModule): string[] {
  const file = `${mod.dir}/README.md`;
  if (mod.readme === undefined) return [`${file} is missing`];
  const problems: string[] = [];
  const sections = [
    ["Inputs", "variable", [...mod.variables.keys()]],
    ["Outputs", "output", [...mod.outputs.keys()]],
  ] as const;
  for (const [heading, kind, declared] of sections) {
    const section = readmeSection(mod.readme, heading);
    if (section === undefined) {
      problems.push(`${file}: has no "## ${heading}" section`);
      continue;
    }
    const { table } = section;
    if (table === undefined) {
      if (declared.length > 0) problems.push(`${file}: "## ${heading}" has no table`);
      continue;
    }
    const col = (name: string) => table.header.indexOf(name);
    if (col("name") < 0) {
      problems.push(`${file}: the "## ${heading}" table has no Name column`);
      continue;
    }
    const listed = new Map<string, readonly string[]>();
    for (const row of table.rows) {
      const name = plainText(row[col("name")] ?? "");
      if (listed.has(name)) problems.push(`${file}: ## ${heading} lists "${name}" twice`);
      listed.set(name, row);
    }
    for (const name of declared) {
      if (!listed.has(name)) {
        problems.push(`${file}: ## ${heading} does not list the ${kind} "${name}"`);
      }
    }
    for (const [name, row] of listed) {
      if (!(declared as readonly string[]).includes(name)) {
        const article = kind === "output" ? "an" : "a";
        problems.push(
          `${file}: ## ${heading} lists "${name}", which is not ${article} ${kind} of ${mod.dir}`,
        );
        continue;
      }
      const cell = (column: string) => plainText(row[col(column)] ?? "");
      if (col("description") < 0 || cell("description") === "") {
        problems.push(`${file}: ## ${heading} gives "${name}" no description`);
      }
      const v = mod.variables.get(name);
      if (kind !== "variable" || v === undefined) continue;
      if (col("type") >= 0 && squash(cell("type")) !== squash(v.type ?? "any")) {
        problems.push(
          `${file}: ## Inputs gives "${name}" the type ${cell("type") || "(none)"}, but ${v.file} declares ${v.type ?? "any"}`,
        );
      }
      if (col("default") >= 0) {
        const written = squash(cell("default"));
        const isRequiredMark = REQUIRED_MARKS.has(written.toLowerCase());
        if (v.required && !isRequiredMark) {
          problems.push(
            `${file}: ## Inputs gives "${name}" the default ${cell("default")}, but it is required (no default in ${v.file})`,
          );
        } else if (!v.required && !defaultForms(v.default).includes(written)) {
          problems.push(
            `${file}: ## Inputs gives "${name}" the default ${cell("default") || "(none)"}, but ${v.file} declares ${JSON.stringify(v.default)}`,
          );
        }
      }
    }
  }
  return problems;
}

/** What a module must declare: variables with their type and default, and outputs. */
export interface ModuleContract {
  readonly variables: Readonly<
    Record<string, { readonly type: string; readonly default?: HclValue; readonly required?: true }>
  >;
  readonly outputs: readonly string[];
}

/** The module declares every variable and output of its contract, as the contract says. */
export function checkContract(mod: TfModule, contract: ModuleContract): string[] {
  const problems: string[] = [];
  for (const [name, want] of Object.entries(contract.variables)) {
    const v = mod.variables.get(name);
    if (v === undefined) {
      problems.push(`${mod.dir}: the contract's variable "${name}" is not declared`);
      continue;
    }
    if (squash(v.type ?? "any") !== squash(want.type)) {
      problems.push(
        `${v.file}: variable "${name}" has type ${v.type}, the contract says ${want.type}`,
      );
    }
    if (want.required && !v.required) {
      problems.push(
        `${v.file}: variable "${name}" has a default, the contract says it is required`,
      );
    } else if (!want.required && JSON.stringify(v.default) !== JSON.stringify(want.default)) {
      problems.push(
        `${v.file}: variable "${name}" defaults to ${v.required ? "nothing (required)" : JSON.stringify(v.default)}, the contract says ${JSON.stringify(want.default)}`,
      );
    }
  }
  for (const name of contract.outputs) {
    if (!mod.outputs.has(name))
      problems.push(`${mod.dir}: the contract's output "${name}" is missing`);
  }
  return problems;
}
