// SSM API errors as nixship faults: which are throttling (retried), which concern the whole
// wave rather than one host, and what each means for the user, with the fix in the hint.
import { NixshipError, OperationError } from "../errors.js";
import type { SsmSettings } from "../fleet/fleet.js";
import { awsErrorText } from "../util/aws-error-text.js";
import { isAnswerCut } from "../util/aws-response-limit.js";

// Faults that concern the account, the region or the document, never one host.
export const WAVE_FAULTS = new Set([
  "ssm-invalid-document",
  "ssm-invalid-parameters",
  "ssm-access-denied",
  "ssm-no-credentials",
  "ssm-bad-credentials",
  "ssm-no-region",
  "ssm-unreachable",
  "ssm-throttled",
]);

export function errorName(err: unknown): string {
  const e = err as { name?: string; code?: string } | undefined;
  return (e?.name === "Error" || e?.name === undefined ? e?.code : e.name) ?? "Error";
}

export function isThrottling(err: unknown): boolean {
  const name = errorName(err);
  return (
    [
      "ThrottlingException",
      "Throttling",
      "TooManyRequestsException",
      "RequestLimitExceeded",
    ].includes(name) ||
    (err as { $retryable?: { throttling?: boolean } })?.$retryable?.throttling === true
  );
}

const FAULTS: readonly (readonly [readonly string[], string, (s: SsmSettings) => string])[] = [
  [
    ["InvalidDocument", "InvalidDocumentVersion"],
    "ssm-invalid-document",
    (s) =>
      `create the document "${s.documentName}": nixship ssm document > doc.json && aws ssm create-document --document-type Command --document-format JSON --content file://doc.json --name ${s.documentName}${s.region ? ` --region ${s.region}` : ""} (or set ssm.documentName in the fleet file)`,
  ],
  [
    ["InvalidParameters"],
    "ssm-invalid-parameters",
    (s) =>
      `the document "${s.documentName}" may predate this nixship: update it from 'nixship ssm document' (aws ssm update-document, then make the new version the default)`,
  ],
  [
    ["InvalidInstanceId"],
    "ssm-invalid-instance",
    () =>
      "check the instance ID and the region, and that its SSM agent is online ('aws ssm describe-instance-information')",
  ],
  [
    ["InvalidTarget", "InvalidTargetMaps"],
    "ssm-invalid-target",
    () => "check the host's targets in the fleet file (tag:NAME keys and their values)",
  ],
  [
    ["UnsupportedPlatformType"],
    "ssm-unsupported-platform",
    () => "the document runs on Linux instances only",
  ],
  [
    ["AccessDeniedException", "AccessDenied"],
    "ssm-access-denied",
    (s) =>
      `the deployer's AWS identity needs ssm:SendCommand on the document "${s.documentName}" and the instances, and ssm:ListCommands, ssm:ListCommandInvocations, ssm:GetCommandInvocation and ssm:CancelCommand (the module terraform/modules/ssm-document's sender_policy_json)`,
  ],
  [
    ["CredentialsProviderError"],
    "ssm-no-credentials",
    () =>
      "no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
  ],
  [
    [
      "UnrecognizedClientException",
      "InvalidClientTokenId",
      "ExpiredTokenException",
      "ExpiredToken",
      "InvalidSignatureException",
    ],
    "ssm-bad-credentials",
    () => "the AWS credentials are invalid or expired: refresh them (e.g. 'aws sso login')",
  ],
  [
    ["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "ECONNRESET", "ETIMEDOUT", "TimeoutError"],
    "ssm-unreachable",
    () => "the SSM endpoint cannot be reached: check the network and the region",
  ],
  [
    ["ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"],
    "ssm-throttled",
    () => "SSM kept throttling the requests: retry later, or lower --parallel",
  ],
];

/** An AWS SDK error as an OperationError with an `ssm-…` code and a hint. */
export function ssmFault(err: unknown, settings: SsmSettings): NixshipError {
  // An answer cut (util/aws-response-limit.ts): said as SSM's.
  if (isAnswerCut(err)) {
    return new OperationError("ssm-failed", `SSM: ${err.message}`, {
      cause: err,
      ...(err.hint === undefined ? {} : { hint: err.hint }),
    });
  }
  if (err instanceof NixshipError) return err;
  const name = errorName(err);
  const detail = awsErrorText(err);
  if (/region is missing/i.test(detail)) {
    return new OperationError("ssm-no-region", `SSM: ${detail}`, {
      cause: err,
      hint: 'set "ssm": {"region": …} in the fleet file, or AWS_REGION',
    });
  }
  const known = FAULTS.find(([names]) => names.includes(name));
  const code = known?.[1] ?? "ssm-failed";
  return new OperationError(code, `SSM: ${name}: ${detail}`, {
    cause: err,
    ...(known ? { hint: known[2](settings) } : {}),
  });
}

/** Errors by which SSM refused a request, running nothing (FAULTS, the unreachable aside). */
const REFUSALS: ReadonlySet<string> = new Set(
  FAULTS.filter(([, code]) => code !== "ssm-unreachable").flatMap(([names]) => names),
);

/** Errors of a request that never left: no connection was made, or nothing to sign it with. */
const NEVER_SENT = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "CredentialsProviderError",
]);

/**
 * Whether SSM may have taken a request that failed: its answer was lost (a reset, a timeout, a
 * 5xx, an answer cut or unreadable), so a non-idempotent one (SendCommand) may be running. Not
 * a refusal (a 4xx, throttling among them: SSM runs nothing it refused), nor a request that
 * never left.
 */
export function mayHaveBeenTaken(err: unknown): boolean {
  if (isAnswerCut(err)) return true;
  if (isThrottling(err)) return false;
  const e = err as
    | {
        $fault?: string;
        $metadata?: { httpStatusCode?: number };
        code?: string;
        cause?: { code?: string };
      }
    | undefined;
  // An error SSM's API declares (InvalidDocument, InvalidInstanceId…) says whose fault it is;
  // one of the refusals nixship knows by name (access denied, bad credentials) ran nothing.
  if (e?.$fault === "client" || REFUSALS.has(errorName(err))) return false;
  const status = e?.$metadata?.httpStatusCode;
  if (status !== undefined) return status < 400 || status >= 500;
  if (NEVER_SENT.has(errorName(err)) || NEVER_SENT.has(e?.code ?? "")) return false;
  if (NEVER_SENT.has(e?.cause?.code ?? "")) return false;
  // Node's handler's connect timeout ("… did not establish a connection …"), or no region.
  return !/did not establish a connection|region is missing/i.test(awsErrorText(err));
}

export function faultMessage(err: unknown): string {
  if (err instanceof NixshipError) return err.hint ? `${err.message} (${err.hint})` : err.message;
  return err instanceof Error ? err.message : String(err);
}
