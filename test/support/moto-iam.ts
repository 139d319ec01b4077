// The Terraform modules' IAM policies loaded into moto's IAM (moto-server.ts with `iam`): users
// and roles with the rendered policies attached, and their keys. moto's evaluator reads less of
// the policy language than AWS does, so each document is first written in what moto reads with
// the meaning AWS gives it (forMoto); what moto does not enforce at all is listed in
// docs/development.md and checked by the IAM evaluator's tests (iam-policy.ts).
import { S3Client } from "@aws-sdk/client-s3";
import { type AwsKeys, awsQuery, type QueryTarget, queryValue } from "../../support/aws-query.js";
import { type PolicyDocument, substitute } from "./iam-policy.js";

type Statement = PolicyDocument["Statement"][number];

/** Regular-expression characters that IAM reads as themselves ("*" and "?" are IAM's wildcards). */
const REGEX_SPECIALS = /[.^$+()[\]{}|\\]/g;

/**
 * `policy` as moto should hold it for a principal with these tags, so that moto decides as AWS
 * would for that principal:
 * - moto substitutes no policy variable: ${aws:PrincipalTag/KEY} becomes the principal's tag (as
 *   AWS does per request); a resource whose variable the principal lacks matches nothing in AWS,
 *   so it is left out, and so is a statement left with none.
 * - moto reads a Resource as a regular expression with "*" made ".*": "?" (one character in IAM)
 *   makes that expression invalid and the request fails with 500, and "." matches any character.
 *   Each "?" is written ".", every other special character escaped.
 * Conditions are kept as written (moto ignores them in identity policies). Anything else moto
 * would misread (NotResource, which it takes as "every resource", or ${*}) throws.
 */
export function forMoto(
  policy: PolicyDocument,
  tags: Readonly<Record<string, string>>,
): PolicyDocument {
  const context = Object.fromEntries(
    Object.entries(tags).map(([key, value]) => [`aws:PrincipalTag/${key}`, value]),
  );
  const statements: Statement[] = [];
  for (const statement of policy.Statement) {
    if (statement.NotResource !== undefined) {
      throw new Error(`statement ${statement.Sid ?? "?"}: moto grants NotResource on everything`);
    }
    if (statement.Resource === undefined) {
      statements.push(statement);
      continue;
    }
    const resources = [statement.Resource].flat().flatMap((resource) => {
      const text = substitute(resource, context);
      if (text === undefined) return [];
      if (text.includes("\0")) throw new Error(`${resource}: moto has no \${*}, \${?} or \${$}`);
      return [text.replace(REGEX_SPECIALS, "\\$&").replaceAll("?", ".")];
    });
    if (resources.length > 0) statements.push({ ...statement, Resource: resources });
  }
  return { ...policy, Statement: statements };
}

export interface MotoPrincipal {
  /** The user's or role's name in moto. */
  readonly name: string;
  /** Its tags (the policies' ${aws:PrincipalTag/…} read them). */
  readonly tags?: Readonly<Record<string, string>>;
  /** The policies attached to it, by the name Terraform gives each (aws_iam_policy.name). */
  readonly policies: Readonly<Record<string, PolicyDocument>>;
}

const tagParams = (prefix: string, tags: Readonly<Record<string, string>>) =>
  Object.fromEntries(
    Object.entries(tags).flatMap(([key, value], i) => [
      [`${prefix}.member.${i + 1}.Key`, key],
      [`${prefix}.member.${i + 1}.Value`, value],
    ]),
  );

/**
 * Each policy as moto holds it for this principal: a managed policy NAME, or NAME.PRINCIPAL
 * where forMoto wrote it for the principal's tags (one policy in AWS, one per principal here).
 */
async function createPolicies(
  iam: QueryTarget,
  principal: MotoPrincipal,
): Promise<readonly string[]> {
  const arns: string[] = [];
  for (const [name, policy] of Object.entries(principal.policies)) {
    const own = forMoto(policy, principal.tags ?? {});
    const shared = JSON.stringify(own) === JSON.stringify(forMoto(policy, {}));
    const created = await awsQuery(iam, "CreatePolicy", {
      PolicyName: shared ? name : `${name}.${principal.name}`,
      PolicyDocument: JSON.stringify(own),
    }).catch(async (err: { code?: string }) => {
      if (!shared || err.code !== "EntityAlreadyExists") throw err;
      return awsQuery(iam, "GetPolicy", { PolicyArn: policyArn(name) });
    });
    arns.push(queryValue(created, "Arn"));
  }
  return arns;
}

/** The ARN of a managed policy of moto's default account. */
function policyArn(name: string): string {
  return `arn:aws:iam::123456789012:policy/${name}`;
}

/** Creates a user with its tags and policies, and returns its new access keys. */
export async function createMotoUser(iam: QueryTarget, user: MotoPrincipal): Promise<AwsKeys> {
  await awsQuery(iam, "CreateUser", { UserName: user.name, ...tagParams("Tags", user.tags ?? {}) });
  for (const arn of await createPolicies(iam, user)) {
    await awsQuery(iam, "AttachUserPolicy", { UserName: user.name, PolicyArn: arn });
  }
  const created = await awsQuery(iam, "CreateAccessKey", { UserName: user.name });
  return {
    accessKeyId: queryValue(created, "AccessKeyId"),
    secretAccessKey: queryValue(created, "SecretAccessKey"),
  };
}

/** Creates a role with its trust policy (as rendered), its tags and policies; its ARN. */
export async function createMotoRole(
  iam: QueryTarget,
  role: MotoPrincipal & { readonly trust: unknown },
): Promise<string> {
  const created = await awsQuery(iam, "CreateRole", {
    RoleName: role.name,
    AssumeRolePolicyDocument: JSON.stringify(role.trust),
    ...tagParams("Tags", role.tags ?? {}),
  });
  for (const arn of await createPolicies(iam, role)) {
    await awsQuery(iam, "AttachRolePolicy", { RoleName: role.name, PolicyArn: arn });
  }
  return queryValue(created, "Arn");
}

/**
 * The role's session keys from AssumeRoleWithWebIdentity, as a GitHub Actions job gets them.
 * AWS takes this call unsigned (the token is the caller's proof); moto with IAM enforced answers
 * an unsigned request with 500, so it is signed with `signer` (moto then checks neither the token
 * nor the role's trust policy).
 */
export async function assumeRoleWithWebIdentity(
  sts: QueryTarget,
  roleArn: string,
  token: string,
): Promise<AwsKeys> {
  const answer = await awsQuery(sts, "AssumeRoleWithWebIdentity", {
    RoleArn: roleArn,
    RoleSessionName: "github-actions",
    WebIdentityToken: token,
  });
  return {
    accessKeyId: queryValue(answer, "AccessKeyId"),
    secretAccessKey: queryValue(answer, "SecretAccessKey"),
    sessionToken: queryValue(answer, "SessionToken"),
  };
}

/** An S3 client of moto's endpoint that signs with these keys and never retries. */
export function s3ClientWith(endpoint: string, keys: AwsKeys): S3Client {
  return new S3Client({
    region: "us-east-1",
    endpoint,
    forcePathStyle: true,
    credentials: keys,
    maxAttempts: 1,
  });
}

/** The environment of a nixship command run with these keys, and no other credentials. */
export function withKeys(keys: AwsKeys): NodeJS.ProcessEnv {
  return {
    AWS_ACCESS_KEY_ID: keys.accessKeyId,
    AWS_SECRET_ACCESS_KEY: keys.secretAccessKey,
    AWS_SESSION_TOKEN: keys.sessionToken ?? "",
    AWS_PROFILE: "",
    AWS_REGION: "us-east-1",
  };
}
