// A module's expressions evaluated as Terraform would for given inputs, for the tests that
// render what a module makes (IAM policy documents, the deploy command): references resolved
// from the test's variables and known attributes, policy documents rendered to JSON. Anything
// the renderer does not know throws a RenderError naming it.
import { evaluateValue, type HclValue, RenderError, type Resolver, step } from "./hcl-expr.js";
import { blocks, labelled, type TfModule } from "./terraform.js";

type Body = Record<string, unknown>;

export interface ModuleInputs {
  /** Values of variables (the rest take their defaults). */
  readonly vars: Readonly<Record<string, HclValue>>;
  /** Attributes of resources and data sources, by address: "aws_s3_bucket.this.arn". */
  readonly known?: Readonly<Record<string, HclValue>>;
}

/**
 * Resolves references the way Terraform would for this module and these inputs: var.X
 * (given, else the default), local.X (evaluated on demand), path.module, and the `known`
 * addresses. Anything else throws a RenderError naming it.
 */
export function moduleResolver(mod: TfModule, inputs: ModuleInputs): Resolver {
  const localValues = new Map<string, Promise<HclValue>>();
  const evaluating = new Set<string>();
  const resolver: Resolver = async (names, text) => {
    const [root, name, ...rest] = names;
    let value: HclValue;
    if (root === "var" && name !== undefined) {
      const v = mod.variables.get(name);
      if (v === undefined) throw new RenderError(`${text}: no variable "${name}" is declared`);
      if (Object.hasOwn(inputs.vars, name)) value = inputs.vars[name] as HclValue;
      else if (!v.required) value = v.default as HclValue;
      else throw new RenderError(`${text}: the test gave no value for the required var.${name}`);
    } else if (root === "local" && name !== undefined) {
      const local = mod.locals.get(name);
      if (local === undefined) throw new RenderError(`${text}: no local "${name}"`);
      // Evaluation is sequential, so meeting a local again while it is evaluated is a cycle.
      if (evaluating.has(name)) throw new RenderError(`${text}: local "${name}" refers to itself`);
      let pending = localValues.get(name);
      if (pending === undefined) {
        evaluating.add(name);
        pending = evaluateValue(local.value, resolver).finally(() => evaluating.delete(name));
        localValues.set(name, pending);
      }
      value = await pending;
    } else if (root === "path" && name === "module") {
      value = mod.absDir;
    } else {
      const known = inputs.known ?? {};
      let i = names.length;
      while (i > 0 && !Object.hasOwn(known, names.slice(0, i).join("."))) i--;
      if (i === 0) throw new RenderError(`${text}: the renderer does not know this reference`);
      value = known[names.slice(0, i).join(".")] as HclValue;
      for (const segment of names.slice(i)) value = step(value, segment, text);
      return value;
    }
    for (const segment of rest) value = step(value, segment, text);
    return value;
  };
  return resolver;
}

/** An IAM policy document as AWS reads it. */
export interface PolicyJson {
  readonly Version: string;
  readonly Statement: readonly Record<string, unknown>[];
}

const STATEMENT_KEYS = new Set([
  "sid",
  "effect",
  "actions",
  "not_actions",
  "resources",
  "not_resources",
  "principals",
  "not_principals",
  "condition",
]);

/**
 * Renders `data "aws_iam_policy_document" NAME` into the JSON the provider would make of it
 * (statements, dynamic statements, principals, conditions). Arguments it does not know
 * (source_policy_documents…) throw, so nothing is silently left out.
 */
export async function renderPolicyDocument(
  mod: TfModule,
  name: string,
  resolve: Resolver,
): Promise<PolicyJson> {
  const block = mod.dataSources.get(`aws_iam_policy_document.${name}`);
  if (block === undefined)
    throw new RenderError(`${mod.dir}: no aws_iam_policy_document "${name}"`);
  const where = `${block.file}: data "aws_iam_policy_document" "${name}"`;
  for (const key of Object.keys(block.body)) {
    if (key !== "statement" && key !== "dynamic" && key !== "version") {
      throw new RenderError(`${where}: the renderer does not handle "${key}"`);
    }
  }
  const statements: Record<string, unknown>[] = [];
  for (const s of blocks(block.body.statement)) {
    statements.push(await renderStatement(s, resolve, where));
  }
  for (const [label, d] of labelled(block.body.dynamic)) {
    if (label !== "statement") throw new RenderError(`${where}: dynamic "${label}" is not handled`);
    const iterator = typeof d.iterator === "string" ? d.iterator : label;
    const each = await evaluateValue(d.for_each, resolve);
    const items: [HclValue, HclValue][] = Array.isArray(each)
      ? each.map((v) => [v, v])
      : Object.entries(each as Record<string, HclValue>);
    for (const [key, value] of items) {
      const inner: Resolver = async (names, text) => {
        if (names[0] !== iterator) return resolve(names, text);
        let v: HclValue = { key, value };
        for (const segment of names.slice(1)) v = step(v, segment, text);
        return v;
      };
      for (const content of blocks(d.content)) {
        statements.push(await renderStatement(content, inner, where));
      }
    }
  }
  const version = block.body.version === undefined ? "2012-10-17" : block.body.version;
  return { Version: String(version), Statement: statements };
}

async function renderStatement(
  s: Body,
  resolve: Resolver,
  where: string,
): Promise<Record<string, unknown>> {
  for (const key of Object.keys(s)) {
    if (!STATEMENT_KEYS.has(key)) {
      throw new RenderError(`${where}: the renderer does not handle statement "${key}"`);
    }
  }
  const ev = (v: unknown) => evaluateValue(v, resolve);
  const out: Record<string, unknown> = {};
  if (s.sid !== undefined) out.Sid = await ev(s.sid);
  out.Effect = s.effect === undefined ? "Allow" : await ev(s.effect);
  for (const [key, json] of [
    ["actions", "Action"],
    ["not_actions", "NotAction"],
    ["resources", "Resource"],
    ["not_resources", "NotResource"],
  ] as const) {
    if (s[key] !== undefined) out[json] = await ev(s[key]);
  }
  for (const [key, json] of [
    ["principals", "Principal"],
    ["not_principals", "NotPrincipal"],
  ] as const) {
    if (s[key] === undefined) continue;
    const principal: Record<string, HclValue[]> = {};
    for (const p of blocks(s[key])) {
      const type = String(await ev(p.type));
      principal[type] = [...(principal[type] ?? []), ...((await ev(p.identifiers)) as HclValue[])];
    }
    out[json] = principal;
  }
  if (s.condition !== undefined) {
    const condition: Record<string, Record<string, HclValue[]>> = {};
    for (const c of blocks(s.condition)) {
      const test = String(await ev(c.test));
      const variable = String(await ev(c.variable));
      const values = (await ev(c.values)) as HclValue[];
      condition[test] = { ...(condition[test] ?? {}), [variable]: values };
    }
    out.Condition = condition;
  }
  return out;
}
