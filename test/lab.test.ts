// The lab with real parts: namespaces, iproute2, OpenSSH's sshd with strict host key checking,
// and the real Nix inside each host. Also what `lab down` must leave: nothing.
import { once } from "node:events";
import { existsSync } from "node:fs";
import { chmod, mkdtemp, readdir, readFile, rm, rmdir, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { controlPathFor, controlPrefixFor } from "../src/delivery/ssh-transport.js";
import { sshProcessesMentioning } from "../src/lab/lab-down.js";
import { bridgeOwner, labTag } from "../src/lab/layout.js";
import { type CliRun, NIXSHIP_BIN, nixship, run, runOk } from "../support/cli.js";
import { buildFixtureClosure } from "./support/fixture-closure.js";

let labsDir: string;
const env = () => ({ NIXSHIP_LAB_DIR: labsDir });
const LAB = "lt";

interface UpJson {
  readonly number: number;
  readonly deployerAddress: string;
  readonly hosts: { name: string; address: string; netns: string; pid: number }[];
  readonly files: { sshConfig: string; knownHosts: string; clientKey: string };
}
let up: UpJson;

function ssh(host: string, command: string, config = up.files.sshConfig): Promise<CliRun> {
  return run("ssh", ["-F", config, host, command]);
}

/**
 * What of lab `number` in `labDir` is on the machine. Only its own: once it is down, a lab of
 * another test file may take the same number, with namespaces and links of that number.
 */
async function traces(
  number: number,
  labDir: string,
): Promise<{ netns: string[]; links: string[]; mounts: string[] }> {
  const netns = (await runOk("ip", ["netns", "list"]))
    .split("\n")
    .filter((l) => l.startsWith(`nxs${number}-${labTag(labDir)}-`));
  const all = JSON.parse(await runOk("ip", ["-j", "link", "show"])) as {
    ifname: string;
    ifalias?: string;
    master?: string;
  }[];
  const bridge = `nxs${number}`;
  const ours = (l: { ifname: string; ifalias?: string }) =>
    l.ifname === bridge && l.ifalias === bridgeOwner(labDir);
  // A veth on our bridge, or on none (left behind without it).
  const links = all
    .filter(
      (l) =>
        ours(l) ||
        (new RegExp(`^${bridge}v\\d+$`).test(l.ifname) &&
          (l.master === undefined || (l.master === bridge && all.some(ours)))),
    )
    .map((l) => l.ifname);
  const mounts = (await readFile("/proc/mounts", "utf8"))
    .split("\n")
    .filter((l) => l.includes(labsDir));
  return { netns, links, mounts };
}

/** False once the process is gone or a zombie (dead, waiting for init to reap it). */
async function running(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  return stat !== "" && stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
}

beforeAll(async () => {
  labsDir = await mkdtemp(join(tmpdir(), "nixship-lab-test-"));
  const r = await nixship(["lab", "up", "3", "--name", LAB, "--json"], { env: env() });
  expect(r.code, r.stderr).toBe(0);
  up = JSON.parse(r.stdout) as UpJson;
});

afterAll(async () => {
  await nixship(["lab", "down", "--name", LAB], { env: env() });
  await rm(labsDir, { recursive: true, force: true });
});

describe("lab hosts", () => {
  it("are three hosts, each with its own address, reachable over SSH with checked host keys", async () => {
    expect(up.hosts.map((h) => h.name)).toEqual([`${LAB}1`, `${LAB}2`, `${LAB}3`]);
    for (const host of up.hosts) {
      const r = await ssh(host.name, "ip -4 -o addr show dev eth0; ip route");
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain(`inet ${host.address}/24`);
      // Only the lab's own subnet: no default route, so nothing else can be reached.
      expect(r.stdout).not.toMatch(/^default/m);
    }
    const list = await nixship(["lab", "list", "--json"], { env: env() });
    const hosts = (JSON.parse(list.stdout) as { hosts: { name: string; running: boolean }[] })
      .hosts;
    expect(hosts.map((h) => [h.name, h.running])).toEqual(up.hosts.map((h) => [h.name, true]));
  });

  it("start with an empty /nix, their own /etc/nix, /run and /tmp", async () => {
    const r = await ssh(
      `${LAB}1`,
      "ls -A /nix; echo ---; cat /etc/nix/nix.conf; echo ---; touch /run/mine /tmp/mine; ls /run",
    );
    expect(r.code, r.stderr).toBe(0);
    const [nix, conf, run1] = r.stdout.split("---\n");
    expect(nix).toBe("");
    expect(conf).toContain("require-sigs = true");
    expect(conf).toContain("substituters =");
    expect(run1).toContain("mine");
    const other = await ssh(`${LAB}2`, "ls /run/mine /tmp/mine 2>&1; true");
    expect(other.stdout).toMatch(/No such file/);
    await expect(readFile("/run/mine")).rejects.toThrow(/ENOENT/);
  });

  it("do not share the deployer's store", async () => {
    const root = await buildFixtureClosure();
    const r = await ssh(
      `${LAB}1`,
      `nix-store --query --hash ${root} 2>&1; test -e ${root}; echo exists=$?`,
    );
    expect(r.stdout).toContain("exists=1");
  });

  it("run commands through 'lab exec', in their namespaces, with the exit code", async () => {
    const r = await nixship(["lab", "exec", `${LAB}2`, "--", "sh", "-c", "hostname -I; exit 7"], {
      env: env(),
    });
    expect(r.code).toBe(7);
    expect(r.stdout.trim()).toBe(up.hosts[1]?.address);
    const unknown = await nixship(["lab", "exec", "nosuch", "--", "true"], { env: env() });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("no lab host is called 'nosuch'");
    // --name, as lab ssh-config takes it, picks the lab.
    const named = await nixship(["lab", "exec", "--name", LAB, `${LAB}1`, "--", "true"], {
      env: env(),
    });
    expect(named.code, named.stderr).toBe(0);
    const elsewhere = await nixship(["lab", "exec", "--name", "other", `${LAB}1`, "--", "true"], {
      env: env(),
    });
    expect(elsewhere.code).toBe(2);
    expect(elsewhere.stderr).toContain(`no lab host is called '${LAB}1' in lab 'other'`);
    // A -h or --help after -- is the command's, not nixship's.
    const own = await nixship(
      ["lab", "exec", `${LAB}1`, "--", "sh", "-c", 'echo "$1"', "sh", "-h"],
      {
        env: env(),
      },
    );
    expect(own.code, own.stderr).toBe(0);
    expect(own.stdout).toBe("-h\n");
  });

  it("reach this machine at the address 'lab address' prints: its address on the lab's bridge", async () => {
    const r = await nixship(["lab", "address", "--name", LAB], { env: env() });
    expect(r.code, r.stderr).toBe(0);
    const address = r.stdout.trim();
    expect(r.stdout).toBe(`10.231.${up.number}.1\n`);
    expect(up.deployerAddress).toBe(address);
    const json = await nixship(["lab", "address", "--name", LAB, "--json"], { env: env() });
    // And what to give --serve-cache: any port on that address (a lab that is not pinned).
    expect(JSON.parse(json.stdout)).toEqual({
      lab: LAB,
      number: up.number,
      address,
      serve: `${address}:0`,
    });
    const serve = await nixship(["lab", "address", "--name", LAB, "--serve"], { env: env() });
    expect(serve.stdout).toBe(`${address}:0\n`);
    const bridge = await runOk("ip", ["-4", "-o", "addr", "show", "dev", `nxs${up.number}`]);
    expect(bridge).toContain(`inet ${address}/24`);
    // A server of this machine on that address answers the lab's hosts.
    const server = createServer((_req, res) => res.end("deployer\n"));
    server.listen(0, address);
    await once(server, "listening");
    try {
      const { port } = server.address() as AddressInfo;
      for (const host of up.hosts) {
        const fetched = await ssh(host.name, `curl -fsS --max-time 10 http://${address}:${port}/`);
        expect(fetched.stdout, fetched.stderr).toBe("deployer\n");
      }
    } finally {
      server.close();
      server.closeAllConnections();
    }
    const missing = await nixship(["lab", "address", "--name", "nolab"], { env: env() });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("no lab 'nolab'");
  });

  it("say 'the lab needs root' to another user, and name a lab that is not there", async () => {
    // As nobody: the labs directory (0700, root's) cannot be read. The checkout may lie where
    // nobody can read (a clone under /root): nobody runs it bound on a directory it can reach,
    // in a mount namespace of its own.
    const checkout = dirname(dirname(dirname(NIXSHIP_BIN)));
    const view = await mkdtemp(join(tmpdir(), "nixship-lab-nobody-"));
    await chmod(view, 0o755);
    const asNobody = await run(
      "unshare",
      [
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        'mount --bind "$1" "$2" && cd / && exec setpriv --reuid=65534 --regid=65534 --clear-groups "$3" "$2/$4" lab list',
        "sh",
        checkout,
        view,
        process.execPath,
        relative(checkout, NIXSHIP_BIN),
      ],
      { env: env() },
    ).finally(() => rmdir(view));
    expect(asNobody.stderr).not.toContain("Cannot find module");
    expect(asNobody.code, asNobody.stderr).toBe(2);
    expect(asNobody.stderr).toContain(`cannot read ${labsDir} (EACCES)`);
    expect(asNobody.stderr).toContain("hint: the lab needs root");
    expect(asNobody.stderr).not.toMatch(/bug in nixship/);
    // --path of a lab that does not exist is an error, not a path to nothing.
    const missing = await nixship(["lab", "ssh-config", "--name", "nosuch", "--path"], {
      env: env(),
    });
    expect(missing.code).toBe(2);
    expect(missing.stdout).toBe("");
    expect(missing.stderr).toContain("no lab 'nosuch'");
  });

  it("refuse a host whose key does not match known_hosts", async () => {
    // A known_hosts that gives lt1 the key of lt2: strict checking must refuse to connect.
    const known = await readFile(up.files.knownHosts, "utf8");
    const lines = known.trim().split("\n");
    const key2 = lines[1]?.split(" ").slice(1).join(" ");
    const forged = join(labsDir, "forged_known_hosts");
    await writeFile(forged, `${LAB}1,${up.hosts[0]?.address} ${key2}\n`);
    const config = join(labsDir, "forged_ssh_config");
    const original = await readFile(up.files.sshConfig, "utf8");
    await writeFile(
      config,
      original
        .replaceAll(up.files.knownHosts, forged)
        .replace(/ControlMaster auto/g, "ControlMaster no")
        .replace(/ControlPath .*/g, "ControlPath none"),
    );
    const r = await ssh(`${LAB}1`, "true", config);
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
  });

  it("is a no-op when brought up again with the same size, and refuses another size", async () => {
    const again = await nixship(["lab", "up", "3", "--name", LAB, "--json"], { env: env() });
    expect(again.code, again.stderr).toBe(0);
    expect((JSON.parse(again.stdout) as { alreadyUp: boolean }).alreadyUp).toBe(true);
    const other = await nixship(["lab", "up", "2", "--name", LAB], { env: env() });
    expect(other.code).toBe(2);
    expect(other.stderr).toContain(`lab '${LAB}' already exists with 3 hosts`);
  });
});

describe("lab down", () => {
  it("leaves no namespace, link, mount, process or file behind, and is idempotent", async () => {
    const name = "ld";
    const r = await nixship(["lab", "up", "2", "--name", name, "--json"], { env: env() });
    expect(r.code, r.stderr).toBe(0);
    const lab = JSON.parse(r.stdout) as UpJson;
    // A shared connection (ControlMaster) runs on the deployer's side once a host is used.
    expect((await ssh(`${name}1`, "true", lab.files.sshConfig)).code).toBe(0);
    // And one of a deployer's own, kept in its own control directory.
    const labDir = join(labsDir, name);
    const deployerPrefix = controlPrefixFor(lab.files.sshConfig, lab.files.knownHosts);
    const deployerMaster = await run("ssh", [
      "-F",
      lab.files.sshConfig,
      "-o",
      `ControlPath=${controlPathFor(lab.files.sshConfig, lab.files.knownHosts)}`,
      `${name}2`,
      "true",
    ]);
    expect(deployerMaster.code, deployerMaster.stderr).toBe(0);
    expect(await sshProcessesMentioning([`${labDir}/`, deployerPrefix])).toHaveLength(2);
    // A name that is no lab's: nothing removed, and the labs there named.
    const misnamed = await nixship(["lab", "down", "--name", "nosuch"], { env: env() });
    expect(misnamed.code).toBe(0);
    expect(misnamed.stderr).toMatch(
      new RegExp(`nothing to remove: no lab 'nosuch' in .*; the labs there: .*\\b${name}\\b`),
    );
    const before = await traces(lab.number, labDir);
    expect(before.netns).toHaveLength(2);
    expect(before.links).toHaveLength(3);
    const down = await nixship(["lab", "down", "--name", name], { env: env() });
    expect(down.code, down.stderr).toBe(0);
    expect(await traces(lab.number, labDir)).toEqual({ netns: [], links: [], mounts: [] });
    for (const host of lab.hosts) expect(await running(host.pid)).toBe(false);
    expect(await sshProcessesMentioning([`${labDir}/`, deployerPrefix])).toEqual([]);
    await expect(readFile(lab.files.sshConfig)).rejects.toThrow(/ENOENT/);
    const again = await nixship(["lab", "down", "--name", name], { env: env() });
    expect(again.code).toBe(0);
    expect(again.stderr).toContain("nothing to remove");
  });

  it("cleans up after a crash that lost the lab's state file", async () => {
    const name = "lc";
    const r = await nixship(["lab", "up", "2", "--name", name, "--json"], { env: env() });
    expect(r.code, r.stderr).toBe(0);
    const lab = JSON.parse(r.stdout) as UpJson;
    await rm(join(labsDir, name, "lab.json"));
    const down = await nixship(["lab", "down", "--name", name], { env: env() });
    expect(down.code, down.stderr).toBe(0);
    expect(await traces(lab.number, join(labsDir, name))).toEqual({
      netns: [],
      links: [],
      mounts: [],
    });
    for (const host of lab.hosts) expect(await running(host.pid)).toBe(false);
  });

  it("writes a fleet file for its hosts, and merges them into a user's fleet file", async () => {
    const own = JSON.parse(await readFile(join(labsDir, LAB, "nixship.json"), "utf8")) as {
      hosts: Record<string, { tags: string[]; address: string; sshHost: string }>;
      ssh: { configFile: string; knownHosts: string };
    };
    expect(Object.keys(own.hosts)).toEqual([`${LAB}1`, `${LAB}2`, `${LAB}3`]);
    expect(own.hosts[`${LAB}2`]).toMatchObject({
      address: up.hosts[1]?.address,
      sshHost: `${LAB}2`,
    });
    expect(own.ssh).toEqual({ configFile: up.files.sshConfig, knownHosts: up.files.knownHosts });
    const user = join(labsDir, "user-fleet.json");
    await writeFile(
      user,
      JSON.stringify({
        policy: { parallel: 3 },
        hosts: { db9: { address: "10.9.9.9", system: ".#db" } },
      }),
      { mode: 0o640 },
    );
    const name = "lm";
    const r = await nixship(["lab", "up", "2", "--name", name, "--fleet", user], { env: env() });
    expect(r.code, r.stderr).toBe(0);
    try {
      const merged = JSON.parse(await readFile(user, "utf8")) as {
        policy: unknown;
        hosts: Record<string, unknown>;
      };
      expect(Object.keys(merged.hosts)).toEqual(["db9", "lm1", "lm2"]);
      expect(merged.policy).toEqual({ parallel: 3 });
      // Replaced whole (no temporary file left beside it), keeping its mode.
      expect((await stat(user)).mode & 0o777).toBe(0o640);
      expect((await readdir(labsDir)).filter((f) => f.includes("user-fleet"))).toEqual([
        "user-fleet.json",
      ]);
    } finally {
      await nixship(["lab", "down", "--name", name], { env: env() });
    }
  });

  it("refuses a fleet file to merge into that is not JSON before it builds anything", async () => {
    const user = join(labsDir, "broken-fleet.json");
    await writeFile(user, '{"hosts": {');
    const r = await nixship(["lab", "up", "2", "--name", "lx", "--fleet", user], { env: env() });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${user}:1:12: invalid JSON`);
    expect(await readFile(user, "utf8")).toBe('{"hosts": {');
    expect(existsSync(join(labsDir, "lx"))).toBe(false);
  });

  it("rejects bad names and counts clearly", async () => {
    const bad = await nixship(["lab", "up", "0"], { env: env() });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("a lab has 1 to 200 hosts");
    const name = await nixship(["lab", "up", "2", "--name", "Bad_Name"], { env: env() });
    expect(name.code).toBe(2);
    expect(name.stderr).toContain("lab name 'Bad_Name'");
  });
});
