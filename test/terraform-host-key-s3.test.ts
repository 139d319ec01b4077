// Issue 16: a host without the agent publishes its SSH host key to an S3 store from its
// user-data (terraform/modules/host/ssh.sh.tftpl), with its role's credentials from IMDSv2
// and a request curl signs (--aws-sigv4). Here the real curl talks to two stand-ins on
// loopback: the instance metadata service (IMDSv2 only: a token first; no credentials yet on the
// first try, as on a fresh instance) and an S3 endpoint that checks each request's Signature
// Version 4 with the AWS SDK's own signer and the role's secret, session token included. The
// script runs as root in a mount namespace of its own, where /etc/ssh holds the host's key.
// The key lands at status/host-keys/HOST.pub; a second run (the next boot) reads it and
// writes nothing; no secret is ever on curl's command line. (And with ssh_authorized_keys
// emptied, the module's old block leaves root's authorized_keys; the EC2 key pair stays.)
import { createHash, createHmac } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SignatureV4 } from "@smithy/signature-v4";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NIXSHIP_BIN, run, runOk } from "./support/cli.js";
import { renderTemplate } from "./support/tftpl.js";

const TEMPLATE = join(
  NIXSHIP_BIN,
  ...["..", "..", "..", "terraform", "modules", "host", "ssh.sh.tftpl"],
);
const HOST = "web1";
const REGION = "eu-west-1";
const BUCKET = "fleet-store";
const OBJECT = `/${BUCKET}/status/host-keys/${HOST}.pub`;
const ROLE = "nixship-web1-20250101";
const CREDENTIALS = {
  accessKeyId: "ASIAEXAMPLEHOSTROLE1",
  secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
  sessionToken: "IQoJb3JpZ2luX2VjEXAMPLE/session+token==",
};
const IMDS_TOKEN = "imds-session-token";
const KEY_PAIR =
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeyPairFromEc2KeyPairFromEc2KeyPairFromEc2 ec2";
const AUTHORIZED_BEFORE = [
  KEY_PAIR,
  "# nixship host module: ssh_authorized_keys (rewritten at each boot)",
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOldAdminOldAdminOldAdminOldAdminOldAdminOldAdmin old",
  "# end of the nixship host module's keys",
  "",
].join("\n");

/** What the SDK's signer hashes with (as @smithy/hash-node does it). */
type SourceData = string | ArrayBuffer | ArrayBufferView;
const bytes = (data: SourceData) =>
  typeof data === "string"
    ? Buffer.from(data)
    : ArrayBuffer.isView(data)
      ? Buffer.from(data.buffer, data.byteOffset, data.byteLength)
      : Buffer.from(data);
class NodeSha256 {
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
const signer = new SignatureV4({
  credentials: CREDENTIALS,
  region: REGION,
  service: "s3",
  sha256: NodeSha256,
  uriEscapePath: false,
});

let work: string;
let imds: Server;
let s3: Server;
let s3Url: string;
/** Credential requests IMDS answers 404 to first: a fresh instance's role is not there yet. */
let credentialMisses = 1;
const objects = new Map<string, string>();
const requests: { method: string; path: string; signed: string[]; problem: string }[] = [];

function body(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    req.setEncoding("utf8").on("data", (d: string) => {
      text += d;
    });
    req.on("end", () => resolve(text)).on("error", reject);
  });
}

/** "" when the request carries a valid SigV4 signature of the role's credentials; else why not. */
async function signatureProblem(req: IncomingMessage, payload: string): Promise<string> {
  const auth =
    /^AWS4-HMAC-SHA256 Credential=([^,]+), ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(
      req.headers.authorization ?? "",
    );
  if (auth === null) return `no SigV4 Authorization header: ${req.headers.authorization}`;
  const [, credential = "", signedHeaders = "", signature] = auth;
  const amzDate = String(req.headers["x-amz-date"]);
  const [accessKey, day, region, service] = credential.split("/");
  if (accessKey !== CREDENTIALS.accessKeyId || region !== REGION || service !== "s3") {
    return `credential scope ${credential}`;
  }
  if (!amzDate.startsWith(day as string)) return `x-amz-date ${amzDate} is not of ${day}`;
  const sha = String(req.headers["x-amz-content-sha256"]);
  if (sha !== createHash("sha256").update(payload).digest("hex")) return `payload hash ${sha}`;
  const signed = signedHeaders.split(";");
  for (const must of ["host", "x-amz-content-sha256", "x-amz-date", "x-amz-security-token"]) {
    if (!signed.includes(must)) return `${must} is not signed (${signedHeaders})`;
  }
  if (req.headers["x-amz-security-token"] !== CREDENTIALS.sessionToken) return "session token";
  const date = new Date(
    `${amzDate.slice(0, 4)}-${amzDate.slice(4, 6)}-${amzDate.slice(6, 11)}:${amzDate.slice(11, 13)}:${amzDate.slice(13)}`,
  );
  if (Math.abs(Date.now() - date.getTime()) > 15 * 60_000) return `x-amz-date ${amzDate}`;
  const [path = "", query = ""] = (req.url ?? "").split("?");
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

function listen(server: Server): Promise<string> {
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    });
  });
}

async function userData(): Promise<string> {
  const values = {
    host_name: HOST,
    ssh_host_private_key: "",
    ssh_host_public_key: "",
    ssh_authorized_keys: "",
    host_key_store: "s3",
    host_key_url: `${s3Url}${OBJECT}`,
    host_key_region: REGION,
  };
  const rendered = renderTemplate(await readFile(TEMPLATE, "utf8"), values, TEMPLATE);
  expect([...rendered.used].sort()).toEqual(Object.keys(values).sort());
  return rendered.text;
}

/** The user-data as amazon-init runs it, as root, with the host's /etc/ssh and /root. */
async function runUserData(name: string) {
  const file = join(work, `${name}.sh`);
  await writeFile(file, await userData(), { mode: 0o700 });
  const setup = [
    "set -e",
    `mount --bind ${join(work, "etc-ssh")} /etc/ssh`,
    `mount --bind ${join(work, "root")} /root`,
    `exec env PATH=${join(work, "shims")}:/usr/local/bin:/usr/bin:/bin sh ${file}`,
  ].join("\n");
  return run("unshare", ["--mount", "--propagation", "private", "sh", "-c", setup]);
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-host-key-s3-"));
  await mkdir(join(work, "etc-ssh"));
  await mkdir(join(work, "root", ".ssh"), { recursive: true, mode: 0o700 });
  // The EC2 key pair NixOS installed, and a block of the module's from when the list had a key.
  await writeFile(join(work, "root", ".ssh", "authorized_keys"), AUTHORIZED_BEFORE, {
    mode: 0o600,
  });
  await runOk("ssh-keygen", [
    ...["-q", "-t", "ed25519", "-N", "", "-C", `root@${HOST}`],
    ...["-f", join(work, "etc-ssh", "ssh_host_ed25519_key")],
  ]);

  imds = createServer((req, res) => {
    const reply = (status: number, text = "") => res.writeHead(status).end(text);
    if (req.method === "PUT" && req.url === "/latest/api/token") {
      return req.headers["x-aws-ec2-metadata-token-ttl-seconds"] === undefined
        ? reply(400)
        : reply(200, IMDS_TOKEN);
    }
    if (req.headers["x-aws-ec2-metadata-token"] !== IMDS_TOKEN) return reply(401);
    const prefix = "/latest/meta-data/iam/security-credentials/";
    if (req.url === prefix) {
      if (credentialMisses > 0) {
        credentialMisses--;
        return reply(404);
      }
      return reply(200, ROLE);
    }
    if (req.url === `${prefix}${ROLE}`) {
      // IMDS's own layout: one field a line.
      return reply(
        200,
        [
          "{",
          '  "Code" : "Success",',
          '  "LastUpdated" : "2025-01-01T00:00:00Z",',
          '  "Type" : "AWS-HMAC",',
          `  "AccessKeyId" : "${CREDENTIALS.accessKeyId}",`,
          `  "SecretAccessKey" : "${CREDENTIALS.secretAccessKey}",`,
          `  "Token" : "${CREDENTIALS.sessionToken}",`,
          '  "Expiration" : "2099-01-01T06:00:00Z"',
          "}",
        ].join("\n"),
      );
    }
    reply(404);
  });
  s3 = createServer(async (req, res) => {
    const payload = await body(req);
    const problem = await signatureProblem(req, payload);
    const signed = /SignedHeaders=([^,]+)/.exec(req.headers.authorization ?? "")?.[1] ?? "";
    requests.push({
      method: req.method ?? "",
      path: req.url ?? "",
      signed: signed.split(";"),
      problem,
    });
    if (problem !== "") return res.writeHead(403).end("SignatureDoesNotMatch");
    const stored = objects.get(req.url ?? "");
    if (req.method === "GET") {
      // Without s3:ListBucket, S3 answers a missing object with 403.
      return stored === undefined ? res.writeHead(403).end() : res.writeHead(200).end(stored);
    }
    if (req.method === "PUT") {
      objects.set(req.url ?? "", payload);
      return res.writeHead(200).end();
    }
    res.writeHead(405).end();
  });
  const imdsUrl = await listen(imds);
  s3Url = await listen(s3);

  // curl as the host has it, but IMDS's address is the stand-in's; each call's arguments
  // are logged, as any process on the host could read them.
  const curl = (await runOk("sh", ["-c", "command -v curl"])).trim();
  await mkdir(join(work, "shims"));
  await writeFile(
    join(work, "shims", "curl"),
    `#!/bin/sh
printf '%s\\n' "$*" >>${join(work, "curl-args.log")}
for a in "$@"; do
  shift
  case $a in http://169.254.169.254/*) a=${imdsUrl}/\${a#http://169.254.169.254/} ;; esac
  set -- "$@" "$a"
done
exec ${curl} "$@"
`,
    { mode: 0o755 },
  );
});

afterAll(async () => {
  await new Promise((resolve) => imds?.close(resolve));
  await new Promise((resolve) => s3?.close(resolve));
  await rm(work, { recursive: true, force: true });
});

describe("the user-data publishes the host key to S3 (no agent, no AWS CLI)", () => {
  it("signs with the role's credentials from IMDSv2, after waiting for them, and puts the key", async () => {
    const r = await runUserData("first");
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const pub = (await readFile(join(work, "etc-ssh", "ssh_host_ed25519_key.pub"), "utf8"))
      .split(" ")
      .slice(0, 2)
      .join(" ");
    // The first try found no credentials yet, the second published.
    expect(r.stderr).toContain("publishing the SSH host key failed (attempt 1 of 5)");
    expect(r.stderr).toContain(`published the SSH host key to ${s3Url}${OBJECT}`);
    expect(objects.get(OBJECT)).toBe(`${pub}\n`);
    expect(requests.map((q) => [q.method, q.path, q.problem])).toEqual([
      ["GET", OBJECT, ""],
      ["PUT", OBJECT, ""],
    ]);
    // ssh_authorized_keys is empty now: the module's block leaves, the key pair stays.
    expect(await readFile(join(work, "root", ".ssh", "authorized_keys"), "utf8")).toBe(
      `${KEY_PAIR}\n`,
    );
    expect(requests[1]?.signed).toEqual(
      expect.arrayContaining([
        "host",
        "x-amz-content-sha256",
        "x-amz-date",
        "x-amz-security-token",
      ]),
    );
  });

  it("on the next boot reads the key back and writes nothing", async () => {
    const r = await runUserData("second");
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stderr).not.toContain("published");
    expect(requests.map((q) => [q.method, q.problem])).toEqual([
      ["GET", ""],
      ["PUT", ""],
      ["GET", ""],
    ]);
  });

  it("never puts a secret on a command line", async () => {
    const args = await readFile(join(work, "curl-args.log"), "utf8");
    expect(args).toContain("--aws-sigv4 aws:amz:eu-west-1:s3");
    expect(args).not.toContain(CREDENTIALS.secretAccessKey);
    expect(args).not.toContain(CREDENTIALS.sessionToken);
    expect(args).not.toContain(CREDENTIALS.accessKeyId);
  });
});
