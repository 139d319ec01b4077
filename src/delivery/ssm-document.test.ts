// The SSM document: its shape against a small schema of SSM's Command document 2.2, its size
// against SSM's limit, that no parameter value can reach the shell unquoted, the shell it
// renders to, and that the activate.sh it embeds, compacted, is the same program.
import { execFileSync } from "node:child_process";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { InputError } from "../errors.js";
import { compactActivateScript } from "../host/activation.js";
import {
  encodeHealthChecks,
  formatSsmDocument,
  renderRunCommand,
  SSM_PARAMETERS,
  type SsmCommandDocument,
  scriptOf,
  ssmDocument,
} from "./ssm-document.js";

/** The subset of JSON Schema this test needs. */
interface Schema {
  type?: "object" | "array" | "string";
  required?: string[];
  properties?: Record<string, Schema>;
  additionalProperties?: boolean | Schema;
  items?: Schema;
  minItems?: number;
  maxItems?: number;
  enum?: string[];
  pattern?: string;
  format?: "regex";
}

/** SSM's Command document, schemaVersion 2.2, as far as nixship's document uses it. */
const SSM_COMMAND_DOCUMENT_SCHEMA: Schema = {
  type: "object",
  required: ["schemaVersion", "mainSteps"],
  additionalProperties: false,
  properties: {
    schemaVersion: { type: "string", enum: ["2.2"] },
    description: { type: "string" },
    parameters: {
      type: "object",
      additionalProperties: {
        type: "object",
        required: ["type"],
        additionalProperties: false,
        properties: {
          type: { type: "string", enum: ["String", "StringList"] },
          description: { type: "string" },
          default: { type: "string" },
          allowedPattern: { type: "string", format: "regex" },
          allowedValues: { type: "array", items: { type: "string" } },
        },
      },
    },
    mainSteps: {
      type: "array",
      minItems: 1,
      items: {
        type: "object",
        required: ["action", "name", "inputs"],
        additionalProperties: false,
        properties: {
          action: {
            type: "string",
            enum: [
              "aws:runShellScript",
              "aws:runPowerShellScript",
              "aws:runDocument",
              "aws:downloadContent",
              "aws:configurePackage",
              "aws:softwareInventory",
              "aws:updateSsmAgent",
            ],
          },
          name: { type: "string", pattern: "^[a-zA-Z0-9_.-]{1,128}$" },
          precondition: {
            type: "object",
            additionalProperties: false,
            properties: {
              StringEquals: {
                type: "array",
                minItems: 2,
                maxItems: 2,
                items: { type: "string" },
              },
            },
          },
          inputs: {
            type: "object",
            required: ["runCommand"],
            additionalProperties: false,
            properties: {
              runCommand: { type: "array", minItems: 1, items: { type: "string" } },
              timeoutSeconds: { type: "string" },
              workingDirectory: { type: "string" },
            },
          },
        },
      },
    },
  },
};

/** Every problem of `value` against `schema`, each named by its JSON path. */
function validate(value: unknown, schema: Schema, path = "$"): string[] {
  const problems: string[] = [];
  if (schema.type === "object") {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      return [`${path}: not an object`];
    }
    const record = value as Record<string, unknown>;
    for (const key of schema.required ?? []) {
      if (!(key in record)) problems.push(`${path}: missing ${key}`);
    }
    for (const [key, item] of Object.entries(record)) {
      const known = schema.properties?.[key];
      const extra = schema.additionalProperties;
      if (known) problems.push(...validate(item, known, `${path}.${key}`));
      else if (typeof extra === "object") problems.push(...validate(item, extra, `${path}.${key}`));
      else if (extra === false) problems.push(`${path}: unknown key ${key}`);
    }
  } else if (schema.type === "array") {
    if (!Array.isArray(value)) return [`${path}: not an array`];
    if (schema.minItems !== undefined && value.length < schema.minItems)
      problems.push(`${path}: fewer than ${schema.minItems} items`);
    if (schema.maxItems !== undefined && value.length > schema.maxItems)
      problems.push(`${path}: more than ${schema.maxItems} items`);
    if (schema.items) {
      for (const [i, item] of value.entries()) {
        problems.push(...validate(item, schema.items, `${path}[${i}]`));
      }
    }
  } else if (schema.type === "string") {
    if (typeof value !== "string") return [`${path}: not a string`];
    if (schema.enum && !schema.enum.includes(value)) problems.push(`${path}: not one of the enum`);
    if (schema.pattern && !new RegExp(schema.pattern).test(value))
      problems.push(`${path}: does not match ${schema.pattern}`);
    if (schema.format === "regex") {
      try {
        new RegExp(value);
      } catch {
        problems.push(`${path}: not a regular expression`);
      }
    }
  }
  return problems;
}

const STORE_PATH = "/nix/store/0c7j2gdmd5q5b5sl3jfql3qa0y41zlhb-nixos-system-web-24.11";
const KEY = "cache.example.org-1:0Ujr1Ehz3TNAD5PjMYqBH4qkTjBqcnGXN0B1GAsHB1I=";

/** A value each parameter accepts, to hide bad characters in. */
const GOOD: Record<keyof typeof SSM_PARAMETERS, string> = {
  Command: "activate",
  StorePath: STORE_PATH,
  Action: "switch",
  Substituters: "https://cache.example.org s3://bucket/nix?region=eu-west-1&profile=ci",
  TrustedPublicKeys: `${KEY} other-1:AAAA`,
  HealthChecks: encodeHealthChecks([{ run: "curl -fsS http://127.0.0.1/health", timeout: 5 }]),
  SecretsUrl: "age:YWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IHNzaC1lZDI1NTE5IA==",
  SecretsSha256: "a".repeat(64),
  AgePath: "/nix/store/1c7j2gdmd5q5b5sl3jfql3qa0y41zlhb-age-1.2.1",
  DeltaTool: "/nix/store/2c7j2gdmd5q5b5sl3jfql3qa0y41zlhb-zstd-1.5.6",
  ExpectCurrent: "/nix/store/3c7j2gdmd5q5b5sl3jfql3qa0y41zlhb-nixos-system-web-24.05",
  Generation: "12",
  KeepGenerations: "3",
  RebootToken: "s1abc-def_2",
  BootToken: "s1abc-def_3",
  RebootRollback: "false",
  ActivationTimeout: "600",
  ExecutionTimeout: "900",
};

const BAD = ["'", '"', "$(", "`", ";", "\n"];

describe("ssmDocument", () => {
  const document = ssmDocument();
  const step = document.mainSteps[0] as SsmCommandDocument["mainSteps"][number];

  it("is an SSM Command document 2.2, through JSON and back", () => {
    const json = JSON.parse(JSON.stringify(document)) as unknown;
    expect(json).toEqual(document);
    expect(validate(json, SSM_COMMAND_DOCUMENT_SCHEMA)).toEqual([]);
    expect(step.action).toBe("aws:runShellScript");
    expect(step.precondition).toEqual({ StringEquals: ["platformType", "Linux"] });
  });

  it("the schema checker catches what it should", () => {
    const broken = JSON.parse(JSON.stringify(document)) as Record<string, unknown>;
    delete broken.schemaVersion;
    (broken.parameters as Record<string, { type: string; allowedPattern: string }>).Command = {
      type: "Integer",
      allowedPattern: "([",
    };
    expect(validate(broken, SSM_COMMAND_DOCUMENT_SCHEMA)).toEqual([
      "$: missing schemaVersion",
      "$.parameters.Command.type: not one of the enum",
      "$.parameters.Command.allowedPattern: not a regular expression",
    ]);
  });

  it("embeds activate.sh without its comments and blank lines, gzipped and base64 in a quoted heredoc", () => {
    const run = step.inputs.runCommand.join("\n");
    const start = run.indexOf("<<'NIXSHIP_ACTIVATE_SH'") + "<<'NIXSHIP_ACTIVATE_SH'".length;
    const body = run.slice(run.indexOf("\n", start) + 1, run.indexOf("\nNIXSHIP_ACTIVATE_SH\n"));
    expect(body).toMatch(/^[A-Za-z0-9+/=\n]+$/);
    const decoded = gunzipSync(Buffer.from(body.replaceAll("\n", ""), "base64")).toString();
    expect(decoded).toBe(compactActivateScript());
    expect(decoded.startsWith("#!/bin/sh\nset -u\n")).toBe(true);
    expect(scriptOf(document)).toBe(decoded);
  });

  it("is under SSM's limit of 64 KiB, as `nixship ssm document` prints it", () => {
    const text = formatSsmDocument(document);
    expect(JSON.parse(text)).toEqual(document);
    const size = Buffer.byteLength(text);
    const limit = 65536;
    expect(size, `${size} bytes: ${limit - size} bytes below SSM's limit of ${limit}`).toBeLessThan(
      limit,
    );
  });

  it("gives every parameter a description, an anchored pattern and a default it accepts", () => {
    for (const [name, p] of Object.entries(document.parameters)) {
      expect(p.description, name).not.toBe("");
      expect(p.allowedPattern, name).toMatch(/^\^.*\$$/);
      expect(p.default, name).toBeDefined();
      expect(new RegExp(p.allowedPattern).test(p.default ?? ""), name).toBe(true);
      expect(new RegExp(p.allowedPattern).test(GOOD[name as keyof typeof GOOD]), name).toBe(true);
    }
  });

  it("no allowedPattern admits a quote, a command substitution, a separator or a newline", () => {
    for (const [name, p] of Object.entries(document.parameters)) {
      const re = new RegExp(p.allowedPattern);
      const good = GOOD[name as keyof typeof GOOD];
      for (const bad of BAD) {
        for (const value of [bad, `${good}${bad}`, `${bad}${good}`, good.replace(/.$/, bad)]) {
          expect(re.test(value), `${name} admits ${JSON.stringify(value)}`).toBe(false);
        }
      }
    }
  });

  it("puts every {{ Name }} in runCommand alone inside single quotes", () => {
    const placeholders = [...quotedPlaceholders(step.inputs.runCommand)];
    expect(placeholders.map((p) => p.name).sort()).toEqual(
      Object.keys(document.parameters)
        .filter((n) => n !== "ExecutionTimeout")
        .sort(),
    );
    for (const p of placeholders) expect(p, p.line).toMatchObject({ quoted: true, alone: true });
    expect(step.inputs.timeoutSeconds).toBe("{{ ExecutionTimeout }}");
  });
});

/** Each `{{ Name }}` of the lines, and whether it is inside single quotes (a small sh lexer). */
function* quotedPlaceholders(lines: readonly string[]) {
  let single = false;
  let double = false;
  let heredoc: string | undefined;
  for (const line of lines) {
    if (heredoc !== undefined) {
      expect(line, "no placeholder inside the heredoc").not.toContain("{{");
      if (line === heredoc) heredoc = undefined;
      continue;
    }
    let quoteStart = -1;
    for (let i = 0; i < line.length; i++) {
      const c = line[i];
      if (!single && !double && c === "#" && (i === 0 || /\s/.test(line[i - 1] as string))) break;
      if (!single && c === "\\") {
        i++;
        continue;
      }
      if (!double && c === "'") {
        single = !single;
        quoteStart = i;
        continue;
      }
      if (!single && c === '"') {
        double = !double;
        continue;
      }
      if (line.startsWith("{{", i)) {
        const m = /^\{\{\s*([A-Za-z0-9_]+)\s*\}\}/.exec(line.slice(i));
        if (!m) throw new Error(`a "{{" that is no placeholder: ${line}`);
        const after = i + m[0].length;
        yield {
          name: m[1] as string,
          line,
          quoted: single,
          alone: single && quoteStart === i - 1 && line[after] === "'",
        };
        i = after - 1;
      }
    }
    const start = /<<'([A-Za-z_]+)'$/.exec(line);
    if (start && !single && !double) heredoc = start[1];
  }
  expect(single || double, "quotes balance").toBe(false);
}

describe("renderRunCommand", () => {
  const document = ssmDocument();

  it("puts values and defaults in place of every {{ Name }}, as SSM does", () => {
    const shell = renderRunCommand(document, {
      StorePath: STORE_PATH,
      Substituters: GOOD.Substituters,
    });
    expect(shell).not.toContain("{{");
    expect(shell).toContain(`store_path='${STORE_PATH}'`);
    expect(shell).toContain(`substituters='${GOOD.Substituters}'`);
    expect(shell).toContain("command='activate'");
    expect(shell).toContain("action='switch'");
    expect(shell).toContain("health_checks=''");
    expect(shell.split("\n")).toHaveLength(document.mainSteps[0]?.inputs.runCommand.length ?? 0);
  });

  /** The arguments the document gives activate.sh: its shell up to where it runs the script. */
  const argsOf = (values: Record<string, string>) => {
    const lines = renderRunCommand(document, values).split("\n");
    const end = lines.findIndex((l) => l.startsWith("# A host with pinned trust"));
    const shell = [...lines.slice(0, end), 'printf "%s\\n" "$@"'].join("\n");
    return execFileSync("sh", ["-c", shell], { encoding: "utf8" }).trim().split("\n");
  };

  it("passes ExpectCurrent to activate as --expect-current, and nothing without it", () => {
    const expected = GOOD.ExpectCurrent;
    const args = argsOf({ StorePath: STORE_PATH, ExpectCurrent: expected });
    expect(
      args.slice(args.indexOf("--expect-current"), args.indexOf("--expect-current") + 2),
    ).toEqual(["--expect-current", expected]);
    expect(argsOf({ StorePath: STORE_PATH })).not.toContain("--expect-current");
  });

  it("passes DeltaTool to activate as --delta-tool, and nothing without it", () => {
    const tool = GOOD.DeltaTool;
    const withTool = argsOf({ StorePath: STORE_PATH, DeltaTool: tool });
    expect(withTool.slice(0, 3)).toEqual(["activate", "--path", STORE_PATH]);
    expect(withTool.slice(withTool.indexOf("--delta-tool"))).toEqual(["--delta-tool", tool]);
    expect(argsOf({ StorePath: STORE_PATH })).not.toContain("--delta-tool");
  });

  it("refuses a value its pattern does not admit, naming the parameter", () => {
    const attempt = () =>
      renderRunCommand(document, { StorePath: `${STORE_PATH}'; touch /tmp/owned; '` });
    expect(attempt).toThrow(InputError);
    expect(attempt).toThrow(/StorePath/);
    expect(() => renderRunCommand(document, { Action: "switch\n" })).toThrow(/Action/);
    expect(() => renderRunCommand(document, { Nope: "x" })).toThrow(/no parameter Nope/);
  });

  it("refuses a presigned URL given as it is (it must be sealed), naming it without its signature or token", () => {
    const url =
      "https://bucket.s3.amazonaws.com/secrets/web/abc?X-Amz-Credential=AKIAEXAMPLE%2F20261203&X-Amz-Security-Token=TOKEN-SECRET&X-Amz-Signature=SIGNATURE-SECRET";
    let message = "";
    try {
      renderRunCommand(document, { StorePath: STORE_PATH, SecretsUrl: url });
    } catch (err) {
      message = `${(err as Error).message} ${(err as InputError).hint ?? ""}`;
    }
    expect(message).toContain("the SSM parameter SecretsUrl does not match");
    expect(message).toContain("https://bucket.s3.amazonaws.com/secrets/web/abc");
    expect(message).not.toMatch(/SECRET|AKIAEXAMPLE/);
  });
});

describe("encodeHealthChecks", () => {
  it("is base64 of the JSON list, and empty for no checks", () => {
    const checks = [{ run: `test "$(cat /etc/x)" = 'y'; echo \`ok\``, timeout: 7 }];
    const encoded = encodeHealthChecks(checks);
    expect(encoded).toMatch(new RegExp(SSM_PARAMETERS.HealthChecks.allowedPattern));
    expect(JSON.parse(Buffer.from(encoded, "base64").toString("utf8"))).toEqual(checks);
    expect(encodeHealthChecks([])).toBe("");
  });
});
