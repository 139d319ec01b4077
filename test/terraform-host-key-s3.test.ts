// A host without the agent publishes its SSH host key to an S3 store from its
// user-data (terraform/modules/host/ssh.sh.tftpl), with its role's credentials from IMDSv2
// and a request curl signs (--aws-sigv4). Here the real curl talks to two stand-ins on
// loopback (test/support/aws-stand-ins.ts): the instance metadata service (IMDSv2 only: a token
// first; no credentials yet on the first try, as on a fresh instance) and an S3 endpoint that
// checks each request's Signature Version 4 with the AWS SDK's own signer and the role's
// secret, session token included. The script runs as root in a mount namespace of its own,
// where /etc/ssh holds the host's key; a stand-in for sleep records the pause it asks for.
// The key lands at status/host-keys/HOST.pub; a second run (the next boot) reads it and
// writes nothing; no secret is ever on curl's command line. (And with ssh_authorized_keys
// emptied, the module's old block leaves root's authorized_keys; the EC2 key pair stays.)
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NIXSHIP_BIN, run, runOk } from "../support/cli.js";
import {
  ROLE_CREDENTIALS as CREDENTIALS,
  type Imds,
  type SignedS3,
  startImds,
  startSignedS3,
  writeCurlShim,
} from "./support/aws-stand-ins.js";
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
const KEY_PAIR =
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeyPairFromEc2KeyPairFromEc2KeyPairFromEc2 ec2";
const AUTHORIZED_BEFORE = [
  KEY_PAIR,
  "# nixship host module: ssh_authorized_keys (rewritten at each boot)",
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOldAdminOldAdminOldAdminOldAdminOldAdminOldAdmin old",
  "# end of the nixship host module's keys",
  "",
].join("\n");

let work: string;
let imds: Imds;
let s3: SignedS3;
let s3Url: string;
const objects = new Map<string, string>();
let requests: SignedS3["requests"];

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

/** The user-data as amazon-init runs it, as root, with the host's /etc/ssh and /root (a minute at most). */
async function runUserData(name: string) {
  const file = join(work, `${name}.sh`);
  await writeFile(file, await userData(), { mode: 0o700 });
  const setup = [
    "set -e",
    `mount --bind ${join(work, "etc-ssh")} /etc/ssh`,
    `mount --bind ${join(work, "root")} /root`,
    `exec env PATH=${join(work, "shims")}:/usr/local/bin:/usr/bin:/bin sh ${file}`,
  ].join("\n");
  return run("timeout", [
    ...["--kill-after=5", "60", "unshare", "--mount", "--propagation", "private"],
    ...["sh", "-c", setup],
  ]);
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

  // A fresh instance: its role's credentials are not there at the first ask.
  imds = await startImds(ROLE);
  imds.misses = 1;
  s3 = await startSignedS3(REGION, (req, payload, res) => {
    const stored = objects.get(req.url ?? "");
    if (req.method === "GET") {
      // Without s3:ListBucket, S3 answers a missing object with 403.
      return stored === undefined ? res.writeHead(403).end() : res.writeHead(200).end(stored);
    }
    if (req.method === "PUT") {
      objects.set(req.url ?? "", payload.toString("utf8"));
      return res.writeHead(200).end();
    }
    res.writeHead(405).end();
  });
  s3Url = s3.url;
  requests = s3.requests;

  // curl as the host has it, but IMDS's address is the stand-in's; each call's arguments
  // are logged, as any process on the host could read them.
  await mkdir(join(work, "shims"));
  await writeCurlShim(join(work, "shims"), imds.url, join(work, "curl-args.log"));
  await writeFile(
    join(work, "shims", "sleep"),
    `#!/bin/sh\nprintf '%s\\n' "$*" >>${join(work, "sleeps.log")}\n`,
    { mode: 0o755 },
  );
});

afterAll(async () => {
  await imds?.close();
  await s3?.close();
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
    expect(await readFile(join(work, "sleeps.log"), "utf8")).toBe("5\n");
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
