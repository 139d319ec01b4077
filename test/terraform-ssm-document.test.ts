// The ssm-document module creates exactly the document it is given (its `document` input,
// what `nixship ssm document` prints and the build writes to dist/ssm-document.json), keeps no
// copy of it or of activate.sh, and that document is a valid SSM Command document. Evaluated
// from the module's HCL: default substituters and trusted keys appear as the parameters' defaults in
// the document the module creates when set, and nowhere when not; the associations map makes
// one association per role with its store path and tag target, and the single association of
// earlier versions still works; the sender policy lets a deployer or CI role send the document
// only to the tagged instances, with exactly the calls the ssm delivery makes. The document the
// module creates, with and without defaults, is registered with CreateDocument in moto's SSM.
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  CreateDocumentCommand,
  DescribeDocumentCommand,
  type DocumentFormat,
  type DocumentType,
  GetDocumentCommand,
  SSMClient,
} from "@aws-sdk/client-ssm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nixship } from "../support/cli.js";
import { type MotoProcess, startMoto } from "../support/moto-server.js";
import {
  callsIn,
  evaluateString,
  evaluateValue,
  type HclValue,
  type Resolver,
  step,
  UnsupportedError,
} from "./support/hcl-expr.js";
import { evaluate, type PolicyDocument, validatePolicy } from "./support/iam-policy.js";
import { blocks, loadModule, type TfModule } from "./support/terraform.js";
import { moduleResolver, renderPolicyDocument } from "./support/terraform-render.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const MODULE_DIR = join(ROOT, "terraform/modules/ssm-document");
/** The document as the build writes it (npm run build): what callers pass as `document`. */
const DOCUMENT = join(ROOT, "dist/ssm-document.json");
const ACCOUNT = "123456789012";
const DOCUMENT_ARN = `arn:aws:ssm:eu-west-1:${ACCOUNT}:document/nixship-activate`;
const INSTANCE = `arn:aws:ec2:eu-west-1:${ACCOUNT}:instance/i-0123456789abcdef0`;
const WEB_SYSTEM = "/nix/store/0c8q3d0kzbq0hv6mr1a6rjb1xm1dp7ym-nixos-system-web-24.11";
const DB_SYSTEM = "/nix/store/1w1fff338fvdw53sqgamddn1b2xgds47-nixos-system-db-24.11";
const CACHE_URL = "s3://example-nixship-store?region=eu-west-1";
const CACHE_KEY = "cache-1:Ud8ihtahngn3VIpxsVmFs0aXsPE7SC3fFnlnkkMN4UE=";

interface SsmParameter {
  type: string;
  description: string;
  allowedPattern: string;
  default?: string;
}

/** Every way the text breaks the SSM Command document (schema 2.2) rules this module relies on. */
function commandDocumentProblems(text: string): string[] {
  const problems: string[] = [];
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(text) as Record<string, unknown>;
  } catch (err) {
    return [`not JSON: ${(err as Error).message}`];
  }
  for (const key of Object.keys(doc)) {
    if (!["schemaVersion", "description", "parameters", "mainSteps"].includes(key)) {
      problems.push(`unexpected top-level key "${key}"`);
    }
  }
  if (doc.schemaVersion !== "2.2")
    problems.push(`schemaVersion is ${JSON.stringify(doc.schemaVersion)}, not "2.2"`);
  if (typeof doc.description !== "string" || doc.description === "")
    problems.push("no description");
  const parameters = (doc.parameters ?? {}) as Record<string, SsmParameter>;
  for (const [name, p] of Object.entries(parameters)) {
    if (!/^[A-Za-z0-9]+$/.test(name)) problems.push(`parameter name "${name}" is not alphanumeric`);
    if (p.type !== "String") problems.push(`parameter ${name}: type ${p.type}, not String`);
    if (!p.description) problems.push(`parameter ${name}: no description`);
    if (!p.allowedPattern?.startsWith("^") || !p.allowedPattern.endsWith("$")) {
      problems.push(`parameter ${name}: allowedPattern is not anchored at both ends`);
      continue;
    }
    const pattern = new RegExp(p.allowedPattern);
    if (p.default !== undefined && !pattern.test(p.default)) {
      problems.push(
        `parameter ${name}: the default ${JSON.stringify(p.default)} fails its allowedPattern`,
      );
    }
    if (pattern.test("'") || pattern.test("a\nb")) {
      problems.push(`parameter ${name}: allowedPattern admits a quote or a newline`);
    }
  }
  const steps = doc.mainSteps as Record<string, unknown>[] | undefined;
  if (!Array.isArray(steps) || steps.length !== 1) {
    problems.push(
      `mainSteps must hold exactly one step, holds ${Array.isArray(steps) ? steps.length : "none"}`,
    );
    return problems;
  }
  const step = steps[0] as { action?: string; name?: string; inputs?: { runCommand?: unknown } };
  const inputsText = JSON.stringify(step.inputs ?? {});
  if (step.action !== "aws:runShellScript") problems.push(`the step's action is ${step.action}`);
  if (!step.name || !/^[A-Za-z0-9_.-]+$/.test(step.name))
    problems.push("the step has no valid name");
  const lines = step.inputs?.runCommand;
  if (!Array.isArray(lines) || !lines.every((l) => typeof l === "string") || lines.length === 0) {
    problems.push("inputs.runCommand must be a non-empty list of strings");
    return problems;
  }
  const used = new Set([...inputsText.matchAll(/\{\{\s*([A-Za-z0-9]+)\s*\}\}/g)].map((m) => m[1]));
  for (const name of used) {
    if (name !== undefined && !Object.hasOwn(parameters, name)) {
      problems.push(`the step uses {{ ${name} }}, which is not a parameter`);
    }
  }
  for (const name of Object.keys(parameters)) {
    if (!used.has(name)) problems.push(`parameter ${name} is never used by the step`);
  }
  return problems;
}

/** What the tests change in a copy of the document. */
interface DocumentShape {
  schemaVersion: string;
  parameters: Record<string, SsmParameter>;
  mainSteps: Record<string, unknown>[];
}

let mod: TfModule;
let built: Buffer;

beforeAll(async () => {
  mod = await loadModule(MODULE_DIR, ROOT);
  built = await readFile(DOCUMENT);
});

/**
 * The module's references resolved for these inputs (`document`: the build's, unless given),
 * its resources' attributes as AWS gives them.
 */
function resolver(vars: Record<string, HclValue>): Resolver {
  return moduleResolver(mod, {
    vars: { document: built.toString("utf8"), ...vars },
    known: {
      "aws_ssm_document.this.name": "nixship-activate",
      "aws_ssm_document.this.arn": DOCUMENT_ARN,
      "data.aws_partition.current.partition": "aws",
      "data.aws_caller_identity.current.account_id": ACCOUNT,
    },
  });
}

/** `each.key` and `each.value` of one instance of a for_each resource, over a resolver. */
function withEach(resolve: Resolver, key: string, value: HclValue): Resolver {
  return async (names, text) => {
    if (names[0] !== "each") return resolve(names, text);
    let v: HclValue = { key, value };
    for (const segment of names.slice(1)) v = step(v, segment, text);
    return v;
  };
}

/** The conditions of a resource's lifecycle preconditions, in order. */
function preconditionsOf(body: Record<string, unknown>): unknown[] {
  return blocks(body.lifecycle).flatMap((l) => blocks(l.precondition).map((p) => p.condition));
}

/** The condition of a variable's (first) validation block. */
function variableValidation(name: string): unknown {
  for (const file of mod.files) {
    const variables = (file.body.variable ?? {}) as Record<string, Record<string, unknown>[]>;
    const validation = blocks(variables[name]?.[0]?.validation)[0];
    if (validation !== undefined) return validation.condition;
  }
  throw new Error(`variable ${name} has no validation`);
}

function documentParameters(): Record<string, SsmParameter> {
  return (JSON.parse(built.toString("utf8")) as { parameters: Record<string, SsmParameter> })
    .parameters;
}

/** sender_policy_json for these inputs, rendered and read by the IAM evaluator. */
async function senderPolicy(vars: Record<string, HclValue>): Promise<PolicyDocument> {
  return validatePolicy(await renderPolicyDocument(mod, "sender", resolver(vars)), "sender");
}

describe("the ssm-document module creates the document it is given", () => {
  it("the build's dist/ssm-document.json is byte for byte what the built CLI prints", async () => {
    const r = await nixship(["ssm", "document"]);
    expect(r.code, r.stderr).toBe(0);
    const printed = Buffer.from(r.stdout, "utf8");
    expect(
      printed.equals(built),
      "dist/ssm-document.json is stale: `npm run build` writes it again",
    ).toBe(true);
  });

  it("the one aws_ssm_document is a Command document in JSON whose content is the document input, and no file is read", async () => {
    const documents = [...mod.resources.keys()].filter((k) => k.startsWith("aws_ssm_document."));
    expect(documents).toEqual(["aws_ssm_document.this"]);
    const body = mod.resources.get("aws_ssm_document.this")?.body ?? {};
    expect(body.document_type).toBe("Command");
    expect(body.document_format).toBe("JSON");
    // The module reads no file of its own: the document comes from its caller only.
    const strings = (v: unknown): string[] =>
      typeof v === "string"
        ? [v]
        : v !== null && typeof v === "object"
          ? Object.values(v).flatMap(strings)
          : [];
    const texts = [...mod.locals.values(), ...mod.resources.values()].flatMap((b) =>
      strings("value" in b ? b.value : b.body),
    );
    for (const name of ["file", "templatefile", "filebase64"]) {
      const calls = (await Promise.all(texts.map((text) => callsIn(text, name)))).flat();
      expect(calls, name).toEqual([]);
    }
    // With no defaults set, the content is the document given, byte for byte, whatever it is.
    const content = await evaluateValue(body.content, resolver({}));
    expect(content).toBe(built.toString("utf8"));
    const other = JSON.stringify({ ...JSON.parse(built.toString("utf8")), description: "x" });
    expect(await evaluateValue(body.content, resolver({ document: other }))).toBe(other);
  });

  it("refuses, by the document input's validation, text that is not nixship's document", async () => {
    const condition = variableValidation("document");
    const holds = (document: string) => evaluateValue(condition, resolver({ document }));
    expect(await holds(built.toString("utf8"))).toBe(true);
    expect(await holds("")).toBe(false);
    expect(await holds("{")).toBe(false);
    expect(await holds(JSON.stringify({ schemaVersion: "2.2", parameters: {} }))).toBe(false);
    const doc = JSON.parse(built.toString("utf8")) as DocumentShape;
    doc.mainSteps = [];
    expect(await holds(JSON.stringify(doc))).toBe(false);
  });

  it("no file of the module holds a copy of the document or of activate.sh", async () => {
    const doc = JSON.parse(built.toString("utf8")) as {
      mainSteps: { inputs: { runCommand: string[] } }[];
    };
    // Distinctive lines of the embedded script, long enough never to appear by chance.
    const scriptLines = (doc.mainSteps[0]?.inputs.runCommand ?? []).filter(
      (l) => l.trim().length > 40,
    );
    expect(scriptLines.length).toBeGreaterThan(10);
    const entries = await readdir(MODULE_DIR, { recursive: true, withFileTypes: true });
    const files = entries.filter((e) => e.isFile());
    expect(files.map((e) => e.name).sort()).toEqual([
      "README.md",
      "main.tf",
      "outputs.tf",
      "variables.tf",
      "versions.tf",
    ]);
    for (const e of files) {
      const text = await readFile(join(e.parentPath, e.name), "utf8");
      const copied = scriptLines.filter((l) => text.includes(l.trim()));
      expect(copied, `${e.name} repeats lines of the document`).toEqual([]);
      expect(text, e.name).not.toContain('"schemaVersion"');
    }
  });
});

describe("dist/ssm-document.json as an SSM Command document", () => {
  it("is schema 2.2 with described, anchored parameters and one aws:runShellScript step", () => {
    expect(commandDocumentProblems(built.toString("utf8"))).toEqual([]);
    // SSM refuses Command documents over 64 KB.
    expect(built.length).toBeLessThan(64 * 1024);
  });

  it("the checks catch a document that breaks the rules", () => {
    const doc = JSON.parse(built.toString("utf8")) as DocumentShape;
    doc.schemaVersion = "1.2";
    (doc.parameters.StorePath as SsmParameter).allowedPattern = ".*";
    doc.mainSteps.push({ ...doc.mainSteps[0], name: "second" });
    expect(commandDocumentProblems(JSON.stringify(doc))).toEqual([
      'schemaVersion is "1.2", not "2.2"',
      "parameter StorePath: allowedPattern is not anchored at both ends",
      "mainSteps must hold exactly one step, holds 2",
    ]);
    const unused = JSON.parse(built.toString("utf8")) as DocumentShape;
    unused.parameters.Extra = { type: "String", description: "x", allowedPattern: "^x$" };
    expect(commandDocumentProblems(JSON.stringify(unused))).toEqual([
      "parameter Extra is never used by the step",
    ]);
  });

  it("the single association passes StorePath, and Substituters and TrustedPublicKeys when given, each accepted by its allowedPattern", async () => {
    const parameters = documentParameters();
    const association = mod.resources.get("aws_ssm_association.this")?.body ?? {};
    const vars = {
      create_association: true,
      association_tag_values: ["web"],
      store_path: WEB_SYSTEM,
      substituters: CACHE_URL,
      trusted_public_keys: CACHE_KEY,
    };
    const values = (await evaluateValue(association.parameters, resolver(vars))) as Record<
      string,
      string
    >;
    expect(values).toEqual({
      StorePath: WEB_SYSTEM,
      Substituters: CACHE_URL,
      TrustedPublicKeys: CACHE_KEY,
    });
    for (const [name, value] of Object.entries(values)) {
      const p = parameters[name];
      expect(p, `${name} is a parameter of the document`).toBeDefined();
      expect(new RegExp(p?.allowedPattern ?? "").test(value), `${name}=${value}`).toBe(true);
    }
    expect(await evaluateValue(association.targets, resolver(vars))).toEqual([
      { key: "tag:Role", values: ["web"] },
    ]);
    expect(await evaluateValue(association.name, resolver(vars))).toBe("nixship-activate");
    expect(await evaluateValue(association.count, resolver(vars))).toBe(1);
    expect(await evaluateValue(association.count, resolver({}))).toBe(0);
    // Without them, it passes none: the document's defaults apply.
    const bare = { ...vars, substituters: "", trusted_public_keys: "" };
    expect(await evaluateValue(association.parameters, resolver(bare))).toEqual({
      StorePath: WEB_SYSTEM,
    });
  });

  it("the single association refuses a tag value that is also a role of associations", async () => {
    const association = mod.resources.get("aws_ssm_association.this")?.body ?? {};
    const conditions = preconditionsOf(association);
    const holds = async (vars: Record<string, HclValue>) => {
      const out: boolean[] = [];
      for (const c of conditions) out.push((await evaluateValue(c, resolver(vars))) as boolean);
      return out;
    };
    const legacy = {
      create_association: true,
      association_tag_values: ["web"],
      store_path: WEB_SYSTEM,
    };
    expect(await holds(legacy)).toEqual([true, true, true]);
    expect(await holds({ ...legacy, associations: { db: DB_SYSTEM } })).toEqual([true, true, true]);
    expect(await holds({ ...legacy, associations: { web: DB_SYSTEM } })).toEqual([
      true,
      true,
      false,
    ]);
    expect(await holds({ ...legacy, store_path: "", association_tag_values: [] })).toEqual([
      false,
      false,
      true,
    ]);
  });

  it("sender_policy_json lets a deployer send this document to the tagged instances only", async () => {
    expect(String(mod.outputs.get("sender_policy_json")?.value)).toBe(
      // biome-ignore lint/suspicious/noTemplateCurlyInString: hcl2json's form of a reference.
      "${data.aws_iam_policy_document.sender.json}",
    );
    const policy = await senderPolicy({ association_tag_values: ["web"] });
    const decide = (action: string, resource: string, context: Record<string, string> = {}) =>
      evaluate([policy], { action, resource, context });
    expect(decide("ssm:SendCommand", DOCUMENT_ARN)).toBe("allow");
    expect(decide("ssm:SendCommand", INSTANCE, { "ssm:resourceTag/Role": "web" })).toBe("allow");
    expect(decide("ssm:SendCommand", INSTANCE, { "ssm:resourceTag/Role": "db" })).toBe(
      "implicit-deny",
    );
    expect(decide("ssm:SendCommand", INSTANCE)).toBe("implicit-deny");
    expect(
      decide("ssm:SendCommand", DOCUMENT_ARN.replace("nixship-activate", "AWS-RunShellScript")),
    ).toBe("implicit-deny");
    for (const action of [
      "ssm:ListCommands",
      "ssm:ListCommandInvocations",
      "ssm:GetCommandInvocation",
      "ssm:CancelCommand",
    ]) {
      expect(decide(action, "*")).toBe("allow");
    }
    for (const action of ["ssm:StartSession", "ssm:UpdateDocument", "ssm:CreateAssociation"]) {
      expect(decide(action, DOCUMENT_ARN), action).toBe("implicit-deny");
      expect(decide(action, INSTANCE, { "ssm:resourceTag/Role": "web" }), action).toBe(
        "implicit-deny",
      );
    }
    // Without tag values no instance may be targeted at all.
    const none = await senderPolicy({});
    expect(
      evaluate([none], {
        action: "ssm:SendCommand",
        resource: INSTANCE,
        context: { "ssm:resourceTag/Role": "web" },
      }),
    ).toBe("implicit-deny");
  });

  it("a CI role scoped by tag: sender_tag_values and the roles of associations are sendable, nothing else", async () => {
    const send = (policy: PolicyDocument, tags: Record<string, string>) =>
      evaluate([policy], { action: "ssm:SendCommand", resource: INSTANCE, context: tags });
    const ci = await senderPolicy({ sender_tag_values: ["web"] });
    expect(send(ci, { "ssm:resourceTag/Role": "web" })).toBe("allow");
    expect(send(ci, { "ssm:resourceTag/Role": "db" })).toBe("implicit-deny");
    expect(send(ci, { "ssm:resourceTag/Tier": "web" })).toBe("implicit-deny");
    const roles = await senderPolicy({
      associations: { web: WEB_SYSTEM, db: DB_SYSTEM },
      sender_tag_values: ["web"],
    });
    expect(send(roles, { "ssm:resourceTag/Role": "db" })).toBe("allow");
    expect(send(roles, { "ssm:resourceTag/Role": "cache" })).toBe("implicit-deny");
    const tagged = roles.Statement.find((st) => st.Sid === "SendToTaggedInstances");
    // Each tag value once, whichever input named it.
    expect(tagged?.Condition).toEqual({
      StringEquals: { "ssm:resourceTag/Role": ["db", "web"] },
    });
    const tier = await senderPolicy({ association_tag_key: "Tier", sender_tag_values: ["web"] });
    expect(send(tier, { "ssm:resourceTag/Tier": "web" })).toBe("allow");
    expect(send(tier, { "ssm:resourceTag/Role": "web" })).toBe("implicit-deny");
  });

  it("grants exactly the SSM calls the ssm delivery makes (src/delivery/ssm*.ts)", async () => {
    const files = (await readdir(join(ROOT, "src/delivery"))).filter(
      (f) => f.startsWith("ssm") && f.endsWith(".ts") && !f.endsWith(".test.ts"),
    );
    expect(files).toContain("ssm-client.ts");
    const source = (
      await Promise.all(files.map((f) => readFile(join(ROOT, "src/delivery", f), "utf8")))
    ).join("\n");
    const called = [
      ...new Set([...source.matchAll(/new (\w+)Command\(/g)].map((m) => `ssm:${m[1]}`)),
    ].sort();
    expect(called).toContain("ssm:SendCommand");
    const policy = await senderPolicy({ sender_tag_values: ["web"] });
    const granted = [
      ...new Set(
        policy.Statement.flatMap((st) =>
          typeof st.Action === "string" ? [st.Action] : [...(st.Action ?? [])],
        ),
      ),
    ].sort();
    expect(granted).toEqual(called);
    expect(
      policy.Statement.every((st) => st.Effect === "Allow" && st.NotAction === undefined),
    ).toBe(true);
  });
});

describe("default substituters and trusted keys, baked into the document", () => {
  const content = async (vars: Record<string, HclValue>) =>
    String(
      await evaluateValue(mod.resources.get("aws_ssm_document.this")?.body.content, resolver(vars)),
    );

  it("appear as the two parameters' defaults when set, and change nothing else", async () => {
    const text = await content({
      default_substituters: CACHE_URL,
      default_trusted_public_keys: CACHE_KEY,
    });
    expect(commandDocumentProblems(text)).toEqual([]);
    const expected = JSON.parse(built.toString("utf8")) as DocumentShape;
    expect((expected.parameters.Substituters as SsmParameter).default).toBe("");
    (expected.parameters.Substituters as SsmParameter).default = CACHE_URL;
    (expected.parameters.TrustedPublicKeys as SsmParameter).default = CACHE_KEY;
    expect(JSON.parse(text)).toEqual(expected);
    // Terraform's jsonencode escapes <, > and & (six bytes each): still under SSM's 64 KB.
    const escaped = text.replace(
      /[<>&\u2028\u2029]/g,
      (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
    );
    expect(JSON.parse(escaped)).toEqual(expected);
    expect(Buffer.byteLength(escaped)).toBeLessThan(64 * 1024);
  });

  it("only the one set changes, and with none set the content is the document itself", async () => {
    const keysOnly = JSON.parse(
      await content({ default_trusted_public_keys: CACHE_KEY }),
    ) as DocumentShape;
    expect(keysOnly.parameters.TrustedPublicKeys?.default).toBe(CACHE_KEY);
    expect(keysOnly.parameters.Substituters?.default).toBe("");
    const none = await content({ default_substituters: "", default_trusted_public_keys: "" });
    expect(none).toBe(built.toString("utf8"));
    expect(none).not.toContain(CACHE_URL);
  });

  it("a default its parameter's allowedPattern refuses fails the document's precondition", async () => {
    const conditions = preconditionsOf(mod.resources.get("aws_ssm_document.this")?.body ?? {});
    expect(conditions).toHaveLength(2);
    const holds = async (vars: Record<string, HclValue>) => {
      const out: boolean[] = [];
      for (const c of conditions) out.push((await evaluateValue(c, resolver(vars))) as boolean);
      return out;
    };
    expect(await holds({})).toEqual([true, true]);
    expect(
      await holds({
        default_substituters: `${CACHE_URL} https://cache.example.org`,
        default_trusted_public_keys: `${CACHE_KEY} release-1:AAAA`,
      }),
    ).toEqual([true, true]);
    expect(await holds({ default_substituters: "ftp://cache.example.org" })).toEqual([false, true]);
    expect(await holds({ default_substituters: "s3://x'; reboot; '" })).toEqual([false, true]);
    expect(await holds({ default_trusted_public_keys: "not a key" })).toEqual([true, false]);
  });

  it("an association then needs to pass only its StorePath", async () => {
    const body = mod.resources.get("aws_ssm_association.role")?.body ?? {};
    const vars = {
      default_substituters: CACHE_URL,
      default_trusted_public_keys: CACHE_KEY,
      associations: { web: WEB_SYSTEM },
    };
    const params = await evaluateValue(
      body.parameters,
      withEach(resolver(vars), "web", WEB_SYSTEM),
    );
    expect(params).toEqual({ StorePath: WEB_SYSTEM });
  });
});

describe("the document the module creates, registered in moto's SSM", () => {
  let moto: MotoProcess;
  let ssm: SSMClient;
  beforeAll(async () => {
    moto = await startMoto();
    ssm = new SSMClient({
      region: "eu-west-1",
      endpoint: moto.endpoint,
      credentials: { accessKeyId: "AKIAMOTO000000000000", secretAccessKey: "moto" },
    });
  }, 60_000);
  afterAll(async () => {
    ssm?.destroy();
    await moto?.close();
  });

  /**
   * aws_ssm_document.this for these inputs, as CreateDocument takes it; a document given
   * defaults is Terraform's jsonencode of it, which escapes <, > and &.
   */
  async function created(vars: Record<string, HclValue>) {
    const body = mod.resources.get("aws_ssm_document.this")?.body ?? {};
    const r = resolver(vars);
    const content = String(await evaluateValue(body.content, r));
    return {
      Name: String(await evaluateValue(body.name, r)),
      DocumentType: String(await evaluateValue(body.document_type, r)) as DocumentType,
      DocumentFormat: String(await evaluateValue(body.document_format, r)) as DocumentFormat,
      Content:
        content === built.toString("utf8")
          ? content
          : content.replace(/[<>&]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`),
    };
  }

  it("CreateDocument takes it with and without defaults, and moto describes its parameters and their defaults", async () => {
    const plain = await created({ name: "nixship-activate" });
    expect(plain.Content).toBe(built.toString("utf8"));
    const baked = await created({
      name: "nixship-activate-baked",
      default_substituters: CACHE_URL,
      default_trusted_public_keys: CACHE_KEY,
    });
    for (const input of [plain, baked]) {
      const made = await ssm.send(new CreateDocumentCommand(input));
      expect(made.DocumentDescription).toMatchObject({
        Name: input.Name,
        DocumentType: "Command",
        DocumentFormat: "JSON",
        SchemaVersion: "2.2",
        Status: "Active",
      });
      const held = await ssm.send(new GetDocumentCommand({ Name: input.Name }));
      expect(held.Content).toBe(input.Content);
    }
    const defaults = async (name: string) =>
      Object.fromEntries(
        ((await ssm.send(new DescribeDocumentCommand({ Name: name }))).Document?.Parameters ?? [])
          .filter((p) => p.Name === "Substituters" || p.Name === "TrustedPublicKeys")
          .map((p) => [p.Name, p.DefaultValue]),
      );
    expect(await defaults(plain.Name)).toEqual({ Substituters: "", TrustedPublicKeys: "" });
    expect(await defaults(baked.Name)).toEqual({
      Substituters: CACHE_URL,
      TrustedPublicKeys: CACHE_KEY,
    });
  });

  it("moto refuses a document without a schemaVersion, and a name SSM reserves", async () => {
    const { schemaVersion: _, ...unversioned } = JSON.parse(built.toString("utf8")) as Record<
      string,
      unknown
    >;
    const create = (Name: string, Content: string) =>
      ssm.send(
        new CreateDocumentCommand({
          Name,
          Content,
          DocumentType: "Command",
          DocumentFormat: "JSON",
        }),
      );
    await expect(create("nixship-unversioned", JSON.stringify(unversioned))).rejects.toMatchObject({
      name: "InvalidDocumentContent",
    });
    await expect(create("aws-nixship", built.toString("utf8"))).rejects.toMatchObject({
      name: "ValidationException",
    });
  });
});

describe("associations: one per role", () => {
  it("yields one association per role, with the role's store path and its tag as the target", async () => {
    const body = mod.resources.get("aws_ssm_association.role")?.body ?? {};
    const vars = {
      associations: { web: WEB_SYSTEM, db: DB_SYSTEM },
      substituters: CACHE_URL,
      trusted_public_keys: CACHE_KEY,
    };
    const each = (await evaluateValue(body.for_each, resolver(vars))) as Record<string, string>;
    expect(Object.keys(each).sort()).toEqual(["db", "web"]);
    const parameters = documentParameters();
    const rendered: Record<string, unknown> = {};
    for (const [role, path] of Object.entries(each)) {
      const r = withEach(resolver(vars), role, path);
      const params = (await evaluateValue(body.parameters, r)) as Record<string, string>;
      for (const [name, value] of Object.entries(params)) {
        expect(new RegExp(parameters[name]?.allowedPattern ?? "^$").test(value), name).toBe(true);
      }
      rendered[role] = {
        name: await evaluateValue(body.name, r),
        association_name: await evaluateValue(body.association_name, r),
        targets: await evaluateValue(body.targets, r),
        parameters: params,
      };
    }
    expect(rendered).toEqual({
      web: {
        name: "nixship-activate",
        association_name: "nixship-activate-web",
        targets: [{ key: "tag:Role", values: ["web"] }],
        parameters: {
          StorePath: WEB_SYSTEM,
          Substituters: CACHE_URL,
          TrustedPublicKeys: CACHE_KEY,
        },
      },
      db: {
        name: "nixship-activate",
        association_name: "nixship-activate-db",
        targets: [{ key: "tag:Role", values: ["db"] }],
        parameters: { StorePath: DB_SYSTEM, Substituters: CACHE_URL, TrustedPublicKeys: CACHE_KEY },
      },
    });
    // Another tag key targets that tag; none by default.
    const tier = withEach(resolver({ ...vars, association_tag_key: "Tier" }), "web", WEB_SYSTEM);
    expect(await evaluateValue(body.targets, tier)).toEqual([{ key: "tag:Tier", values: ["web"] }]);
    expect(await evaluateValue(body.for_each, resolver({}))).toEqual({});
  });

  it("refuses caches with credentials, which every managed instance could read in the document or its associations", async () => {
    for (const name of ["default_substituters", "substituters"]) {
      const condition = variableValidation(name);
      const valid = async (value: string) => evaluateValue(condition, resolver({ [name]: value }));
      expect(await valid("")).toBe(true);
      expect(await valid("s3://fleet-cache?region=eu-west-1 https://cache.example.org")).toBe(true);
      expect(await valid("https://cache.example.org/nix?priority=30")).toBe(true);
      for (const bad of [
        "https://user:pass@cache.example.org",
        "https://cache.example.org?token=abc",
        "s3://fleet-cache?region=eu-west-1&aws_secret_access_key=x",
        "s3://fleet-cache https://cache.example.org?X-Amz-Signature=0f",
        "https://cache.example.org?api_password=1",
        "ftp://cache.example.org",
        "https://cache.example.org  https://other.example.org",
      ]) {
        expect([name, bad, await valid(bad)]).toEqual([name, bad, false]);
      }
    }
  });

  it("refuses roles that cannot name an association and values that are not store paths", async () => {
    const condition = variableValidation("associations");
    const valid = async (associations: Record<string, string>) =>
      evaluateValue(condition, resolver({ associations }));
    expect(await valid({})).toBe(true);
    expect(await valid({ web: WEB_SYSTEM, "db-1.eu": DB_SYSTEM })).toBe(true);
    expect(await valid({ "web server": WEB_SYSTEM })).toBe(false);
    expect(await valid({ web: "/nix/store/short-name" })).toBe(false);
    expect(await valid({ web: `${WEB_SYSTEM}; reboot` })).toBe(false);
  });

  it("association_ids gives each role's association", async () => {
    const value = mod.outputs.get("association_ids")?.value;
    const ids = await evaluateValue(
      value,
      moduleResolver(mod, {
        vars: { associations: { web: WEB_SYSTEM } },
        known: { "aws_ssm_association.role": { web: { association_id: "a-1" } } },
      }),
    );
    expect(ids).toEqual({ web: "a-1" });
  });
});

describe("the evaluator functions these tests added", () => {
  it("file() reads an absolute path only, jsondecode() parses JSON, distinct() keeps first occurrences", async () => {
    const r = moduleResolver(mod, { vars: {} });
    const doc = await evaluateString(`\${jsondecode(file("${DOCUMENT}")).schemaVersion}`, r);
    expect(doc).toBe("2.2");
    // biome-ignore lint/suspicious/noTemplateCurlyInString: an HCL expression.
    await expect(evaluateString('${file("document.json")}', r)).rejects.toThrow(UnsupportedError);
    // biome-ignore lint/suspicious/noTemplateCurlyInString: an HCL expression.
    await expect(evaluateString('${jsondecode("{")}', r)).rejects.toThrow(/not JSON/);
    // biome-ignore lint/suspicious/noTemplateCurlyInString: an HCL expression.
    expect(await evaluateString('${distinct(["b", "a", "b", "c", "a"])}', r)).toEqual([
      "b",
      "a",
      "c",
    ]);
  });
});
