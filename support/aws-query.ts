// AWS's Query API (IAM, STS), signed with SigV4 by the SDK's own signer, for the tests that set up
// users, roles and policies in moto: one POST per call, its XML answer returned as text, a refusal
// thrown with AWS's error code and message.
import { createHash, createHmac } from "node:crypto";
import { SignatureV4 } from "@smithy/signature-v4";

/** What the SDK's signer hashes with (as @smithy/hash-node does it). */
type SourceData = string | ArrayBuffer | ArrayBufferView;
const bytes = (data: SourceData) =>
  typeof data === "string"
    ? Buffer.from(data)
    : ArrayBuffer.isView(data)
      ? Buffer.from(data.buffer, data.byteOffset, data.byteLength)
      : Buffer.from(data);
export class NodeSha256 {
  readonly #hash;
  constructor(secret?: SourceData) {
    this.#hash = secret === undefined ? createHash("sha256") : createHmac("sha256", bytes(secret));
  }
  update(data: SourceData): void {
    this.#hash.update(bytes(data));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.#hash.digest());
  }
}

export interface AwsKeys {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
}

export interface QueryTarget {
  /** http://HOST:PORT: moto serves every service on one port. */
  readonly endpoint: string;
  /** "iam", "sts"…: the service the request is signed for, which moto routes by. */
  readonly service: string;
  readonly keys: AwsKeys;
  readonly region?: string;
}

const VERSIONS: Readonly<Record<string, string>> = { iam: "2010-05-08", sts: "2011-06-15" };
const CALL_MS = 30_000;

/** An answer of AWS's that is an error: its code ("AccessDenied"…) and message. */
export class AwsQueryError extends Error {
  override name = "AwsQueryError";
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Calls `action` with `params`; the answer's XML, or an AwsQueryError. */
export async function awsQuery(
  target: QueryTarget,
  action: string,
  params: Readonly<Record<string, string>>,
): Promise<string> {
  const version = VERSIONS[target.service];
  if (version === undefined) throw new Error(`no Query API version known for ${target.service}`);
  const url = new URL(target.endpoint);
  const body = new URLSearchParams({ Action: action, Version: version, ...params }).toString();
  const signer = new SignatureV4({
    credentials: target.keys,
    region: target.region ?? "us-east-1",
    service: target.service,
    sha256: NodeSha256,
  });
  const signed = await signer.sign({
    method: "POST",
    protocol: url.protocol,
    hostname: url.hostname,
    port: Number(url.port),
    path: "/",
    headers: {
      host: url.host,
      "content-type": "application/x-www-form-urlencoded; charset=utf-8",
    },
    body,
  });
  const response = await fetch(`${url.origin}/`, {
    method: "POST",
    headers: signed.headers,
    body,
    signal: AbortSignal.timeout(CALL_MS),
  });
  const text = await response.text();
  if (!response.ok) {
    const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1] ?? `HTTP ${response.status}`;
    const message = /<Message>([^<]*)<\/Message>/.exec(text)?.[1] ?? text.slice(0, 300);
    throw new AwsQueryError(code, `${target.service} ${action}: ${code}: ${message}`);
  }
  return text;
}

/** The text of the first <name> element of a Query answer; throws when there is none. */
export function queryValue(xml: string, name: string): string {
  const value = new RegExp(`<${name}>([^<]*)</${name}>`).exec(xml)?.[1];
  if (value === undefined) throw new Error(`no <${name}> in the answer: ${xml.slice(0, 300)}`);
  return value.replace(/&(lt|gt|amp|quot|apos);/g, (_, e: string) => XML_ENTITIES[e] ?? "");
}

const XML_ENTITIES: Readonly<Record<string, string>> = {
  lt: "<",
  gt: ">",
  amp: "&",
  quot: '"',
  apos: "'",
};
