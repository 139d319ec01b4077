// A small, strict IAM policy evaluator for the tests of the Terraform modules' policies:
// Allow and Deny statements, Action/NotAction and Resource/NotResource with the wildcards *
// and ?, policy variables (${aws:PrincipalTag/…}, ${*} ${?} ${$}), and the condition
// operators String(Not)Equals, String(Not)Like and Bool (with …IfExists). An explicit Deny
// wins, then any Allow, else the request is implicitly denied. A policy that uses anything
// it does not know is refused, never half-read.

export interface IamRequest {
  /** e.g. "s3:PutObject". */
  readonly action: string;
  /** e.g. "arn:aws:s3:::bucket/key". */
  readonly resource: string;
  /** Request context keys: "aws:PrincipalTag/nixship-host", "s3:prefix", "aws:SecureTransport"… */
  readonly context: Readonly<Record<string, string>>;
}

export type IamDecision = "allow" | "explicit-deny" | "implicit-deny";

interface Statement {
  readonly Sid?: string;
  readonly Effect: "Allow" | "Deny";
  readonly Action?: string | readonly string[];
  readonly NotAction?: string | readonly string[];
  readonly Resource?: string | readonly string[];
  readonly NotResource?: string | readonly string[];
  readonly Principal?: unknown;
  readonly Condition?: Readonly<
    Record<string, Readonly<Record<string, string | readonly string[]>>>
  >;
}

export interface PolicyDocument {
  readonly Version: string;
  readonly Statement: readonly Statement[];
}

export class PolicyError extends Error {
  override name = "PolicyError";
}

const STATEMENT_KEYS = new Set([
  "Sid",
  "Effect",
  "Action",
  "NotAction",
  "Resource",
  "NotResource",
  "Principal",
  "NotPrincipal",
  "Condition",
]);
const OPERATORS = new Set([
  "StringEquals",
  "StringNotEquals",
  "StringLike",
  "StringNotLike",
  "Bool",
]);

/** Checks a policy's shape; throws a PolicyError naming the first thing it cannot read. */
export function validatePolicy(policy: unknown, name: string): PolicyDocument {
  const doc = policy as { Version?: unknown; Statement?: unknown };
  // Policy variables are only substituted under this version; under 2008-10-17 they are text.
  if (doc?.Version !== "2012-10-17") {
    throw new PolicyError(
      `${name}: Version must be "2012-10-17", got ${JSON.stringify(doc?.Version)}`,
    );
  }
  if (!Array.isArray(doc.Statement) || doc.Statement.length === 0) {
    throw new PolicyError(`${name}: Statement must be a non-empty list`);
  }
  doc.Statement.forEach((s: Record<string, unknown>, i: number) => {
    const at = `${name} statement ${s.Sid ?? i}`;
    for (const key of Object.keys(s)) {
      if (!STATEMENT_KEYS.has(key)) throw new PolicyError(`${at}: unknown element ${key}`);
    }
    if (s.Effect !== "Allow" && s.Effect !== "Deny") {
      throw new PolicyError(`${at}: Effect must be Allow or Deny, got ${JSON.stringify(s.Effect)}`);
    }
    if ((s.Action === undefined) === (s.NotAction === undefined)) {
      throw new PolicyError(`${at}: needs exactly one of Action and NotAction`);
    }
    if ((s.Resource === undefined) === (s.NotResource === undefined)) {
      throw new PolicyError(`${at}: needs exactly one of Resource and NotResource`);
    }
    for (const key of ["Action", "NotAction", "Resource", "NotResource"]) {
      const v = s[key];
      if (v === undefined) continue;
      const list = Array.isArray(v) ? v : [v];
      if (list.length === 0 || !list.every((x) => typeof x === "string" && x !== "")) {
        throw new PolicyError(`${at}: ${key} must be non-empty strings, got ${JSON.stringify(v)}`);
      }
    }
    for (const [op, keys] of Object.entries((s.Condition ?? {}) as Record<string, unknown>)) {
      const base = op.replace(/IfExists$/, "");
      if (!OPERATORS.has(base))
        throw new PolicyError(`${at}: unsupported condition operator ${op}`);
      for (const [key, values] of Object.entries(keys as Record<string, unknown>)) {
        const list = Array.isArray(values) ? values : [values];
        if (list.length === 0 || !list.every((x) => typeof x === "string")) {
          throw new PolicyError(
            `${at}: ${op} ${key} needs string values, got ${JSON.stringify(values)}`,
          );
        }
      }
    }
  });
  return doc as PolicyDocument;
}

const list = (v: string | readonly string[] | undefined): readonly string[] =>
  v === undefined ? [] : typeof v === "string" ? [v] : v;

/**
 * Substitutes policy variables in `text`; undefined when one has no value in the request
 * (AWS then treats the element as not matching).
 */
export function substitute(text: string, context: IamRequest["context"]): string | undefined {
  let missing = false;
  const out = text.replace(/\$\{([^}]*)\}/g, (_, name: string) => {
    if (name === "*" || name === "?" || name === "$") return `\0${name}`;
    const value = context[name];
    if (value === undefined) missing = true;
    return value ?? "";
  });
  return missing ? undefined : out;
}

/**
 * IAM wildcard matching: * any run of characters (including "/"), ? exactly one. Characters
 * marked by substitute() (from ${*} ${?} ${$}) match only themselves.
 */
export function wildcardMatch(pattern: string, value: string, ignoreCase = false): boolean {
  let source = "^";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    if (c === "\0") {
      source += escapeRegExp(pattern[++i] as string);
    } else if (c === "*") source += ".*";
    else if (c === "?") source += ".";
    else source += escapeRegExp(c);
  }
  return new RegExp(`${source}$`, ignoreCase ? "is" : "s").test(value);
}

function escapeRegExp(c: string): string {
  return c.replace(/[\\^$.*+?()[\]{}|/]/g, "\\$&");
}

function literal(text: string): string {
  return text.replace(/\0(.)/g, "$1");
}

function matchesAny(patterns: readonly string[], value: string, req: IamRequest, ci: boolean) {
  return patterns.some((p) => {
    const resolved = substitute(p, req.context);
    return resolved !== undefined && wildcardMatch(resolved, value, ci);
  });
}

function conditionHolds(
  op: string,
  key: string,
  values: readonly string[],
  req: IamRequest,
): boolean {
  const ifExists = op.endsWith("IfExists");
  const base = op.replace(/IfExists$/, "");
  const actual = req.context[key];
  const negated = base === "StringNotEquals" || base === "StringNotLike";
  if (actual === undefined) return ifExists || negated;
  const resolved = values.map((v) => substitute(v, req.context)).filter((v) => v !== undefined);
  let match: boolean;
  switch (base) {
    case "StringEquals":
    case "StringNotEquals":
      match = resolved.some((v) => literal(v) === actual);
      break;
    case "StringLike":
    case "StringNotLike":
      match = resolved.some((v) => wildcardMatch(v, actual));
      break;
    case "Bool":
      match = resolved.some((v) => v.toLowerCase() === actual.toLowerCase());
      break;
    default:
      throw new PolicyError(`unsupported condition operator ${op}`);
  }
  return negated ? !match : match;
}

function statementApplies(s: Statement, req: IamRequest): boolean {
  const actionMatch = s.Action
    ? matchesAny(list(s.Action), req.action, req, true)
    : !matchesAny(list(s.NotAction), req.action, req, true);
  if (!actionMatch) return false;
  const resourceMatch = s.Resource
    ? matchesAny(list(s.Resource), req.resource, req, false)
    : !matchesAny(list(s.NotResource), req.resource, req, false);
  if (!resourceMatch) return false;
  for (const [op, keys] of Object.entries(s.Condition ?? {})) {
    for (const [key, values] of Object.entries(keys)) {
      if (!conditionHolds(op, key, list(values), req)) return false;
    }
  }
  return true;
}

/** The decision of these policies together (identity and resource policies alike). */
export function evaluate(policies: readonly PolicyDocument[], req: IamRequest): IamDecision {
  let allowed = false;
  for (const policy of policies) {
    for (const s of policy.Statement) {
      if (!statementApplies(s, req)) continue;
      if (s.Effect === "Deny") return "explicit-deny";
      allowed = true;
    }
  }
  return allowed ? "allow" : "implicit-deny";
}
