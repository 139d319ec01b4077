// `nixship fleet from-terraform --via ssh --known-hosts FILE`, through the built CLI.
// Each ssh host's key comes from Terraform's ssh_host_public_key, else from the store where
// the host published it (as agents and the host module's user-data do); a host with neither
// is named and left for later. FILE is merged, not clobbered (hashed lines of other hosts
// stay, written by the real ssh-keygen -H), replaced atomically through a symbolic link with
// its mode kept, left alone when nothing changes, and a changed key is refused (nothing
// written) unless --replace-host-keys. ssh-keygen -F finds what was written.
import {
  lstat,
  mkdir,
  mkdtemp,
  readFile,
  readlink,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadFleet } from "../src/fleet/load-fleet.js";
import { publishHostKey } from "../src/status/host-key-store.js";
import { openStore } from "../src/store/url.js";
import { type CliRun, NIXSHIP_BIN, nixship, run, runOk } from "../support/cli.js";
import { awsTerraformOutput, type OutputHost } from "./support/aws-terraform-output.js";

let work: string;
let storeUrl: string;
let cachePub: string;
/** web1's key from Terraform, web2's published to the store; web3 has none yet. */
let web1Key: string;
let web2Key: string;
let outputs: string;
let knownHosts: string;
let fleetFile: string;

const host = (ip: string, key: string): OutputHost => ({
  instance_id: "i-0123456789abcdef0",
  private_ip: ip,
  public_ip: "",
  ssh_host_public_key: key,
  tags: { Role: "web" },
});

async function newKey(name: string): Promise<string> {
  await runOk("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", join(work, name)]);
  return (await readFile(join(work, `${name}.pub`), "utf8")).split(" ").slice(0, 2).join(" ");
}

async function writeOutputs(file: string, web1: string): Promise<string> {
  const value = awsTerraformOutput(storeUrl, {
    web1: { ...host("10.42.1.11", web1), public_ip: "3.250.17.21" },
    web2: host("10.42.1.12", ""),
    web3: host("10.42.1.13", ""),
  });
  await writeFile(file, JSON.stringify(value));
  return file;
}

/** The files as the command line names them: relative, from the work directory. */
const KNOWN_HOSTS_ARG = "ssh/known_hosts";
const OUT_ARG = "deploy/nixship.json";

function fromTerraform(...extra: string[]): Promise<CliRun> {
  return run(
    process.execPath,
    [
      ...[NIXSHIP_BIN, "fleet", "from-terraform", outputs, "--via", "ssh", "--system", ".#{name}"],
      ...["--cache-key", cachePub, "--known-hosts", KNOWN_HOSTS_ARG, "--out", OUT_ARG, ...extra],
    ],
    { cwd: work },
  );
}

/** What ssh-keygen -F finds for a name in a file: its key lines. */
async function lookup(name: string, file = knownHosts): Promise<string[]> {
  const r = await run("ssh-keygen", ["-F", name, "-f", file]);
  return r.stdout.split("\n").filter((l) => l !== "" && !l.startsWith("#"));
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-tf-known-hosts-"));
  storeUrl = `file://${join(work, "store")}`;
  cachePub = (
    await nixship(["key", "generate", "--name", "tfk-cache-1", "--out", join(work, "cache.sec")])
  ).stdout.trim();
  web1Key = await newKey("web1");
  web2Key = await newKey("web2");
  const store = await openStore(storeUrl);
  await publishHostKey(store, "web2", web2Key).finally(() => store.close());
  outputs = await writeOutputs(join(work, "outputs.json"), web1Key);
  // known_hosts under ~/.ssh, a link to the file a dotfile manager keeps elsewhere, 0600.
  await mkdir(join(work, "dotfiles"));
  await mkdir(join(work, "ssh"));
  knownHosts = join(work, "ssh", "known_hosts");
  const other = await newKey("other");
  await writeFile(join(work, "dotfiles", "known_hosts"), `# mine\ngit.example.org ${other}\n`, {
    mode: 0o600,
  });
  // A hashed line, as HashKnownHosts writes them, of a host not in Terraform's output.
  await runOk("ssh-keygen", ["-H", "-f", join(work, "dotfiles", "known_hosts")]);
  await rm(join(work, "dotfiles", "known_hosts.old"));
  await symlink(join(work, "dotfiles", "known_hosts"), knownHosts);
  await mkdir(join(work, "deploy"));
  fleetFile = join(work, "deploy", "nixship.json");
});

afterAll(() => rm(work, { recursive: true, force: true }));

describe("fleet from-terraform --known-hosts", () => {
  it("writes Terraform's and the published keys, names the hosts that have none yet, and the fleet uses the file", async () => {
    const before = await readFile(knownHosts, "utf8");
    const r = await fromTerraform("--json");
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      out: OUT_ARG,
      via: "ssh",
      hosts: 3,
      notInTerraform: [],
      dropped: [],
      knownHosts: {
        file: KNOWN_HOSTS_ARG,
        written: true,
        hosts: [
          {
            host: "web1",
            names: ["3.250.17.21", "10.42.1.11"],
            fingerprint: expect.stringMatching(/^SHA256:/),
            source: "Terraform's output ssh_host_public_key",
            change: "added",
          },
          {
            host: "web2",
            names: ["10.42.1.12"],
            fingerprint: expect.stringMatching(/^SHA256:/),
            source: "the store (status/host-keys/web2.pub)",
            change: "added",
          },
        ],
        pending: [{ host: "web3", object: "status/host-keys/web3.pub" }],
      },
    });
    expect(r.stderr).toContain(`wrote ${KNOWN_HOSTS_ARG}: added web1, web2`);
    expect(r.stderr).toMatch(/note: web3 has no SSH host key yet: .* run this again then/);
    // Merged: the other lines stay as they were, the new ones follow.
    expect(await readFile(knownHosts, "utf8")).toBe(
      `${before}3.250.17.21,10.42.1.11 ${web1Key} nixship:web1\n10.42.1.12 ${web2Key} nixship:web2\n`,
    );
    // The fingerprints are ssh-keygen's.
    const printed = await runOk("ssh-keygen", ["-l", "-f", join(work, "web1.pub")]);
    expect(printed).toContain(JSON.parse(r.stdout).knownHosts.hosts[0].fingerprint);
    // Through the link: the file it names was replaced, mode kept; the link stays.
    expect((await lstat(knownHosts)).isSymbolicLink()).toBe(true);
    expect(await readlink(knownHosts)).toBe(join(work, "dotfiles", "known_hosts"));
    expect((await stat(knownHosts)).mode & 0o777).toBe(0o600);
    // ssh finds each host by each of its names.
    expect(await lookup("3.250.17.21")).toEqual([`3.250.17.21,10.42.1.11 ${web1Key} nixship:web1`]);
    expect(await lookup("10.42.1.11")).toHaveLength(1);
    expect(await lookup("10.42.1.12")).toEqual([`10.42.1.12 ${web2Key} nixship:web2`]);
    expect(await lookup("10.42.1.13")).toEqual([]);
    expect(await lookup("git.example.org")).toHaveLength(1);
    // The fleet's ssh.knownHosts is the file, relative to the fleet file's directory.
    expect(JSON.parse(await readFile(fleetFile, "utf8")).ssh.knownHosts).toBe("../ssh/known_hosts");
    expect((await loadFleet(fleetFile)).ssh.knownHosts).toBe(knownHosts);
  });

  it("leaves the file alone when nothing changed", async () => {
    const before = await stat(knownHosts);
    const r = await fromTerraform("--json");
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout).knownHosts;
    expect(report.written).toBe(false);
    expect(report.hosts.map((h: { change: string }) => h.change)).toEqual([
      "unchanged",
      "unchanged",
    ]);
    const after = await stat(knownHosts);
    expect([after.ino, after.mtimeMs]).toEqual([before.ino, before.mtimeMs]);
  });

  it("refuses a changed key and writes nothing; --replace-host-keys takes it", async () => {
    const replacement = await newKey("web1-replaced");
    outputs = await writeOutputs(join(work, "outputs-replaced.json"), replacement);
    const before = await readFile(knownHosts, "utf8");
    await writeFile(fleetFile, "{}");
    const refused = await fromTerraform("--json");
    expect(refused.code).toBe(1);
    const error = JSON.parse(refused.stdout.trim().split("\n").at(-1) as string).error;
    expect(error.code).toBe("host-key-changed");
    expect(error.message).toMatch(
      new RegExp(
        `^web1: its SSH host key changed: ${KNOWN_HOSTS_ARG} line \\d+ \\(3\\.250\\.17\\.21, 10\\.42\\.1\\.11\\) trusts SHA256:\\S+, Terraform's output ssh_host_public_key gives SHA256:`,
      ),
    );
    expect(error.hint).toContain("--replace-host-keys");
    expect(await readFile(knownHosts, "utf8")).toBe(before);
    expect(await readFile(fleetFile, "utf8")).toBe("{}");

    const replaced = await fromTerraform("--replace-host-keys");
    expect(replaced.code, replaced.stderr).toBe(0);
    expect(replaced.stderr).toContain("replaced web1");
    expect(await lookup("3.250.17.21")).toEqual([
      `3.250.17.21,10.42.1.11 ${replacement} nixship:web1`,
    ]);
    expect(await lookup("git.example.org")).toHaveLength(1);
  });

  it("refuses a changed key in a hashed line too", async () => {
    const hashedFile = join(work, "hashed_known_hosts");
    await writeFile(hashedFile, `10.42.1.12 ${web1Key}\n`);
    await runOk("ssh-keygen", ["-H", "-f", hashedFile]);
    const r = await nixship([
      ...["fleet", "from-terraform", outputs, "--via", "ssh", "--system", ".#{name}"],
      ...["--cache-key", cachePub, "--known-hosts", hashedFile],
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`web2: its SSH host key changed: ${hashedFile} line 1 (10.42.1.12)`);
    expect(r.stdout).toBe("");
  });

  it("writes no known_hosts when the fleet file cannot be written after it", async () => {
    const file = join(work, "untouched_known_hosts");
    await writeFile(file, "git.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO3n\n");
    const before = await readFile(file, "utf8");
    const out = join(work, "no-such-dir", "nixship.json");
    const r = await nixship([
      ...["fleet", "from-terraform", outputs, "--via", "ssh", "--system", ".#{name}"],
      ...["--cache-key", cachePub, "--known-hosts", file, "--out", out],
    ]);
    // A directory that is not there is the path's fault: bad input, said in words.
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`cannot write ${out}: no such file or directory (ENOENT)`);
    expect(await readFile(file, "utf8")).toBe(before);
  });

  it("names an object that holds no usable key as such, not as a key to come", async () => {
    const objects = join(work, "store", "status", "host-keys");
    await mkdir(objects, { recursive: true });
    await writeFile(join(objects, "web3.pub"), "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC\n");
    try {
      const file = join(work, "unusable_known_hosts");
      const r = await nixship([
        ...["fleet", "from-terraform", outputs, "--via", "ssh", "--system", ".#{name}"],
        ...["--cache-key", cachePub, "--known-hosts", file, "--json"],
      ]);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).knownHosts.pending).toEqual([
        {
          host: "web3",
          object: "status/host-keys/web3.pub",
          unusable: expect.stringContaining("ssh-ed25519"),
        },
      ]);
      expect(r.stderr).toMatch(
        /note: web3 has no usable SSH host key: .*status\/host-keys\/web3\.pub in \S+ holds none \(.*\); the host publishes its own ssh-ed25519 key there/,
      );
      expect(r.stderr).not.toContain("web3 has no SSH host key yet");
    } finally {
      await rm(join(objects, "web3.pub"));
    }
  });

  it("is for ssh hosts only, and says so in its help", async () => {
    const r = await nixship([
      ...["fleet", "from-terraform", outputs, "--system", ".#{name}", "--cache-key", cachePub],
      ...["--known-hosts", knownHosts],
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--known-hosts is for --via ssh");
    const help = await nixship(["fleet", "from-terraform", "--help"]);
    for (const flag of ["--known-hosts FILE", "--replace-host-keys", "--json"]) {
      expect(help.stdout).toContain(flag);
    }
  });
});
