// The ami-import module's VM Import role, rendered from its HCL and judged by the project's IAM
// evaluator: it lists and reads the images under key_prefix and nothing else of the bucket
// (which may be the fleet's cache, with status records and secrets bundles); key_prefix's
// validation refuses an empty prefix and the cache's own folders.
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { evaluateValue, type HclValue } from "./support/hcl-expr.js";
import { evaluate, type PolicyDocument } from "./support/iam-policy.js";
import { blocks, loadModule, type TfModule } from "./support/terraform.js";
import { moduleResolver, renderPolicyDocument } from "./support/terraform-render.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const BUCKET = "fleet-cache";
const VARS = { name: "nixos-web", image_path: "/dev/null", bucket_name: BUCKET };
const KNOWN: Record<string, HclValue> = {
  "data.aws_partition.current": { partition: "aws", dns_suffix: "amazonaws.com" },
};

let mod: TfModule;
beforeAll(async () => {
  mod = await loadModule(join(ROOT, "terraform/modules/ami-import"), ROOT);
});

const resolver = (vars: Record<string, HclValue>) =>
  moduleResolver(mod, { vars: { ...VARS, ...vars }, known: KNOWN });

describe("the ami-import module's VM Import role", () => {
  it("lists and reads the images under key_prefix, and nothing else of the bucket", async () => {
    const policy = (await renderPolicyDocument(
      mod,
      "vmimport",
      resolver({ key_prefix: "ami-import/" }),
    )) as unknown as PolicyDocument;
    const ask = (action: string, key: string) =>
      evaluate([policy], {
        action,
        resource:
          action === "s3:ListBucket" ? `arn:aws:s3:::${BUCKET}` : `arn:aws:s3:::${BUCKET}/${key}`,
        context: action === "s3:ListBucket" ? { "s3:prefix": key } : {},
      });
    expect(ask("s3:GetObject", "ami-import/nixos-web-0123.vhd")).toBe("allow");
    expect(ask("s3:ListBucket", "ami-import/")).toBe("allow");
    for (const key of ["", "secrets/", "status/", "nar/"]) {
      expect(ask("s3:ListBucket", key), key).not.toBe("allow");
    }
    for (const key of [`secrets/web1/${"a".repeat(64)}`, "status/hosts/web1.json"]) {
      expect(ask("s3:GetObject", key), key).not.toBe("allow");
    }
  });

  it("refuses a key_prefix that is empty, no folder, or one of the cache's folders", async () => {
    let condition: unknown;
    for (const file of mod.files) {
      let node: unknown = file.body;
      for (const key of ["variable", "key_prefix", "validation"]) {
        node = blocks((node as Record<string, unknown> | undefined)?.[key])[0];
      }
      if (node !== undefined) condition = (node as { condition: unknown }).condition;
    }
    expect(condition).toBeDefined();
    const allows = async (prefix: string) =>
      (await evaluateValue(condition, resolver({ key_prefix: prefix }))) === true;
    for (const good of ["ami-import/", "images/prod/", "x/"])
      expect(await allows(good), good).toBe(true);
    for (const bad of ["", "images", "/", "secrets/", "status/x/", "nar/", "gc/"]) {
      expect(await allows(bad), JSON.stringify(bad)).toBe(false);
    }
  });
});
