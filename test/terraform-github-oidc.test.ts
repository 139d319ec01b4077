// The github-oidc module: the role GitHub Actions assumes through OIDC. Evaluated from
// the modules' own HCL: the trust policy lets only tokens for sts.amazonaws.com from the given
// repository's refs and environments assume the deploy role (pull requests only the read-only
// plan role); the deploy role holds exactly the cache module's writer policy and the
// ssm-document module's sender policy, and, wired as examples/aws wires it, may push and
// publish, send the nixship document to the Role=web instances, and nothing else.
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { evaluateValue, type HclValue, type Resolver, referencesIn } from "./support/hcl-expr.js";
import {
  evaluate,
  type IamDecision,
  type PolicyDocument,
  validatePolicy,
} from "./support/iam-policy.js";
import { blocks, loadModule, type TfModule } from "./support/terraform.js";
import { moduleResolver, renderPolicyDocument } from "./support/terraform-render.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const MODULES = join(ROOT, "terraform/modules");
const ACCOUNT = "123456789012";
const REPOSITORY = "example-org/fleet";
const CREATED_PROVIDER = `arn:aws:iam::${ACCOUNT}:oidc-provider/token.actions.githubusercontent.com`;
const GIVEN_PROVIDER = `arn:aws:iam::${ACCOUNT}:oidc-provider/token.actions.githubusercontent.com-given`;
const ROLE_ARN = `arn:aws:iam::${ACCOUNT}:role/nixship-github-actions`;
const WRITER_ARN = `arn:aws:iam::${ACCOUNT}:policy/fleet-store-writer`;
const READER_ARN = `arn:aws:iam::${ACCOUNT}:policy/fleet-store-reader`;
const AUD = "token.actions.githubusercontent.com:aud";
const SUB = "token.actions.githubusercontent.com:sub";

const BUCKET = "fleet-store";
const BUCKET_ARN = `arn:aws:s3:::${BUCKET}`;
const DOCUMENT_ARN = `arn:aws:ssm:eu-west-1:${ACCOUNT}:document/nixship-activate`;
const INSTANCE = `arn:aws:ec2:eu-west-1:${ACCOUNT}:instance/i-0123456789abcdef0`;
const NARINFO = "0c8q3d0kzbq0hv6mr1a6rjb1xm1dp7ym.narinfo";

let oidc: TfModule;
let cache: TfModule;
let ssmDocument: TfModule;
let example: TfModule;

beforeAll(async () => {
  oidc = await loadModule(join(MODULES, "github-oidc"), ROOT);
  cache = await loadModule(join(MODULES, "cache"), ROOT);
  ssmDocument = await loadModule(join(MODULES, "ssm-document"), ROOT);
  example = await loadModule(join(ROOT, "examples/aws"), ROOT);
});

/** The inputs every call gives (a sender policy's text: only the role's policy takes it). */
const REQUIRED = {
  repository: REPOSITORY,
  cache_writer_policy_arn: WRITER_ARN,
  ssm_sender_policy_json: '{"Version":"2012-10-17","Statement":[]}',
  cache_reader_policy_arn: READER_ARN,
};

function oidcResolver(vars: Record<string, HclValue>): Resolver {
  return moduleResolver(oidc, {
    vars: { ...REQUIRED, ...vars },
    known: { "aws_iam_openid_connect_provider.github": [{ arn: CREATED_PROVIDER }] },
  });
}

/**
 * A trust policy, read by the IAM evaluator. A role's trust policy names no Resource (it is
 * the role's own); the evaluator needs one, so each statement gets the role's ARN.
 */
async function trustPolicy(name: string, vars: Record<string, HclValue>) {
  const json = await renderPolicyDocument(oidc, name, oidcResolver(vars));
  for (const st of json.Statement)
    expect(st.Resource, "a trust policy names no resource").toBe(undefined);
  return validatePolicy(
    { ...json, Statement: json.Statement.map((st) => ({ ...st, Resource: ROLE_ARN })) },
    name,
  );
}

/** Whether a job whose token carries these claims may assume the role (with this action). */
function assume(
  policy: PolicyDocument,
  claims: { sub?: string; aud?: string },
  action = "sts:AssumeRoleWithWebIdentity",
): IamDecision {
  const context: Record<string, string> = {};
  if (claims.sub !== undefined) context[SUB] = claims.sub;
  if (claims.aud !== undefined) context[AUD] = claims.aud;
  return evaluate([policy], { action, resource: ROLE_ARN, context });
}

const token = (sub: string) => ({ sub, aud: "sts.amazonaws.com" });

describe("the deploy role's trust policy", () => {
  it("lets in only tokens for STS from the repository's refs and environments", async () => {
    const policy = await trustPolicy("deploy_trust", {
      refs: ["refs/heads/main", "refs/tags/v1.2.0"],
      environments: ["production"],
    });
    for (const st of policy.Statement) {
      expect(st.Principal).toEqual({ Federated: [CREATED_PROVIDER] });
    }
    const allowed = [
      `repo:${REPOSITORY}:ref:refs/heads/main`,
      `repo:${REPOSITORY}:ref:refs/tags/v1.2.0`,
      `repo:${REPOSITORY}:environment:production`,
    ];
    for (const sub of allowed) expect(assume(policy, token(sub)), sub).toBe("allow");
    const denied = [
      `repo:${REPOSITORY}:pull_request`,
      `repo:${REPOSITORY}:ref:refs/heads/feature`,
      `repo:${REPOSITORY}:ref:refs/heads/main-old`,
      `repo:${REPOSITORY}:ref:refs/tags/v1.2.0-rc1`,
      `repo:${REPOSITORY}:environment:staging`,
      `repo:${REPOSITORY}-fork:ref:refs/heads/main`,
      `repo:other-org/fleet:ref:refs/heads/main`,
      `repo:${REPOSITORY}:ref:refs/heads/*`,
    ];
    for (const sub of denied) expect(assume(policy, token(sub)), sub).toBe("implicit-deny");
    const main = `repo:${REPOSITORY}:ref:refs/heads/main`;
    // The audience must be STS's, and both claims must be there.
    expect(assume(policy, { sub: main, aud: "https://github.com/example-org" })).toBe(
      "implicit-deny",
    );
    expect(assume(policy, { sub: main })).toBe("implicit-deny");
    expect(assume(policy, { aud: "sts.amazonaws.com" })).toBe("implicit-deny");
    // Only through web identity: not as another AWS principal.
    expect(assume(policy, token(main), "sts:AssumeRole")).toBe("implicit-deny");
    expect(assume(policy, token(main), "sts:TagSession")).toBe("implicit-deny");
  });

  it("by default trusts main only, and names what it trusts in its subjects output", async () => {
    const policy = await trustPolicy("deploy_trust", {});
    expect(assume(policy, token(`repo:${REPOSITORY}:ref:refs/heads/main`))).toBe("allow");
    expect(assume(policy, token(`repo:${REPOSITORY}:environment:production`))).toBe(
      "implicit-deny",
    );
    const subjects = await evaluateValue(oidc.outputs.get("subjects")?.value, oidcResolver({}));
    expect(subjects).toEqual([`repo:${REPOSITORY}:ref:refs/heads/main`]);
  });

  it("trusts a repository's immutable subjects (owner and repository ids), and not its name alone", async () => {
    const immutable = "example-org@123456/fleet@456789";
    const policy = await trustPolicy("deploy_trust", { repository: immutable });
    expect(assume(policy, token(`repo:${immutable}:ref:refs/heads/main`))).toBe("allow");
    for (const sub of [
      `repo:${REPOSITORY}:ref:refs/heads/main`,
      "repo:example-org@123456/fleet@999999:ref:refs/heads/main",
      "repo:example-org@777777/fleet@456789:ref:refs/heads/main",
    ]) {
      expect(assume(policy, token(sub)), sub).toBe("implicit-deny");
    }
  });

  it("trusts the account's existing provider when told to, and makes none", async () => {
    const vars = { create_oidc_provider: false, oidc_provider_arn: GIVEN_PROVIDER };
    const policy = await trustPolicy("deploy_trust", vars);
    expect(policy.Statement.map((st) => st.Principal)).toEqual([{ Federated: [GIVEN_PROVIDER] }]);
    const provider = oidc.resources.get("aws_iam_openid_connect_provider.github")?.body ?? {};
    expect(await evaluateValue(provider.count, oidcResolver(vars))).toBe(0);
    expect(await evaluateValue(provider.count, oidcResolver({}))).toBe(1);
    expect(await evaluateValue(provider.url, oidcResolver({}))).toBe(
      "https://token.actions.githubusercontent.com",
    );
    expect(await evaluateValue(provider.client_id_list, oidcResolver({}))).toEqual([
      "sts.amazonaws.com",
    ]);
  });

  it("refuses inputs that would widen the trust or leave it without a provider or subjects", async () => {
    const role = oidc.resources.get("aws_iam_role.deploy")?.body ?? {};
    const conditions = blocks(role.lifecycle).flatMap((l) =>
      blocks(l.precondition).map((p) => p.condition),
    );
    const holds = async (vars: Record<string, HclValue>) => {
      const out: boolean[] = [];
      for (const c of conditions) out.push((await evaluateValue(c, oidcResolver(vars))) as boolean);
      return out.every(Boolean);
    };
    expect(await holds({})).toBe(true);
    expect(await holds({ refs: [], environments: [] })).toBe(false);
    expect(await holds({ refs: [], environments: ["production"] })).toBe(true);
    expect(await holds({ create_oidc_provider: false })).toBe(false);
    expect(await holds({ oidc_provider_arn: GIVEN_PROVIDER })).toBe(false);
    expect(await holds({ ssm_sender_policy_json: null })).toBe(false);
    expect(await holds({ send_ssm_commands: false, ssm_sender_policy_json: null })).toBe(true);
    const valid = async (name: string, value: HclValue) => {
      for (const file of oidc.files) {
        const variables = (file.body.variable ?? {}) as Record<string, Record<string, unknown>[]>;
        const validation = blocks(variables[name]?.[0]?.validation)[0];
        if (validation) return evaluateValue(validation.condition, oidcResolver({ [name]: value }));
      }
      throw new Error(`no validation of ${name}`);
    };
    expect(await valid("repository", REPOSITORY)).toBe(true);
    expect(await valid("repository", "example-org@123456/fleet@456789")).toBe(true);
    expect(await valid("repository", "example-org@123456/fleet")).toBe(false);
    expect(await valid("repository", "example-org/fleet@456789")).toBe(false);
    expect(await valid("repository", "example-org@x/fleet@1")).toBe(false);
    expect(await valid("repository", "example-org/*")).toBe(false);
    expect(await valid("repository", "example-org")).toBe(false);
    expect(await valid("refs", ["refs/heads/main", "refs/tags/v1"])).toBe(true);
    expect(await valid("refs", ["refs/heads/*"])).toBe(false);
    expect(await valid("refs", ["main"])).toBe(false);
    expect(await valid("environments", ["production"])).toBe(true);
    expect(await valid("environments", ["prod*"])).toBe(false);
  });
});

describe("the plan role for pull requests", () => {
  it("trusts only pull requests of the repository, and the deploy role never does", async () => {
    const plan = await trustPolicy("plan_trust", { create_plan_role: true });
    const deploy = await trustPolicy("deploy_trust", { environments: ["production"] });
    const pr = token(`repo:${REPOSITORY}:pull_request`);
    expect(assume(plan, pr)).toBe("allow");
    expect(assume(deploy, pr)).toBe("implicit-deny");
    for (const sub of [
      `repo:${REPOSITORY}:ref:refs/heads/main`,
      `repo:${REPOSITORY}:environment:production`,
      "repo:other-org/fleet:pull_request",
    ]) {
      expect(assume(plan, token(sub)), sub).toBe("implicit-deny");
    }
    const count = (address: string, vars: Record<string, HclValue>) =>
      evaluateValue(oidc.resources.get(address)?.body.count, oidcResolver(vars));
    for (const address of [
      "aws_iam_role.plan",
      "aws_iam_role_policy_attachment.plan_cache_reader",
    ]) {
      expect(await count(address, {}), address).toBe(0);
      expect(await count(address, { create_plan_role: true }), address).toBe(1);
    }
  });
});

/** The references a value makes, as dotted names. */
async function refs(value: unknown): Promise<string[]> {
  return (await referencesIn(String(value))).map((r) => r.names.join("."));
}

describe("what the roles hold", () => {
  it("the deploy role: the writer policy attached, the sender policy inline, and nothing else", async () => {
    const attached: Record<string, string[]> = {};
    for (const [address, { body }] of oidc.resources) {
      const role = await refs(body.role);
      if (role.length === 0) continue;
      attached[address] = [...role, ...(await refs(body.policy_arn ?? body.policy))];
    }
    expect(attached).toEqual({
      "aws_iam_role_policy_attachment.cache_writer": [
        "aws_iam_role.deploy.name",
        "var.cache_writer_policy_arn",
      ],
      "aws_iam_role_policy.ssm_sender": ["aws_iam_role.deploy.id", "var.ssm_sender_policy_json"],
      "aws_iam_role_policy_attachment.plan_cache_reader": [
        "aws_iam_role.plan.name",
        "var.cache_reader_policy_arn",
      ],
    });
    // No policy reaches a role another way.
    for (const address of ["aws_iam_role.deploy", "aws_iam_role.plan"]) {
      const body = oidc.resources.get(address)?.body ?? {};
      for (const key of ["inline_policy", "managed_policy_arns", "permissions_boundary"]) {
        expect(body[key], `${address}.${key}`).toBeUndefined();
      }
    }
    const sender = oidc.resources.get("aws_iam_role_policy.ssm_sender")?.body ?? {};
    expect(await evaluateValue(sender.count, oidcResolver({}))).toBe(1);
    expect(await evaluateValue(sender.count, oidcResolver({ send_ssm_commands: false }))).toBe(0);
  });

  it("examples/aws gives it the cache's writer and reader policies and the document's sender policy", async () => {
    const call = example.files
      .flatMap((f) =>
        Object.entries((f.body.module ?? {}) as Record<string, Record<string, unknown>[]>),
      )
      .find(([name]) => name === "github_oidc")?.[1]?.[0];
    expect(call).toBeDefined();
    expect({
      source: call?.source,
      cache_writer_policy_arn: await refs(call?.cache_writer_policy_arn),
      ssm_sender_policy_json: await refs(call?.ssm_sender_policy_json),
      cache_reader_policy_arn: await refs(call?.cache_reader_policy_arn),
      create_plan_role: call?.create_plan_role,
    }).toEqual({
      source: "../../terraform/modules/github-oidc",
      cache_writer_policy_arn: ["module.cache.writer_policy_arn"],
      ssm_sender_policy_json: ["module.ssm_document.sender_policy_json"],
      cache_reader_policy_arn: ["module.cache.reader_policy_arn"],
      create_plan_role: true,
    });
    const r = (vars: Record<string, HclValue>) =>
      moduleResolver(example, {
        vars: {
          bucket_name: BUCKET,
          nixship_package: "/nix/store/0c7j2gdmd5q5b5sl3jfql3qa0y41zlhb-nixship-0.1.0",
          cache_public_keys: [],
          release_public_keys: [],
          ...vars,
        },
      });
    // Made only when a repository is named; the provider made unless one is given.
    expect(await evaluateValue(call?.count, r({}))).toBe(0);
    expect(await evaluateValue(call?.count, r({ github_repository: REPOSITORY }))).toBe(1);
    expect(await evaluateValue(call?.create_oidc_provider, r({}))).toBe(true);
    expect(
      await evaluateValue(
        call?.create_oidc_provider,
        r({ github_oidc_provider_arn: GIVEN_PROVIDER }),
      ),
    ).toBe(false);
  });
});

describe("the deploy role's permissions, as examples/aws wires them", () => {
  let deployPolicies: PolicyDocument[];
  let planPolicies: PolicyDocument[];

  beforeAll(async () => {
    // The cache module as examples/aws calls it (a fixed bucket name, no key prefix).
    const cacheResolver = moduleResolver(cache, {
      vars: { bucket_name: BUCKET },
      known: { "aws_s3_bucket.this.arn": BUCKET_ARN, "aws_s3_bucket.this.bucket": BUCKET },
    });
    const writer = await renderPolicyDocument(cache, "writer", cacheResolver);
    const reader = await renderPolicyDocument(cache, "reader", cacheResolver);
    // The ssm-document module with the arguments examples/aws passes it that shape the policy.
    const call = example.files
      .flatMap((f) =>
        Object.entries((f.body.module ?? {}) as Record<string, Record<string, unknown>[]>),
      )
      .find(([name]) => name === "ssm_document")?.[1]?.[0] as Record<string, unknown>;
    const exampleResolver = moduleResolver(example, {
      vars: {
        bucket_name: BUCKET,
        nixship_package: "",
        cache_public_keys: [],
        release_public_keys: [],
      },
    });
    const vars: Record<string, HclValue> = {};
    for (const name of [
      "association_tag_key",
      "associations",
      "sender_tag_values",
      "association_tag_values",
    ]) {
      if (call[name] !== undefined) vars[name] = await evaluateValue(call[name], exampleResolver);
    }
    expect(vars).toMatchObject({ association_tag_key: "Role", sender_tag_values: ["web"] });
    const sender = await renderPolicyDocument(
      ssmDocument,
      "sender",
      moduleResolver(ssmDocument, {
        vars,
        known: {
          "aws_ssm_document.this.arn": DOCUMENT_ARN,
          "data.aws_partition.current.partition": "aws",
          "data.aws_caller_identity.current.account_id": ACCOUNT,
        },
      }),
    );
    deployPolicies = [validatePolicy(writer, "writer"), validatePolicy(sender, "sender")];
    planPolicies = [validatePolicy(reader, "reader")];
  });

  const decide = (
    policies: PolicyDocument[],
    action: string,
    resource: string,
    context: Record<string, string> = {},
  ) => evaluate(policies, { action, resource, context });

  it("may push, publish, record and send the document to the Role=web instances", () => {
    const allowed: [string, string, Record<string, string>?][] = [
      ["s3:PutObject", `${BUCKET_ARN}/${NARINFO}`],
      [
        "s3:PutObject",
        `${BUCKET_ARN}/nar/1w1fff338fvdw53sqgamddn1b2xgds473pv6y13gizdbqjv4i5p3.nar.zst`,
      ],
      ["s3:PutObject", `${BUCKET_ARN}/channels/production.json`],
      ["s3:PutObject", `${BUCKET_ARN}/releases/production/8.json`],
      ["s3:GetObject", `${BUCKET_ARN}/status/hosts/web1.json`],
      ["s3:ListBucket", BUCKET_ARN, { "s3:prefix": "status/releases/production/8/" }],
      ["ssm:SendCommand", DOCUMENT_ARN],
      ["ssm:SendCommand", INSTANCE, { "ssm:resourceTag/Role": "web" }],
      ["ssm:GetCommandInvocation", "*"],
      ["ssm:ListCommandInvocations", "*"],
      ["ssm:ListCommands", "*"],
      ["ssm:CancelCommand", "*"],
    ];
    for (const [action, resource, context] of allowed) {
      expect(decide(deployPolicies, action, resource, context), `${action} ${resource}`).toBe(
        "allow",
      );
    }
  });

  it("may do nothing else: no other instance, document, service or bucket", () => {
    const denied: [string, string, Record<string, string>?][] = [
      ["ssm:SendCommand", INSTANCE, { "ssm:resourceTag/Role": "db" }],
      ["ssm:SendCommand", INSTANCE],
      ["ssm:SendCommand", DOCUMENT_ARN.replace("nixship-activate", "AWS-RunShellScript")],
      ["ssm:StartSession", INSTANCE, { "ssm:resourceTag/Role": "web" }],
      ["ssm:UpdateDocument", DOCUMENT_ARN],
      ["ssm:GetParameter", "*"],
      ["ec2:TerminateInstances", INSTANCE],
      ["iam:PassRole", ROLE_ARN],
      ["sts:AssumeRole", ROLE_ARN],
      ["s3:DeleteObject", `${BUCKET_ARN}/channels/production.json`],
      ["s3:DeleteObject", `${BUCKET_ARN}/${NARINFO}`],
      ["s3:PutObject", `${BUCKET_ARN}/status/releases/production/8/web1/success`],
      ["s3:PutObject", "arn:aws:s3:::another-bucket/channels/production.json"],
      ["s3:DeleteBucket", BUCKET_ARN],
      ["s3:PutBucketPolicy", BUCKET_ARN],
    ];
    for (const [action, resource, context] of denied) {
      expect(decide(deployPolicies, action, resource, context), `${action} ${resource}`).toBe(
        "implicit-deny",
      );
    }
    // Named actions only, no wildcard, and no service beyond S3 and SSM.
    const actions = deployPolicies.flatMap((p) =>
      p.Statement.flatMap((st) =>
        typeof st.Action === "string" ? [st.Action] : [...(st.Action ?? [])],
      ),
    );
    expect(actions.filter((a) => a.includes("*"))).toEqual([]);
    expect([...new Set(actions.map((a) => a.split(":")[0]))].sort()).toEqual(["s3", "ssm"]);
  });

  it("the plan role reads the store and may neither write nor send a command", () => {
    expect(decide(planPolicies, "s3:GetObject", `${BUCKET_ARN}/status/hosts/web1.json`)).toBe(
      "allow",
    );
    expect(decide(planPolicies, "s3:GetObject", `${BUCKET_ARN}/channels/production.json`)).toBe(
      "allow",
    );
    for (const [action, resource] of [
      ["s3:PutObject", `${BUCKET_ARN}/channels/production.json`],
      ["s3:PutObject", `${BUCKET_ARN}/${NARINFO}`],
      ["s3:GetObject", `${BUCKET_ARN}/secrets/web1/${"a".repeat(64)}`],
      ["ssm:SendCommand", DOCUMENT_ARN],
      ["ssm:SendCommand", INSTANCE],
    ] as const) {
      expect(
        decide(planPolicies, action, resource, { "ssm:resourceTag/Role": "web" }),
        `${action} ${resource}`,
      ).toBe("implicit-deny");
    }
  });
});
