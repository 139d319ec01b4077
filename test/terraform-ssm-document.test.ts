// Issue 5, acceptance 4: the ssm-document module embeds exactly what `nixship ssm document`
// prints (byte for byte), reads it from that one committed file with no copy elsewhere in the
// module, and that file is a valid SSM Command document whose parameters the module's
// association fills with values SSM accepts; the sender policy lets a deployer send it only
// to the instances tagged as given.
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { nixship } from "./support/cli.js";
import { callsIn, evaluateNode, evaluateValue, RenderError } from "./support/hcl-expr.js";
import { evaluate, validatePolicy } from "./support/iam-policy.js";
import { loadModule, type TfModule } from "./support/terraform.js";
import { moduleResolver, renderPolicyDocument } from "./support/terraform-render.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const MODULE_DIR = join(ROOT, "terraform/modules/ssm-document");
const DOCUMENT = join(MODULE_DIR, "document.json");

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
let committed: Buffer;

beforeAll(async () => {
  mod = await loadModule(MODULE_DIR, ROOT);
  committed = await readFile(DOCUMENT);
});

describe("the ssm-document module embeds `nixship ssm document`", () => {
  it("document.json is byte for byte what the built CLI prints", async () => {
    const r = await nixship(["ssm", "document"]);
    expect(r.code, r.stderr).toBe(0);
    const printed = Buffer.from(r.stdout, "utf8");
    expect(
      printed.equals(committed),
      "terraform/modules/ssm-document/document.json is stale: regenerate it with `node dist/cli/bin.js ssm document > terraform/modules/ssm-document/document.json`",
    ).toBe(true);
  });

  it("the one aws_ssm_document reads its content from that file, a Command document in JSON", async () => {
    const documents = [...mod.resources.keys()].filter((k) => k.startsWith("aws_ssm_document."));
    expect(documents).toEqual(["aws_ssm_document.this"]);
    const body = mod.resources.get("aws_ssm_document.this")?.body ?? {};
    expect(body.document_type).toBe("Command");
    expect(body.document_format).toBe("JSON");
    // The content is nothing but file(<path>), and the path is this module's document.json.
    const content = String(body.content);
    const calls = await callsIn(content, "file");
    expect(calls).toHaveLength(1);
    expect(content).toMatch(/^\$\{file\([^()]*\)\}$/);
    const call = calls[0] as (typeof calls)[number];
    const path = await evaluateNode(
      call.template,
      call.call.children[0] as never,
      async (names) => {
        if (names.join(".") === "path.module") return MODULE_DIR;
        throw new RenderError(`unexpected reference ${names.join(".")}`);
      },
    );
    expect(path).toBe(DOCUMENT);
  });

  it("no other file of the module holds a copy of the document or of activate.sh", async () => {
    const doc = JSON.parse(committed.toString("utf8")) as {
      mainSteps: { inputs: { runCommand: string[] } }[];
    };
    // Distinctive lines of the embedded script, long enough never to appear by chance.
    const scriptLines = (doc.mainSteps[0]?.inputs.runCommand ?? []).filter(
      (l) => l.trim().length > 40,
    );
    expect(scriptLines.length).toBeGreaterThan(10);
    const entries = await readdir(MODULE_DIR, { recursive: true, withFileTypes: true });
    const others = entries.filter((e) => e.isFile() && join(e.parentPath, e.name) !== DOCUMENT);
    expect(others.map((e) => e.name).sort()).toEqual([
      "README.md",
      "main.tf",
      "outputs.tf",
      "variables.tf",
      "versions.tf",
    ]);
    for (const e of others) {
      const text = await readFile(join(e.parentPath, e.name), "utf8");
      const copied = scriptLines.filter((l) => text.includes(l.trim()));
      expect(copied, `${e.name} repeats lines of the document`).toEqual([]);
      expect(text, e.name).not.toContain('"schemaVersion"');
    }
  });
});

describe("document.json as an SSM Command document", () => {
  it("is schema 2.2 with described, anchored parameters and one aws:runShellScript step", () => {
    expect(commandDocumentProblems(committed.toString("utf8"))).toEqual([]);
    // SSM refuses Command documents over 64 KB.
    expect(committed.length).toBeLessThan(64 * 1024);
  });

  it("the checks catch a document that breaks the rules", () => {
    const doc = JSON.parse(committed.toString("utf8")) as DocumentShape;
    doc.schemaVersion = "1.2";
    (doc.parameters.StorePath as SsmParameter).allowedPattern = ".*";
    doc.mainSteps.push({ ...doc.mainSteps[0], name: "second" });
    expect(commandDocumentProblems(JSON.stringify(doc))).toEqual([
      'schemaVersion is "1.2", not "2.2"',
      "parameter StorePath: allowedPattern is not anchored at both ends",
      "mainSteps must hold exactly one step, holds 2",
    ]);
    const unused = JSON.parse(committed.toString("utf8")) as DocumentShape;
    unused.parameters.Extra = { type: "String", description: "x", allowedPattern: "^x$" };
    expect(commandDocumentProblems(JSON.stringify(unused))).toEqual([
      "parameter Extra is never used by the step",
    ]);
  });

  it("the association passes StorePath, Substituters and TrustedPublicKeys, each accepted by its allowedPattern", async () => {
    const parameters = (
      JSON.parse(committed.toString("utf8")) as { parameters: Record<string, SsmParameter> }
    ).parameters;
    const association = mod.resources.get("aws_ssm_association.this")?.body ?? {};
    const targets = association.targets as Record<string, unknown>[];
    const resolve = moduleResolver(mod, {
      vars: {
        create_association: true,
        association_tag_values: ["web"],
        store_path: "/nix/store/0c8q3d0kzbq0hv6mr1a6rjb1xm1dp7ym-nixos-system-web-24.11",
        substituters: "s3://example-nixship-store?region=eu-west-1",
        trusted_public_keys: "cache-1:Ud8ihtahngn3VIpxsVmFs0aXsPE7SC3fFnlnkkMN4UE=",
      },
      known: { "aws_ssm_document.this.name": "nixship-activate" },
    });
    const values = (await evaluateValue(association.parameters, resolve)) as Record<string, string>;
    expect(Object.keys(values).sort()).toEqual(["StorePath", "Substituters", "TrustedPublicKeys"]);
    for (const [name, value] of Object.entries(values)) {
      const p = parameters[name];
      expect(p, `${name} is a parameter of the document`).toBeDefined();
      expect(new RegExp(p?.allowedPattern ?? "").test(value), `${name}=${value}`).toBe(true);
    }
    expect(await evaluateValue(targets, resolve)).toEqual([{ key: "tag:Role", values: ["web"] }]);
    expect(await evaluateValue(association.name, resolve)).toBe("nixship-activate");
  });

  it("sender_policy_json lets a deployer send this document to the tagged instances only", async () => {
    const documentArn = "arn:aws:ssm:eu-west-1:123456789012:document/nixship-activate";
    const instance = "arn:aws:ec2:eu-west-1:123456789012:instance/i-0123456789abcdef0";
    const render = async (tagValues: string[]) => {
      const resolve = moduleResolver(mod, {
        vars: { association_tag_values: tagValues },
        known: {
          "aws_ssm_document.this.arn": documentArn,
          "data.aws_partition.current.partition": "aws",
          "data.aws_caller_identity.current.account_id": "123456789012",
        },
      });
      expect(String(mod.outputs.get("sender_policy_json")?.value)).toBe(
        // biome-ignore lint/suspicious/noTemplateCurlyInString: hcl2json's form of a reference.
        "${data.aws_iam_policy_document.sender.json}",
      );
      return validatePolicy(await renderPolicyDocument(mod, "sender", resolve), "sender");
    };
    const policy = await render(["web"]);
    const decide = (action: string, resource: string, context: Record<string, string> = {}) =>
      evaluate([policy], { action, resource, context });
    expect(decide("ssm:SendCommand", documentArn)).toBe("allow");
    expect(decide("ssm:SendCommand", instance, { "ssm:resourceTag/Role": "web" })).toBe("allow");
    expect(decide("ssm:SendCommand", instance, { "ssm:resourceTag/Role": "db" })).toBe(
      "implicit-deny",
    );
    expect(decide("ssm:SendCommand", instance)).toBe("implicit-deny");
    expect(
      decide("ssm:SendCommand", documentArn.replace("nixship-activate", "AWS-RunShellScript")),
    ).toBe("implicit-deny");
    for (const action of [
      "ssm:ListCommands",
      "ssm:ListCommandInvocations",
      "ssm:GetCommandInvocation",
    ]) {
      expect(decide(action, "*")).toBe("allow");
    }
    // Without tag values no instance may be targeted at all.
    const none = await render([]);
    expect(
      evaluate([none], {
        action: "ssm:SendCommand",
        resource: instance,
        context: { "ssm:resourceTag/Role": "web" },
      }),
    ).toBe("implicit-deny");
  });
});
