// Every `resource "aws_*"` and `data "aws_*"` block under terraform/ and examples/ against the
// AWS provider's own schema, as generated into @cdktf/provider-aws (a dev dependency, so npm
// caches the download): a type the provider has, no argument or block it does not know, every
// required argument set and every required block written. First what is read from the package
// (so a misreading shows), then that the check reports each kind of mistake, then the files.
import { readFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "@cdktf/hcl2json";
import { describe, expect, it } from "vitest";
import { AwsProviderSchema, checkAwsBlocks } from "./support/provider-schema.js";
import { findTfFiles, parseTfFile, type TfFile } from "./support/terraform.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const schema = new AwsProviderSchema();

async function inline(path: string, text: string): Promise<TfFile> {
  return { path, body: (await parse(path, text)) as Record<string, unknown> };
}

describe("the AWS provider schema read from @cdktf/provider-aws", () => {
  it("is hashicorp/aws 6.x", () => {
    expect(schema.providerVersion).toMatch(/^6\.\d+\.\d+$/);
  });

  it("gives arguments by their Terraform names, with required ones marked", () => {
    const policy = schema.schemaOf("resource", "aws_s3_bucket_policy");
    expect(Object.fromEntries(policy?.attributes ?? [])).toEqual({
      bucket: { required: true },
      id: { required: false },
      policy: { required: true },
      region: { required: false },
    });
    expect(policy?.blocks.size).toBe(0);

    const instance = schema.schemaOf("resource", "aws_instance");
    // fetchPasswordData in the generated classes: the name comes from the synthesis code.
    expect(instance?.attributes.get("get_password_data")).toEqual({ required: false });
    expect(instance?.attributes.has("fetch_password_data")).toBe(false);
    expect(instance?.attributes.get("ami")).toEqual({ required: false });
    // Computed only: not an argument.
    expect(instance?.attributes.has("arn")).toBe(false);
    const root = instance?.blocks.get("root_block_device");
    expect(root?.required).toBe(false);
    expect(root?.block.attributes.get("volume_size")).toEqual({ required: false });
  });

  it("gives nested blocks, recursively, required when min_items is at least 1", () => {
    const versioning = schema.schemaOf("resource", "aws_s3_bucket_versioning");
    const configuration = versioning?.blocks.get("versioning_configuration");
    expect(configuration?.required).toBe(true);
    expect(configuration?.block.attributes.get("status")).toEqual({ required: true });

    const document = schema.schemaOf("data", "aws_iam_policy_document");
    const statement = document?.blocks.get("statement");
    expect(statement?.required).toBe(false);
    expect(statement?.nesting).toBe("list");
    expect([...(statement?.block.blocks.keys() ?? [])].sort()).toEqual([
      "condition",
      "not_principals",
      "principals",
    ]);
    expect(
      Object.fromEntries(statement?.block.blocks.get("principals")?.block.attributes ?? []),
    ).toEqual({
      identifiers: { required: true },
      type: { required: true },
    });
  });

  it("tells resources from data sources, and knows no made-up type", () => {
    expect(schema.schemaOf("data", "aws_instance")?.attributes.has("instance_id")).toBe(true);
    expect(schema.schemaOf("resource", "aws_iam_policy_document")).toBeUndefined();
    expect(schema.schemaOf("resource", "aws_s3_buckett")).toBeUndefined();
    expect(schema.schemaOf("data", "aws_s3_buckett")).toBeUndefined();
  });
});

describe("checkAwsBlocks", () => {
  it("reports unknown arguments and blocks, unset required arguments and unknown types", async () => {
    const file = await inline(
      "mistakes.tf",
      `
resource "aws_instance" "misspelled" {
  ami          = "ami-0123456789abcdef0"
  instance_typ = "t3.micro"

  root_block_device {
    volume_sise = 8
  }

  root_volume {
    size = 8
  }

  lifecycle {
    ignore_change = [tags]
  }
}

resource "aws_s3_bucket_policy" "no_policy" {
  bucket = "b"
}

resource "aws_s3_bucket_versioning" "as_argument" {
  bucket                   = "b"
  versioning_configuration = { status = "Enabled" }
}

resource "aws_s3_bucket_versioning" "no_block" {
  bucket = "b"
}

data "aws_iam_policy_document" "dynamic" {
  dynamic "statement" {
    for_each = ["x"]
    content {
      actions = ["s3:GetObject"]
      principals {
        type = "AWS"
      }
    }
  }

  dynamic "statment" {
    for_each = ["x"]
    content {}
  }
}

resource "aws_s3_buckett" "unknown" {
  bucket = "b"
}

resource "null_resource" "not_aws" {
  anything = true
}
`,
    );
    const { problems, checked } = checkAwsBlocks([file], schema);
    expect(problems).toEqual([
      'mistakes.tf: resource "aws_instance" "misspelled": "instance_typ" is neither an argument nor a block of aws_instance (did you mean "instance_type"?)',
      'mistakes.tf: resource "aws_instance" "misspelled": lifecycle has "ignore_change", which is not a lifecycle argument of a resource',
      'mistakes.tf: resource "aws_instance" "misspelled": root_block_device: "volume_sise" is neither an argument nor a block of aws_instance.root_block_device (did you mean "volume_size"?)',
      'mistakes.tf: resource "aws_instance" "misspelled": "root_volume" is neither an argument nor a block of aws_instance',
      'mistakes.tf: resource "aws_s3_bucket_policy" "no_policy": the required argument "policy" of aws_s3_bucket_policy is not set',
      'mistakes.tf: resource "aws_s3_bucket_versioning" "as_argument": "versioning_configuration" is a block of aws_s3_bucket_versioning: write versioning_configuration { … }, not versioning_configuration = …',
      'mistakes.tf: resource "aws_s3_bucket_versioning" "no_block": aws_s3_bucket_versioning needs a "versioning_configuration" block, and there is none',
      'mistakes.tf: resource "aws_s3_buckett" "unknown": hashicorp/aws 6.25.0 has no resource type "aws_s3_buckett"',
      'mistakes.tf: data "aws_iam_policy_document" "dynamic": dynamic "statement" content: principals: the required argument "identifiers" of aws_iam_policy_document.statement.principals is not set',
      'mistakes.tf: data "aws_iam_policy_document" "dynamic": dynamic "statment": aws_iam_policy_document has no block "statment" (did you mean "statement"?)',
    ]);
    // null_resource is not the AWS provider's to judge.
    expect(checked).toHaveLength(6);
  });

  it("accepts meta-arguments, dynamic blocks and a complete block", async () => {
    const file = await inline(
      "fine.tf",
      `
resource "aws_s3_bucket_versioning" "fine" {
  for_each   = toset(["a", "b"])
  provider   = aws.west
  depends_on = [aws_s3_bucket_policy.fine]
  bucket     = each.key

  versioning_configuration {
    status = "Enabled"
  }

  lifecycle {
    create_before_destroy = true
    ignore_changes        = [mfa]
    precondition {
      condition     = true
      error_message = "never"
    }
  }
}

resource "aws_s3_bucket_policy" "fine" {
  count  = 1
  bucket = "b"
  policy = "{}"
}

data "aws_iam_policy_document" "fine" {
  dynamic "statement" {
    for_each = ["a"]
    iterator = s
    content {
      actions = ["s3:GetObject"]
      dynamic "principals" {
        for_each = ["AWS"]
        content {
          type        = principals.value
          identifiers = ["*"]
        }
      }
    }
  }
}
`,
    );
    expect(checkAwsBlocks([file], schema)).toEqual({
      problems: [],
      checked: [
        'fine.tf: resource "aws_s3_bucket_policy" "fine"',
        'fine.tf: resource "aws_s3_bucket_versioning" "fine"',
        'fine.tf: data "aws_iam_policy_document" "fine"',
      ],
    });
  });
});

describe("every aws_ block under terraform/ and examples/", () => {
  it("matches the AWS provider's schema", async () => {
    const paths = [
      ...(await findTfFiles(join(ROOT, "terraform"))),
      ...(await findTfFiles(join(ROOT, "examples"))),
    ];
    const files = await Promise.all(paths.map((p) => parseTfFile(p, relative(ROOT, p))));
    const { problems, checked } = checkAwsBlocks(files, schema);
    expect(problems).toEqual([]);

    // Every aws_ block the files declare was checked (counted in the text, not by hcl2json).
    let declared = 0;
    for (const path of paths) {
      declared +=
        (await readFile(path, "utf8")).match(/^\s*(resource|data)\s+"aws_/gm)?.length ?? 0;
    }
    expect(declared).toBeGreaterThan(0);
    expect(checked).toHaveLength(declared);
  });
});
