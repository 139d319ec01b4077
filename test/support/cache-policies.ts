// The cache module's IAM policies as Terraform makes them: each policy output followed to the
// aws_iam_policy it names and to the policy document behind it, rendered from the module's own HCL
// for a bucket and a key prefix. Read by the IAM evaluator's tests and loaded into moto's IAM.
import { expect } from "vitest";
import { evaluateString, evaluateValue, type HclValue, referencesIn } from "./hcl-expr.js";
import { type PolicyDocument, validatePolicy } from "./iam-policy.js";
import type { TfModule } from "./terraform.js";
import { moduleResolver, renderPolicyDocument } from "./terraform-render.js";

export type Role = "host-read" | "agent" | "writer" | "reader" | "collector";
export const OUTPUT_OF: Record<Role, string> = {
  "host-read": "host_read_policy_arn",
  agent: "agent_policy_arn",
  writer: "writer_policy_arn",
  reader: "reader_policy_arn",
  collector: "collector_policy_arn",
};

export interface RenderedCache {
  readonly bucketArn: string;
  readonly policies: Record<Role, PolicyDocument>;
  /** Each role's aws_iam_policy name. */
  readonly policyNames: Record<Role, string>;
  readonly bucketPolicy: PolicyDocument;
  readonly storeUrl: string;
}

/** The single reference a string value makes (e.g. "${aws_iam_policy.x.arn}"). */
async function onlyReference(value: unknown, what: string): Promise<readonly string[]> {
  const refs = await referencesIn(String(value));
  expect(refs.length, `${what} should be one reference: ${String(value)}`).toBe(1);
  return refs[0]?.names ?? [];
}

/** The policy document behind `policy = data.aws_iam_policy_document.X.json` of a resource. */
export async function documentBehind(
  mod: TfModule,
  address: string,
  resolve: ReturnType<typeof moduleResolver>,
) {
  const resource = mod.resources.get(address);
  expect(resource, `${mod.dir} has no ${address}`).toBeDefined();
  const [data, type, name, attr] = await onlyReference(resource?.body.policy, `${address}.policy`);
  expect([data, type, attr]).toEqual(["data", "aws_iam_policy_document", "json"]);
  const json = await renderPolicyDocument(mod, name as string, resolve);
  return validatePolicy(JSON.parse(JSON.stringify(json)), `${address} (${name})`);
}

/**
 * The module rendered for a key prefix and a way of naming the bucket (`bucket` is the name
 * the bucket gets: the one given, or the one AWS generated from bucket_prefix).
 */
export async function renderCache(
  mod: TfModule,
  prefix: string,
  naming: Record<string, HclValue>,
  bucket: string,
): Promise<RenderedCache> {
  const bucketArn = `arn:aws:s3:::${bucket}`;
  const resolve = moduleResolver(mod, {
    vars: { ...naming, prefix },
    known: {
      "aws_s3_bucket.this.arn": bucketArn,
      "aws_s3_bucket.this.id": bucket,
      "aws_s3_bucket.this.bucket": bucket,
      "aws_s3_bucket.this.region": "eu-west-1",
    },
  });
  const policies = {} as Record<Role, PolicyDocument>;
  const policyNames = {} as Record<Role, string>;
  for (const [role, outputName] of Object.entries(OUTPUT_OF) as [Role, string][]) {
    const output = mod.outputs.get(outputName);
    const [type, name, attr] = await onlyReference(output?.value, `output ${outputName}`);
    expect([type, attr]).toEqual(["aws_iam_policy", "arn"]);
    policies[role] = await documentBehind(mod, `aws_iam_policy.${name}`, resolve);
    const body = mod.resources.get(`aws_iam_policy.${name}`)?.body ?? {};
    policyNames[role] = String(await evaluateValue(body.name, resolve));
  }
  const bucketPolicy = await documentBehind(mod, "aws_s3_bucket_policy.this", resolve);
  const storeUrl = await evaluateString(String(mod.outputs.get("store_url")?.value), resolve);
  return { bucketArn, policies, policyNames, bucketPolicy, storeUrl: storeUrl as string };
}
