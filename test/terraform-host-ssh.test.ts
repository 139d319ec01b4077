// The host module's SSH part of the user-data (terraform/modules/host/ssh.sh.tftpl,
// rendered with the variables main.tf passes) run on a real lab host, whose sshd is set up as
// NixOS sets up its own (host key in /etc/ssh, root's keys in ~/.ssh/authorized_keys), then
// `nixship fleet from-terraform --known-hosts` and real ssh with strict host key checking:
//   1. without generate_ssh_host_key, the host publishes the key its sshd made to the store,
//      from-terraform reads it from there into known_hosts, and nixship reaches the host;
//   2. with it, the user-data installs Terraform's key and restarts sshd, from-terraform
//      refuses the changed key until --replace-host-keys, and a real deploy passes;
//   3. a wrong key in known_hosts is refused by that deploy.
// Root's authorized keys come from ssh_authorized_keys all along (a key taken out of the list
// can no longer log in), and nothing of the agent is installed. Lab hosts run no systemd: a
// stand-in systemctl restarts the lab's sshd (SIGHUP: sshd reads its config and keys again).
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { controlPathFor } from "../src/delivery/ssh-transport.js";
import { type CliRun, NIXSHIP_BIN, nixship, run, runOk } from "../support/cli.js";
import { awsTerraformOutput } from "./support/aws-terraform-output.js";
import { deployEvents, type LabInfo, labDeployArgs, servedBy } from "./support/lab-deploy.js";
import { renderTemplate, type TemplateValue } from "./support/tftpl.js";

const TEMPLATE = join(
  NIXSHIP_BIN,
  "..",
  "..",
  "..",
  "terraform",
  "modules",
  "host",
  "ssh.sh.tftpl",
);
const LAB = "tfk";
const HOST = "tfk1";
const LAB_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const HOST_KEY = "/etc/ssh/ssh_host_ed25519_key";
const AUTHORIZED = "/root/.ssh/authorized_keys";

let work: string;
let lab: LabInfo & { hosts: { name: string; address: string; pid: number }[] };
let address: string;
let sshdPid: number;
let storeUrl: string;
/** The deployer's key (ed25519) and an admin's (ecdsa), both authorized at first. */
let deployerKey: string;
let adminKey: string;
let sshConfig: string;
let baseFleet: string;
/** The key sshd made at "first boot", and the one Terraform generates (ssh-keygen here). */
let bootKey: string;
let terraformKey: { privateText: string; publicLine: string };

const path = (name: string) => join(work, name);

/** Runs `script` in the host: the namespaces of its sshd, the stand-ins first on PATH. */
function inHost(script: string): Promise<CliRun> {
  return run("nsenter", [
    ...["-t", String(sshdPid), "-m", "-n", "--"],
    ...["env", `PATH=${path("shims")}:${LAB_PATH}`, "sh", "-c", script],
  ]);
}

async function inHostOk(script: string): Promise<string> {
  const r = await inHost(script);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
}

/** The user-data as main.tf renders it for a host without the agent. */
async function userData(values: {
  privateKey?: string;
  publicKey?: string;
  authorized: readonly string[];
  publish: boolean;
}): Promise<string> {
  const vars: Record<string, TemplateValue> = {
    host_name: HOST,
    ssh_host_private_key: values.privateKey ?? "",
    ssh_host_public_key: values.publicKey ?? "",
    ssh_authorized_keys: values.authorized.join("\n"),
    host_key_store: values.publish ? "file" : "",
    host_key_url: values.publish
      ? join(lab.dir, "cache", "status", "host-keys", `${HOST}.pub`)
      : "",
    host_key_region: "",
  };
  const rendered = renderTemplate(await readFile(TEMPLATE, "utf8"), vars, TEMPLATE);
  expect([...rendered.used].sort()).toEqual(Object.keys(vars).sort());
  return rendered.text;
}

/** Runs the user-data as amazon-init would: as root, on its own. */
async function runUserData(text: string, name: string): Promise<CliRun> {
  const file = path(`${name}.sh`);
  await writeFile(file, text, { mode: 0o700 });
  return inHost(`exec sh ${file}`);
}

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

/** The ssh-ed25519 key the host's sshd offers now (`ssh-keyscan`, bounded). */
async function offeredKey(): Promise<string> {
  const r = await run("ssh-keyscan", ["-T", "3", "-t", "ed25519", address]);
  const line = r.stdout.split("\n").find((l) => l.startsWith(`${address} ssh-ed25519 `));
  return line === undefined ? "" : line.slice(address.length + 1).trim();
}

/** Waits (bounded) until sshd offers `key`: it re-reads its keys when it restarts. */
async function untilOffered(key: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while ((await offeredKey()) !== key) {
    if (Date.now() > deadline) throw new Error(`the host's sshd does not offer ${key}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** The calls the stand-in systemctl got. */
async function systemctlCalls(): Promise<string[]> {
  return (await readFile(path("systemctl.log"), "utf8").catch(() => ""))
    .split("\n")
    .filter(Boolean);
}

/** `terraform output -json` of examples/aws with this lab host, written to a file. */
async function terraformOutput(name: string, sshHostPublicKey: string): Promise<string> {
  const file = path(`${name}.json`);
  const value = awsTerraformOutput(storeUrl, {
    [HOST]: {
      instance_id: "i-0123456789abcdef0",
      private_ip: address,
      public_ip: "",
      ssh_host_public_key: sshHostPublicKey,
      tags: { Name: HOST, Role: "web" },
    },
  });
  await writeFile(file, JSON.stringify(value));
  return file;
}

function fromTerraform(outputs: string, knownHosts: string, ...extra: string[]): Promise<CliRun> {
  return nixship([
    ...["fleet", "from-terraform", outputs, "--via", "ssh", "--base", baseFleet],
    ...["--known-hosts", knownHosts, "--out", path("nixship.json"), "--json", ...extra],
  ]);
}

/** A login as root with `identity`, host key checked against `knownHosts` (no shared connection). */
function sshAs(identity: string, knownHosts: string): Promise<CliRun> {
  return run("ssh", [
    ...["-F", "/dev/null", "-i", identity, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"],
    ...["-o", "StrictHostKeyChecking=yes", "-o", `UserKnownHostsFile=${knownHosts}`],
    ...["-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5"],
    `root@${address}`,
    "true",
  ]);
}

/** Ends nixship's shared ssh connection for this trust configuration, if there is one. */
async function closeSharedConnection(knownHosts: string): Promise<void> {
  const control = controlPathFor(sshConfig, knownHosts);
  await run("ssh", [
    ...["-F", sshConfig, "-o", `UserKnownHostsFile=${knownHosts}`],
    ...["-o", `ControlPath=${control}`, "-O", "exit", address],
  ]);
}

async function newKey(name: string, type: "ed25519" | "ecdsa"): Promise<string> {
  await runOk("ssh-keygen", ["-q", "-t", type, "-N", "", "-C", name, "-f", path(name)]);
  return path(name);
}

const publicLine = async (file: string) =>
  (await readFile(`${file}.pub`, "utf8")).trim().split(/\s+/).slice(0, 2).join(" ");

beforeAll(async () => {
  // Not under /tmp: the lab host has a private /tmp, and it must see these files.
  await mkdir("/var/tmp", { recursive: true });
  work = await mkdtemp("/var/tmp/nixship-tfk-test-");
  const up = await nixship(["lab", "up", "1", "--name", LAB, "--json"], {
    env: { NIXSHIP_LAB_DIR: path("labs") },
  });
  expect(up.code, up.stderr).toBe(0);
  lab = JSON.parse(up.stdout) as typeof lab;
  address = lab.hosts[0]?.address as string;
  sshdPid = lab.hosts[0]?.pid as number;
  storeUrl = `file://${join(lab.dir, "cache")}`;

  deployerKey = await newKey("deployer", "ed25519");
  adminKey = await newKey("admin", "ecdsa");
  await newKey("terraform-host-key", "ed25519");
  terraformKey = {
    // What tls_private_key's private_key_openssh holds: an OpenSSH private key, newline-ended.
    privateText: await readFile(path("terraform-host-key"), "utf8"),
    publicLine: await publicLine(path("terraform-host-key")),
  };

  // The stand-in systemctl: sshd.service is the lab's sshd, restarted as SIGHUP restarts it.
  await mkdir(path("shims"));
  await writeFile(
    path("shims/systemctl"),
    `#!/bin/sh
printf '%s\\n' "$*" >>${path("systemctl.log")}
case "$*" in
  "is-active --quiet sshd.service") exit 0 ;;
  "restart sshd.service") exec kill -HUP ${sshdPid} ;;
  *) echo "systemctl stand-in: not $*" >&2; exit 1 ;;
esac
`,
    { mode: 0o755 },
  );

  // The host as a fresh NixOS instance: an /etc/ssh of its own where sshd made its key at
  // first boot, and sshd configured as NixOS configures it; SIGHUP makes sshd read it.
  await mkdir(path("etc-ssh"));
  const sshdConfig = [
    `ListenAddress ${address}:22`,
    `HostKey ${HOST_KEY}`,
    "AuthorizedKeysFile .ssh/authorized_keys",
    "PidFile /run/sshd.pid",
    "PermitRootLogin prohibit-password",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "UsePAM no",
    "StrictModes yes",
    "PrintMotd no",
    "MaxStartups 200:30:400",
    "ClientAliveInterval 5",
    "ClientAliveCountMax 3",
  ].join("\n");
  await inHostOk(
    [
      "set -e",
      `mount --bind ${path("etc-ssh")} /etc/ssh`,
      `ssh-keygen -q -t ed25519 -N '' -C root@${HOST} -f ${HOST_KEY}`,
      `printf '%s\\n' '${sshdConfig.replaceAll("\n", "' '")}' >/run/nixship-lab/sshd_config`,
      `kill -HUP ${sshdPid}`,
    ].join("\n"),
  );
  bootKey = await publicLine(path("etc-ssh/ssh_host_ed25519_key"));
  await untilOffered(bootKey);

  // The deployer's ssh settings and a base fleet with the hosts' systems (the lab's).
  sshConfig = path("ssh_config");
  await writeFile(
    sshConfig,
    [
      "Host *",
      "  User root",
      `  IdentityFile ${deployerKey}`,
      "  IdentitiesOnly yes",
      "  GlobalKnownHostsFile /dev/null",
      "  BatchMode yes",
      "  ConnectTimeout 5",
      "",
    ].join("\n"),
  );
  const labFleet = JSON.parse(await readFile(join(lab.dir, "nixship.json"), "utf8")) as Record<
    string,
    unknown
  >;
  baseFleet = path("base.json");
  await writeFile(baseFleet, JSON.stringify({ ...labFleet, ssh: { configFile: sshConfig } }));
});

afterAll(async () => {
  for (const file of ["known_hosts", "known_hosts.wrong"]) await closeSharedConnection(path(file));
  await nixship(["lab", "down", "--name", LAB], { env: { NIXSHIP_LAB_DIR: path("labs") } });
  await rm(work, { recursive: true, force: true });
});

describe("the host module's SSH user-data on a lab host, then fleet from-terraform", () => {
  it("1. without a generated key: publishes the host's own key; from-terraform reads it from the store, and nixship reaches the host", async () => {
    const text = await userData({
      authorized: [await publicLine(deployerKey), `${await publicLine(adminKey)} admin@example`],
      publish: true,
    });
    // Nothing of the agent is in it.
    for (const agentWord of ["nixship agent", "agent.json", "systemd-run", "nix-store"]) {
      expect(text).not.toContain(agentWord);
    }
    const r = await runUserData(text, "first");
    expect(r.code, r.stdout + r.stderr).toBe(0);

    // The host's own key, in the store under its status prefix; sshd was left alone.
    const published = join(lab.dir, "cache", "status", "host-keys", `${HOST}.pub`);
    expect(await readFile(published, "utf8")).toBe(`${bootKey}\n`);
    expect(await systemctlCalls()).toEqual([]);
    // Root's keys: the block of the module, 0600 in a 0700 directory.
    expect(await inHostOk(`stat -c '%a' /root/.ssh ${AUTHORIZED}`)).toBe("700\n600\n");
    expect((await inHostOk(`cat ${AUTHORIZED}`)).split("\n")).toEqual([
      "# nixship host module: ssh_authorized_keys (rewritten at each boot)",
      await publicLine(deployerKey),
      `${await publicLine(adminKey)} admin@example`,
      "# end of the nixship host module's keys",
      "",
    ]);
    // Nothing of the agent on the host.
    const agentFiles = ["/etc/nixship/agent.json", "/nix/var/nix/gcroots/nixship-bootstrap"];
    expect(
      await inHostOk(`for f in ${agentFiles.join(" ")}; do [ -e "$f" ] && echo "$f"; done; true`),
    ).toBe("");

    // Idempotent: a second run (the next boot) rewrites nothing.
    const before = await inHostOk(`stat -c '%i %Y' ${AUTHORIZED}`);
    const storedBefore = await stat(published);
    const again = await runUserData(text, "second");
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect(await inHostOk(`stat -c '%i %Y' ${AUTHORIZED}`)).toBe(before);
    expect((await stat(published)).ino).toBe(storedBefore.ino);

    // The Terraform output has no key for the host: from-terraform takes the published one.
    const knownHosts = path("known_hosts");
    const made = await fromTerraform(await terraformOutput("tf-published", ""), knownHosts);
    expect(made.code, made.stderr).toBe(0);
    const report = JSON.parse(made.stdout) as {
      knownHosts: { written: boolean; hosts: { host: string; source: string; change: string }[] };
    };
    expect(report.knownHosts).toMatchObject({
      written: true,
      hosts: [{ host: HOST, source: `the store (status/host-keys/${HOST}.pub)`, change: "added" }],
    });
    expect(await readFile(knownHosts, "utf8")).toBe(`${address} ${bootKey} nixship:${HOST}\n`);
    // ssh itself finds it there.
    expect((await run("ssh-keygen", ["-F", address, "-f", knownHosts])).code).toBe(0);

    // Through nixship's ssh delivery (StrictHostKeyChecking=yes): the host answers.
    const status = await nixship(["status", "--fleet", path("nixship.json"), "--json"]);
    const rows = (JSON.parse(status.stdout) as { hosts: { host: string; reachable: boolean }[] })
      .hosts;
    expect(rows, status.stderr).toEqual([expect.objectContaining({ host: HOST, reachable: true })]);
    // And the admin's key logs in too.
    expect((await sshAs(adminKey, knownHosts)).code).toBe(0);
    await closeSharedConnection(knownHosts);
  });

  it("2. with a generated key: installs it and restarts sshd; from-terraform refuses the changed key until --replace-host-keys; a real deploy passes", async () => {
    // The admin's key is taken out of the list.
    const text = await userData({
      privateKey: terraformKey.privateText,
      publicKey: terraformKey.publicLine,
      authorized: [await publicLine(deployerKey)],
      publish: false,
    });
    const r = await runUserData(text, "generated");
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(`${r.stdout}${r.stderr}`).not.toContain("PRIVATE KEY");

    // The key, 0600 (its public half 0644), compared by digest: it is never printed.
    expect(await inHostOk(`stat -c '%a' ${HOST_KEY} ${HOST_KEY}.pub`)).toBe("600\n644\n");
    expect(sha256(await readFile(path("etc-ssh/ssh_host_ed25519_key"), "utf8"))).toBe(
      sha256(terraformKey.privateText),
    );
    expect(await readFile(path("etc-ssh/ssh_host_ed25519_key.pub"), "utf8")).toBe(
      `${terraformKey.publicLine}\n`,
    );
    expect(await systemctlCalls()).toEqual([
      "is-active --quiet sshd.service",
      "restart sshd.service",
    ]);
    await untilOffered(terraformKey.publicLine);
    // The admin can no longer log in (the key left the list).
    const knownHostsNow = path("known_hosts.now");
    await writeFile(knownHostsNow, `${address} ${terraformKey.publicLine}\n`);
    const admin = await sshAs(adminKey, knownHostsNow);
    expect(admin.code).toBe(255);
    expect(admin.stderr).toContain("Permission denied");

    // A second run: the key is in place, sshd is not restarted again.
    const again = await runUserData(text, "generated-again");
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect(await systemctlCalls()).toHaveLength(2);

    // from-terraform: known_hosts trusts the old key for the host's address, so the key from
    // Terraform is refused, and nothing is written; with --replace-host-keys it is taken.
    const knownHosts = path("known_hosts");
    const outputs = await terraformOutput("tf-generated", terraformKey.publicLine);
    const fleetBefore = await readFile(path("nixship.json"), "utf8");
    const refused = await fromTerraform(outputs, knownHosts);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`${HOST}: its SSH host key changed: ${knownHosts} line 1`);
    expect(refused.stderr).toContain("--replace-host-keys");
    expect(await readFile(knownHosts, "utf8")).toBe(`${address} ${bootKey} nixship:${HOST}\n`);
    expect(await readFile(path("nixship.json"), "utf8")).toBe(fleetBefore);

    const replaced = await fromTerraform(outputs, knownHosts, "--replace-host-keys");
    expect(replaced.code, replaced.stderr).toBe(0);
    expect(JSON.parse(replaced.stdout).knownHosts.hosts).toEqual([
      expect.objectContaining({
        host: HOST,
        source: "Terraform's output ssh_host_public_key",
        change: "replaced",
      }),
    ]);
    expect(await readFile(knownHosts, "utf8")).toBe(
      `${address} ${terraformKey.publicLine} nixship:${HOST}\n`,
    );

    // A real deploy over ssh, host keys checked strictly against that file.
    const deploy = await nixship(
      labDeployArgs(lab, path("nixship.json"), join(lab.dir, "cache.sec"), "--json"),
    );
    expect(deploy.code, deploy.stderr).toBe(0);
    const summary = deployEvents(deploy).find((e) => e.type === "summary") as
      | { ok: boolean }
      | undefined;
    expect(summary?.ok).toBe(true);
    expect(await servedBy(lab, HOST)).toBe("web-v1");
  });

  it("3. a wrong key in known_hosts: the deploy refuses the host", async () => {
    const wrong = await newKey("wrong-host-key", "ed25519");
    const knownHosts = path("known_hosts.wrong");
    const made = await fromTerraform(
      await terraformOutput("tf-wrong", await publicLine(wrong)),
      knownHosts,
    );
    expect(made.code, made.stderr).toBe(0);
    const deploy = await nixship(
      labDeployArgs(lab, path("nixship.json"), join(lab.dir, "cache.sec"), "--json"),
    );
    expect(deploy.code).toBe(1);
    const summary = deployEvents(deploy).find((e) => e.type === "summary") as
      | { ok: boolean; results: { host: string; outcome: Record<string, unknown> }[] }
      | undefined;
    expect(summary?.ok).toBe(false);
    expect(summary?.results).toEqual([
      expect.objectContaining({
        host: HOST,
        outcome: expect.objectContaining({
          status: "failed",
          phase: "connect",
          // A refused host key is no outage: its own failure, with the fix.
          message: expect.stringMatching(
            /^ssh: Host key verification failed: the host's key is not the one known for it \(it may be another machine/,
          ),
        }),
      }),
    ]);
  });
});
