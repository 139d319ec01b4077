// Stand-ins on loopback for what an EC2 host's user-data talks to, so that the real curl runs
// against them: the instance metadata service (IMDSv2 only: a token first; the role's
// credentials missing for the first few asks, as on a fresh instance) and an S3 endpoint that
// checks each request's Signature Version 4 with the AWS SDK's own signer and the role's
// secret, session token included. And a curl shim that sends IMDS's address to the stand-in
// and logs each command line, as any process on the host could read it.
import { createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { SignatureV4 } from "@smithy/signature-v4";
import { NodeSha256 } from "../../support/aws-query.js";
import { runOk } from "../../support/cli.js";

export interface RoleCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken: string;
}

/** The instance role's temporary credentials, as IMDS hands them out. */
export const ROLE_CREDENTIALS: RoleCredentials = {
  accessKeyId: "ASIAEXAMPLEHOSTROLE1",
  secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
  sessionToken: "IQoJb3JpZ2luX2VjEXAMPLE/session+token==",
};
const IMDS_TOKEN = "imds-session-token";

function listen(server: Server): Promise<string> {
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    });
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

function body(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (d: Buffer) => chunks.push(d));
    req.on("end", () => resolve(Buffer.concat(chunks))).on("error", reject);
  });
}

export interface Imds {
  /** http://127.0.0.1:PORT, where the curl shim sends http://169.254.169.254. */
  readonly url: string;
  /** Asks for the role that IMDS answers 404 to, from now on, before it names the role. */
  misses: number;
  close(): Promise<void>;
}

/** IMDSv2 for an instance whose role is `role`, with `credentials`. */
export async function startImds(
  role: string,
  credentials: RoleCredentials = ROLE_CREDENTIALS,
): Promise<Imds> {
  const state = { misses: 0 };
  const server = createServer((req, res) => {
    const reply = (status: number, text = "") => res.writeHead(status).end(text);
    if (req.method === "PUT" && req.url === "/latest/api/token") {
      return req.headers["x-aws-ec2-metadata-token-ttl-seconds"] === undefined
        ? reply(400)
        : reply(200, IMDS_TOKEN);
    }
    if (req.headers["x-aws-ec2-metadata-token"] !== IMDS_TOKEN) return reply(401);
    const prefix = "/latest/meta-data/iam/security-credentials/";
    if (req.url === prefix) {
      if (state.misses > 0) {
        state.misses--;
        return reply(404);
      }
      return reply(200, role);
    }
    if (req.url === `${prefix}${role}`) {
      // IMDS's own layout: one field a line.
      return reply(
        200,
        [
          "{",
          '  "Code" : "Success",',
          '  "LastUpdated" : "2025-01-01T00:00:00Z",',
          '  "Type" : "AWS-HMAC",',
          `  "AccessKeyId" : "${credentials.accessKeyId}",`,
          `  "SecretAccessKey" : "${credentials.secretAccessKey}",`,
          `  "Token" : "${credentials.sessionToken}",`,
          '  "Expiration" : "2099-01-01T06:00:00Z"',
          "}",
        ].join("\n"),
      );
    }
    reply(404);
  });
  const url = await listen(server);
  return {
    url,
    get misses() {
      return state.misses;
    },
    set misses(n: number) {
      state.misses = n;
    },
    close: () => close(server),
  };
}

/** "" when the request carries a valid SigV4 signature of `credentials`; else why not. */
export async function sigV4Problem(
  req: IncomingMessage,
  payload: Buffer,
  credentials: RoleCredentials,
  region: string,
): Promise<string> {
  const auth =
    /^AWS4-HMAC-SHA256 Credential=([^,]+), ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(
      req.headers.authorization ?? "",
    );
  if (auth === null) return `no SigV4 Authorization header: ${req.headers.authorization}`;
  const [, credential = "", signedHeaders = "", signature] = auth;
  const amzDate = String(req.headers["x-amz-date"]);
  const [accessKey, day, scopeRegion, service] = credential.split("/");
  if (accessKey !== credentials.accessKeyId || scopeRegion !== region || service !== "s3") {
    return `credential scope ${credential}`;
  }
  if (!amzDate.startsWith(day as string)) return `x-amz-date ${amzDate} is not of ${day}`;
  const sha = String(req.headers["x-amz-content-sha256"]);
  if (sha !== createHash("sha256").update(payload).digest("hex")) return `payload hash ${sha}`;
  const signed = signedHeaders.split(";");
  for (const must of ["host", "x-amz-content-sha256", "x-amz-date", "x-amz-security-token"]) {
    if (!signed.includes(must)) return `${must} is not signed (${signedHeaders})`;
  }
  if (req.headers["x-amz-security-token"] !== credentials.sessionToken) return "session token";
  const date = new Date(
    `${amzDate.slice(0, 4)}-${amzDate.slice(4, 6)}-${amzDate.slice(6, 11)}:${amzDate.slice(11, 13)}:${amzDate.slice(13)}`,
  );
  if (Math.abs(Date.now() - date.getTime()) > 15 * 60_000) return `x-amz-date ${amzDate}`;
  const [path = "", query = ""] = (req.url ?? "").split("?");
  const signer = new SignatureV4({
    credentials,
    region,
    service: "s3",
    sha256: NodeSha256,
    uriEscapePath: false,
  });
  const expected = await signer.sign(
    {
      method: req.method ?? "",
      protocol: "http:",
      hostname: "127.0.0.1",
      path,
      query: Object.fromEntries(new URLSearchParams(query)),
      headers: Object.fromEntries(signed.map((h) => [h, String(req.headers[h])])),
    },
    { signingDate: date },
  );
  const again = /Signature=([0-9a-f]{64})/.exec(String(expected.headers.authorization))?.[1];
  return again === signature ? "" : "the signature does not match";
}

export interface S3Request {
  readonly method: string;
  readonly path: string;
  /** The headers the signature covers. */
  readonly signed: readonly string[];
  /** "" for a valid signature; else why it is not (the request was answered 403). */
  readonly problem: string;
}

export interface SignedS3 {
  /** http://127.0.0.1:PORT: objects are at /BUCKET/KEY (path-style). */
  readonly url: string;
  /** Every request, in order. */
  readonly requests: S3Request[];
  close(): Promise<void>;
}

/**
 * An S3 endpoint for the role's `credentials` in `region`: a request without a valid
 * signature is answered 403 SignatureDoesNotMatch; the others go to `handle`.
 */
export async function startSignedS3(
  region: string,
  handle: (req: IncomingMessage, payload: Buffer, res: ServerResponse) => unknown,
  credentials: RoleCredentials = ROLE_CREDENTIALS,
): Promise<SignedS3> {
  const requests: S3Request[] = [];
  const server = createServer(async (req, res) => {
    try {
      const payload = await body(req);
      const problem = await sigV4Problem(req, payload, credentials, region);
      const signed = /SignedHeaders=([^,]+)/.exec(req.headers.authorization ?? "")?.[1] ?? "";
      requests.push({
        method: req.method ?? "",
        path: req.url ?? "",
        signed: signed.split(";"),
        problem,
      });
      if (problem !== "") {
        res.writeHead(403).end("SignatureDoesNotMatch");
        return;
      }
      await handle(req, payload, res);
    } catch (err) {
      if (!res.headersSent) res.writeHead(500).end(String(err));
      else res.destroy();
    }
  });
  const url = await listen(server);
  return { url, requests, close: () => close(server) };
}

/**
 * Writes `dir/curl`: the machine's curl, with http://169.254.169.254 sent to `imdsUrl`; each
 * call's arguments are appended to `log`, one call a line.
 */
export async function writeCurlShim(dir: string, imdsUrl: string, log: string): Promise<void> {
  const curl = (await runOk("sh", ["-c", "command -v curl"])).trim();
  await writeFile(
    join(dir, "curl"),
    `#!/bin/sh
printf '%s\\n' "$*" >>${log}
for a in "$@"; do
  shift
  case $a in http://169.254.169.254/*) a=${imdsUrl}/\${a#http://169.254.169.254/} ;; esac
  set -- "$@" "$a"
done
exec ${curl} "$@"
`,
    { mode: 0o755 },
  );
}
