// `nixship init --from colmena|deploy-rs` with the real Nix: colmena's tutorial hive and
// deploy-rs's README flake (their nixpkgs the stand-in) become fleets, as a fleet file and in
// the flake, whose hosts build the very systems the hive's nodes and deploy-rs's profiles are;
// the report names what became of each option; bad input is named by its attribute (exit 2).
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, realpath, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CliRun, NIXSHIP_BIN, nixship, run } from "../support/cli.js";
import { TEST_NIX_CONFIG } from "../support/nix-config.js";
import {
  addOutput,
  KEYS_EXAMPLE,
  STAND_IN_NIXPKGS,
  tutorialHive,
  writeDeployRsFlake,
  writeFlakeWith,
} from "./support/foreign-flakes.js";

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-init-from-"));
});
afterAll(() => rm(work, { recursive: true, force: true }));

interface InitJson {
  hosts: string[];
  fleet: string;
  outputLine: string | null;
  report: { option: string; outcome: string; text: string; nodes: string[] }[];
  next: string[];
}

/** A fresh directory with a flake (of `outputs`) and, maybe, a hive.nix. */
async function flakeDir(outputs: string, hive?: string): Promise<string> {
  const dir = await mkdtemp(join(work, "flake-"));
  await writeFlakeWith(dir, outputs);
  if (hive !== undefined) await writeFile(join(dir, "hive.nix"), hive);
  return dir;
}

const init = (dir: string, ...args: string[]): Promise<CliRun> =>
  nixship(["init", dir, "--key-out", join(dir, "..", `${dir.split("/").pop()}.sec`), ...args]);

/** The systems `nixship build` gives each host of a fleet. */
async function built(fleet: string): Promise<Record<string, string>> {
  const r = await nixship(["build", "--fleet", fleet, "--json"]);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { hosts: Record<string, string> }).hosts;
}

/** An admin's age recipient, for the placeholder a conversion leaves. */
const ADMIN_AGE = "age13lla8hn7p8ua5ud9858j0rcgxdj2kppja6nezzv9v03e000qx42sp7nezk";

const HIVE = { hostA: "host-a", hostB: "host-b.mydomain.tld", hostBPort: 1234 };

describe("init --from colmena", () => {
  it("makes the tutorial's hive.nix a fleet file whose hosts build the nodes' systems", async () => {
    const dir = await flakeDir("", tutorialHive({ ...HIVE, extraA: KEYS_EXAMPLE }));
    const r = await init(dir, "--from", "colmena", "--format", "json", "--json");
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as InitJson;
    expect(out.hosts).toEqual(["host-a", "host-b"]);
    const fleet = JSON.parse(await readFile(out.fleet, "utf8"));
    expect(fleet.hosts).toEqual({
      "host-a": { address: "host-a", system: ".#nixshipHive.nodes.host-a" },
      "host-b": {
        address: "host-b.mydomain.tld",
        // Its port is in a block of its own, which ssh finds by its name.
        sshHost: "host-b",
        tags: ["web", "infra-lax"],
        system: ".#nixshipHive.nodes.host-b",
      },
    });
    expect(fleet.secrets.entries).toEqual({
      "host-a-db-password": { hosts: "host-a", mode: "0600", path: "/run/keys/db-password" },
      // A keyCommand's key: its entry, for its command's output to be set by hand.
      "host-a-acme-credentials.secret": {
        hosts: "host-a",
        owner: "acme",
        group: "nginx",
        mode: "0640",
        path: "/run/keys/acme-credentials.secret",
      },
    });
    const fates = Object.fromEntries(out.report.map((e) => [`${e.outcome} ${e.option}`, e.nodes]));
    expect(fates).toMatchObject({
      "carried deployment.targetHost": ["host-a", "host-b"],
      "carried deployment.tags": ["host-b"],
      "mapped deployment.targetPort": ["host-b"],
      "left deployment.replaceUnknownProfiles": ["host-b"],
      "left deployment.keys.<name>.keyCommand": ["host-a:acme-credentials.secret"],
      "mapped deployment.keys.<name>.keyFile": ["host-a:db-password"],
      "carried meta.nixpkgs": [],
      "carried meta.nodeNixpkgs": ["host-b"],
      "carried defaults": [],
    });
    expect(out.next).toContain(
      `nixship secrets set host-a-db-password --from /root/db-password --fleet ${out.fleet}`,
    );
    // The fleet is refused until an admin is named; without the secrets, its hosts build.
    expect(out.outputLine).toBe("nixshipHive = nixship.lib.readColmenaHive (import ./hive.nix);");
    await addOutput(dir, out.outputLine as string);
    delete fleet.secrets;
    await writeFile(out.fleet, JSON.stringify(fleet));
    const systems = await built(out.fleet);
    // Each node's own system (the stand-in names it by networking.hostName: NixOS's default
    // is "nixos").
    expect(systems["host-a"]).toMatch(/-example-web-system-host-a$/);
    expect(systems["host-b"]).toMatch(/-example-web-system-nixos$/);
  });

  it("keeps what colmena's ssh_config gave a node's address: its alias's HostName, Port and ProxyJump", async () => {
    // host-a at targetHost web1-alias, a Host of the ssh_config colmena was given; with an
    // identity of its own, it gets a block, found by its name, which that Host never matches.
    const dir = await flakeDir(
      "",
      tutorialHive({
        ...HIVE,
        hostA: "web1-alias",
        extraA: '    deployment.sshOptions = [ "-i" "/k/deploy" ];',
      }),
    );
    const config = join(dir, "..", `${dir.split("/").pop()}-ssh_config`);
    await writeFile(
      config,
      "Host web1-alias\n  HostName 192.0.2.7\n  Port 2201\n  ProxyJump bastion.example\n",
    );
    const r = await nixship(
      [
        "init",
        dir,
        "--key-out",
        join(dir, "..", `${dir.split("/").pop()}.sec`),
        "--from",
        "colmena",
        "--format",
        "json",
        "--json",
      ],
      { env: { SSH_CONFIG_FILE: config } },
    );
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as InitJson;
    expect(out.report.find((e) => e.option === "ssh_config")).toMatchObject({
      outcome: "carried",
      nodes: ["host-a"],
    });
    // As ssh reads the fleet's ssh_config (nixship runs ssh with -F): what colmena reached.
    const g = await run("ssh", ["-F", join(dir, "nixship-ssh_config"), "-G", "host-a"]);
    expect(g.code, g.stderr).toBe(0);
    const lines = g.stdout.split("\n");
    expect(lines).toEqual(
      expect.arrayContaining(["hostname 192.0.2.7", "port 2201", "proxyjump bastion.example"]),
    );
    expect(lines.find((l) => l.startsWith("identityfile "))).toBe("identityfile /k/deploy");
  });

  it("writes the same fleet in the flake, built to the same systems", async () => {
    const hive = tutorialHive(HIVE);
    const asFile = await flakeDir("", hive);
    const file = JSON.parse(
      (await init(asFile, "--from", "colmena", "--format", "json", "--json")).stdout,
    ) as InitJson;
    await addOutput(asFile, file.outputLine as string);
    const dir = await flakeDir("", hive);
    const r = await init(dir, "--from", "colmena", "--json");
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as InitJson;
    expect(out.outputLine).toBe(
      "nixship = import ./nixship.nix { inherit self; nixshipLib = nixship.lib; };",
    );
    await addOutput(dir, out.outputLine as string);
    expect(await built(`${dir}#nixship`)).toEqual(await built(file.fleet));
  });

  it("reads a flake's colmena output (the raw hive) as a hive", async () => {
    const hive = tutorialHive(HIVE);
    const dir = await flakeDir(`      colmena = import ./hive-source.nix;`);
    await writeFile(join(dir, "hive-source.nix"), hive);
    const r = await init(dir, "--from", "colmena", "--json");
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as InitJson;
    expect(await readFile(out.fleet, "utf8")).toContain(
      "hive = nixshipLib.readColmenaHive self.colmena;",
    );
    await addOutput(dir, out.outputLine as string);
    expect(Object.keys(await built(`${dir}#nixship`))).toEqual(["host-a", "host-b"]);
  });

  it("says that a keyFile the flake holds is in the store already, readable by every user", async () => {
    const hive = `{
  meta.nixpkgs = import ${STAND_IN_NIXPKGS};
  web = { networking.hostName = "web"; deployment.targetHost = "10.0.0.1";
    deployment.keys.db = { keyFile = ./secrets/db-password; }; };
}
`;
    const dir = await flakeDir("      colmena = import ./hive-source.nix;");
    await writeFile(join(dir, "hive-source.nix"), hive);
    await mkdir(join(dir, "secrets"));
    await writeFile(join(dir, "secrets", "db-password"), "s3cret\n");
    const r = await init(dir, "--from", "colmena", "--format", "json", "--json");
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as InitJson;
    // Named as the person has it, in the flake's directory; its copy in the store, said so.
    expect(out.report).toContainEqual(
      expect.objectContaining({
        outcome: "left",
        text: `${dir}/secrets/db-password: the flake holds this secret, and Nix copied it into the store with the flake, where every user of the machine can read it: rotate it, and keep its file out of the flake`,
      }),
    );
    expect(out.next).toContainEqual(
      expect.stringMatching(
        new RegExp(`^nixship secrets set web-db --from ${dir}/secrets/db-password --fleet `),
      ),
    );
    expect(r.stdout).not.toContain("s3cret");
  });

  it("names a machinesFile the flake holds where it is in the flake's directory, not in the store", async () => {
    const hive = `{
  meta.nixpkgs = import ${STAND_IN_NIXPKGS};
  meta.machinesFile = ./machines;
  web = { networking.hostName = "web"; deployment.targetHost = "10.0.0.1"; };
}
`;
    const dir = await flakeDir("      colmena = import ./hive-source.nix;");
    await writeFile(join(dir, "hive-source.nix"), hive);
    await writeFile(join(dir, "machines"), "ssh://builder x86_64-linux\n");
    const r = await init(dir, "--from", "colmena", "--format", "json", "--json");
    expect(r.code, r.stderr).toBe(0);
    const fleet = JSON.parse(await readFile((JSON.parse(r.stdout) as InitJson).fleet, "utf8"));
    // Edits to it count, and a garbage collection leaves it, as for colmena, which reads it anew.
    expect(fleet.build).toEqual({ builders: `@${dir}/machines` });
  });

  it("in a git flake, reads a keyFile git does not track from the flake's directory, and says nothing copied it", async () => {
    const dir = await flakeDir("");
    await writeFile(
      join(dir, "hive.nix"),
      `{
  meta.nixpkgs = import ${STAND_IN_NIXPKGS};
  web = { networking.hostName = "web"; deployment.targetHost = "10.0.0.1";
    deployment.keys.db = { keyFile = ./db-password; };
    deployment.keys.pw = { text = "in-the-hive"; destDir = "/var/lib/app"; }; };
}
`,
    );
    await writeFile(join(dir, "db-password"), "s3cret\n");
    await run("git", ["-C", dir, "init", "-q"]);
    await run("git", ["-C", dir, "add", "flake.nix", "hive.nix"]);
    const r = await init(dir, "--from", "colmena", "--format", "json", "--json");
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as InitJson;
    const fleetFlag = ` --fleet ${join(dir, "nixship.json")}`;
    expect(out.next).toContain(`nixship secrets set web-db --from ${dir}/db-password${fleetFlag}`);
    expect(JSON.stringify(out.report)).not.toContain("-source/");
    expect(out.report.filter((e) => e.option === "deployment.keys.<name>.keyFile")).toEqual([
      expect.objectContaining({ outcome: "mapped" }),
    ]);
    // A key left behind (not under /run) still has its text in the hive, and is told so.
    expect(out.report).toContainEqual(
      expect.objectContaining({
        option: "deployment.keys.<name>.text",
        outcome: "left",
        nodes: ["web:pw"],
        text: expect.stringContaining("delete the text from the hive, and rotate it"),
      }),
    );
    expect(r.stdout).not.toContain("s3cret");
    expect(r.stdout).not.toContain("in-the-hive");
  });

  it("in a git flake that does not track hive.nix, says to add it, as the fleet could not import it (exit 2)", async () => {
    const dir = await flakeDir("");
    await run("git", ["-C", dir, "init", "-q"]);
    await run("git", ["-C", dir, "add", "flake.nix"]);
    await writeFile(join(dir, "hive.nix"), tutorialHive(HIVE));
    const r = await init(dir, "--from", "colmena", "--json");
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stdout)).toMatchObject({
      error: {
        code: "hive-not-in-flake",
        message: expect.stringContaining(
          `${join(dir, "hive.nix")} is not part of the flake as Nix reads it`,
        ),
        hint: `git -C ${dir} add hive.nix (and the files it imports), then run init again`,
      },
    });
    expect(existsSync(join(dir, "nixship.nix"))).toBe(false);
    // Tracked, it converts.
    await run("git", ["-C", dir, "add", "hive.nix"]);
    const tracked = await init(dir, "--from", "colmena", "--json");
    expect(tracked.code, tracked.stderr).toBe(0);
  });

  it("in a flake in a subdirectory of a git repository, reads hive.nix and names a keyFile where it is", async () => {
    const repo = await mkdtemp(join(work, "repo-"));
    const dir = join(repo, "ops");
    await mkdir(dir);
    await writeFlakeWith(dir, "");
    await writeFile(
      join(dir, "hive.nix"),
      `{
  meta.nixpkgs = import ${STAND_IN_NIXPKGS};
  web = { networking.hostName = "web"; deployment.targetHost = "10.0.0.1";
    deployment.keys.db = { keyFile = ./db-password; }; };
}
`,
    );
    await writeFile(join(dir, "db-password"), "s3cret\n");
    await run("git", ["-C", repo, "init", "-q"]);
    await run("git", ["-C", repo, "add", "ops/flake.nix", "ops/hive.nix", "ops/db-password"]);
    const r = await init(dir, "--from", "colmena", "--format", "json", "--json");
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as InitJson;
    expect(out.hosts).toEqual(["web"]);
    expect(out.next).toContainEqual(
      expect.stringMatching(new RegExp(`^nixship secrets set web-db --from ${dir}/db-password `)),
    );
    expect(out.report).toContainEqual(
      expect.objectContaining({
        text: expect.stringMatching(
          new RegExp(`^${dir}/db-password: the flake holds this secret, and Nix copied it`),
        ),
      }),
    );
  });

  it("in a git flake that does not track a file the hive imports, says to add that file (exit 2)", async () => {
    const dir = await flakeDir("");
    await writeFile(
      join(dir, "hive.nix"),
      `{ meta.nixpkgs = import ${STAND_IN_NIXPKGS}; web-1 = import ./web-1.nix; }\n`,
    );
    await writeFile(join(dir, "web-1.nix"), '{ deployment.targetHost = "10.0.0.1"; }\n');
    await run("git", ["-C", dir, "init", "-q"]);
    await run("git", ["-C", dir, "add", "flake.nix", "hive.nix"]);
    const r = await init(dir, "--from", "colmena", "--json");
    expect(r.code, r.stderr).toBe(2);
    const top = await realpath(dir);
    expect(JSON.parse(r.stdout)).toMatchObject({
      error: {
        code: "init-eval-failed",
        hint: `${top}/web-1.nix is there, but the git repository ${top} does not track it, and Nix reads a flake there from the files git tracks: 'git -C ${top} add web-1.nix' (a commit is not needed), then run it again`,
      },
    });
    await run("git", ["-C", dir, "add", "web-1.nix"]);
    const tracked = await init(dir, "--from", "colmena", "--json");
    expect(tracked.code, tracked.stderr).toBe(0);
  });

  it("leaves out a node without a targetHost (apply-local only), as colmena apply does, and converts the rest", async () => {
    // colmena's apply-local example: a node only deployed by apply-local, beside a server.
    const local = await flakeDir(
      "",
      tutorialHive({
        ...HIVE,
        extraB: "    deployment.allowLocalDeployment = true;\n    deployment.targetHost = null;",
      }).replace('    deployment.targetHost = "host-b.mydomain.tld";\n', ""),
    );
    const r = await init(local, "--from", "colmena", "--format", "json", "--json");
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as InitJson;
    expect(out.hosts).toEqual(["host-a"]);
    expect(Object.keys(JSON.parse(await readFile(out.fleet, "utf8")).hosts)).toEqual(["host-a"]);
    expect(out.report).toContainEqual(
      expect.objectContaining({
        option: "deployment.targetHost",
        outcome: "left",
        text: expect.stringMatching(/^null: apply-local only; colmena apply skips it too/),
        nodes: ["host-b"],
      }),
    );
  });

  it("says first to put nixship's host module on nodes it reaches through sudo, with colmena", async () => {
    const dir = await flakeDir(
      "",
      tutorialHive({ ...HIVE, extraA: '    deployment.targetUser = "admin";' }),
    );
    const r = await init(dir, "--from", "colmena", "--format", "json", "--json");
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as InitJson).next.slice(0, 2)).toEqual([
      "# first add nixship.nixosModules.host to the system of host-a, then activate it once with colmena:",
      `colmena -f ${join(dir, "hive.nix")} apply --on host-a`,
    ]);
  });

  it("names an error in a node, and a flake without a hive (exit 2)", async () => {
    const thrown = await flakeDir(
      "",
      tutorialHive(HIVE).replace('[ "web" "infra-lax" ]', 'throw "tags not decided yet"'),
    );
    const t = await init(thrown, "--from", "colmena");
    expect(t.code).toBe(2);
    expect(t.stderr).toContain(
      `${join(thrown, "flake.nix")}: host-b.deployment.tags: tags not decided yet`,
    );
    const none = await flakeDir("      packages = { };");
    const n = await init(none, "--from", "colmena");
    expect(n.code).toBe(2);
    expect(n.stderr).toContain("no colmena hive: the flake has no colmenaHive or colmena output");
    // Nothing was written.
    await expect(readFile(join(none, "nixship.nix"))).rejects.toThrow();
  });
});

describe("init --from colmena: keys", () => {
  it("gives keys whose names would make one secret names of their own, and lets nodes keep their keys at one path", async () => {
    const hive = `{
  meta.nixpkgs = import ${STAND_IN_NIXPKGS};
  web = { networking.hostName = "web"; deployment.targetHost = "10.0.0.1";
    deployment.keys."a-b" = { text = "x"; }; deployment.keys.tls = { keyFile = "/secrets/web-tls"; }; };
  web-a = { networking.hostName = "web-a"; deployment.targetHost = "10.0.0.2";
    deployment.keys.b = { keyFile = "/secrets/weba-b"; }; deployment.keys.tls = { keyFile = "/secrets/weba-tls"; }; };
}
`;
    const dir = await flakeDir("      packages = { };", hive);
    const r = await init(dir, "--from", "colmena", "--format", "json", "--json");
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as InitJson;
    const fleet = JSON.parse(await readFile(out.fleet, "utf8")) as {
      secrets: { entries: Record<string, { hosts: string; path: string }> };
    };
    expect(
      Object.fromEntries(
        Object.entries(fleet.secrets.entries).map(([n, e]) => [n, [e.hosts, e.path]]),
      ),
    ).toEqual({
      "web-a-b": ["web", "/run/keys/a-b"],
      "web-tls": ["web", "/run/keys/tls"],
      "web-a-b-2": ["web-a", "/run/keys/b"],
      "web-a-tls": ["web-a", "/run/keys/tls"],
    });
    expect(out.next).toContain(
      `nixship secrets set web-a-b-2 --from /secrets/weba-b --fleet ${out.fleet}`,
    );
    // The fleet loads: one path for two keys of two nodes is no clash.
    await writeFile(
      out.fleet,
      JSON.stringify({
        ...JSON.parse(await readFile(out.fleet, "utf8")),
        secrets: { ...fleet.secrets, admins: [ADMIN_AGE] },
      }),
    );
    const list = await nixship(["secrets", "list", "--fleet", out.fleet, "--json"]);
    expect(list.stderr).not.toMatch(/also the path/);
    expect(JSON.parse(list.stdout).secrets).toHaveLength(4);
  });
});

describe("init --from colmena: what the fleet cannot hold", () => {
  it("is named, and nothing is written (exit 2)", async () => {
    const hive = `{
  meta.nixpkgs = import ${STAND_IN_NIXPKGS};
  web = { networking.hostName = "web"; deployment.targetHost = "10.0.0.1";
    deployment.tags = [ "web" "web" ]; deployment.keys.perm = { text = "x"; permissions = "u=rw"; }; };
}
`;
    const dir = await flakeDir("      packages = { };", hive);
    const key = join(dir, "..", `${dir.split("/").pop()}.sec`);
    const r = await init(dir, "--from", "colmena", "--format", "json");
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`the fleet converted from ${dir} would not load:`);
    // A tag the hive repeats is one tag: no problem of the fleet.
    expect(r.stderr).not.toContain("repeats the tag");
    expect(r.stderr).toContain("  secrets.entries.web-perm.mode:");
    expect(r.stderr).toContain("nothing was written");
    // The admin init leaves to fill in is no problem of the conversion.
    expect(r.stderr).not.toContain("admins");
    await expect(readFile(join(dir, "nixship.json"))).rejects.toThrow();
    await expect(readFile(key)).rejects.toThrow();
  });

  it("a fleet file's place that is no file is refused before the key is made (exit 2)", async () => {
    const dir = await flakeDir("", tutorialHive(HIVE));
    await mkdir(join(dir, "nixship.json"));
    const key = join(dir, "..", `${dir.split("/").pop()}.sec`);
    const r = await init(dir, "--from", "colmena", "--format", "json", "--force");
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      `${join(dir, "nixship.json")} is a directory: nixship writes only regular files`,
    );
    await expect(readFile(key)).rejects.toThrow();
  });

  it("a flake's directory on a read-only file system: refused before the key and the cache are made (exit 2)", async () => {
    const dir = await flakeDir("", tutorialHive(HIVE));
    const key = join(work, `${dir.split("/").pop()}-ro.sec`);
    const cache = join(work, `${dir.split("/").pop()}-ro-cache`);
    // root writes through file modes: a read-only bind mount, in a mount namespace of its own.
    const r = await run(
      "unshare",
      [
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        'mount --bind -o ro "$1" "$1" && exec "$2" "$3" init "$1" --from colmena --format json --key-out "$4" --cache "file://$5"',
        "sh",
        dir,
        process.execPath,
        NIXSHIP_BIN,
        key,
        cache,
      ],
      { env: { ...process.env, NIX_CONFIG: TEST_NIX_CONFIG } },
    );
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain(`cannot write ${join(dir, "nixship.json")}: `);
    expect(r.stderr).toMatch(/read-only/);
    expect(existsSync(key)).toBe(false);
    expect(existsSync(cache)).toBe(false);
  });
});

describe("a directory whose name holds Nix syntax", () => {
  it("is the directory it names, never Nix code: a decoy where that code points is not read", async () => {
    const parent = await mkdtemp(join(work, "odd-"));
    // Evaluated, "x$" + "{toString 1}" would be "x1": the decoy.
    const decoy = join(parent, "x1");
    await mkdir(decoy);
    await writeFlakeWith(decoy, "      packages = { };");
    await writeFile(join(decoy, "hive.nix"), tutorialHive({ ...HIVE, hostA: "decoy" }));
    const dir = join(parent, "x$" + "{toString 1}");
    await mkdir(dir);
    await writeFlakeWith(dir, "      packages = { };");
    await writeFile(join(dir, "hive.nix"), tutorialHive(HIVE));
    const r = await init(dir, "--from", "colmena", "--format", "json", "--json");
    expect(r.stdout + r.stderr).not.toContain("decoy");
    // Nix takes no such flake reference: said as its error, naming the directory.
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`'path:${dir}' is not a valid URL`);
  });
});

describe("init --from deploy-rs", () => {
  it("makes the README's flake a fleet whose hosts build the configurations the profiles activate", async () => {
    const dir = await mkdtemp(join(work, "deploy-rs-"));
    await writeDeployRsFlake(dir, {
      "some-random-system": {
        hostname: "some-random-system",
        extra: '        sshOpts = [ "-p" "2121" ];\n        magicRollback = false;',
      },
    });
    const r = await init(dir, "--from", "deploy-rs", "--format", "json", "--json");
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as InitJson;
    const fleet = JSON.parse(await readFile(out.fleet, "utf8"));
    expect(fleet.hosts).toEqual({
      "some-random-system": {
        address: "some-random-system",
        system: ".#nixosConfigurations.some-random-system",
      },
    });
    expect(fleet.policies).toEqual({ "some-random-system": { confirmTimeout: 0 } });
    const fates = Object.fromEntries(out.report.map((e) => [e.option, e.outcome]));
    expect(fates).toMatchObject({
      hostname: "carried",
      sshOpts: "mapped",
      magicRollback: "mapped",
    });
    expect((await built(out.fleet))["some-random-system"]).toMatch(
      /-example-web-system-some-random-system$/,
    );
    // In the flake, the same.
    const other = await mkdtemp(join(work, "deploy-rs-"));
    await writeDeployRsFlake(other, { "some-random-system": { hostname: "some-random-system" } });
    const nix = JSON.parse((await init(other, "--from", "deploy-rs", "--json")).stdout) as InitJson;
    expect(nix.outputLine).toBe("nixship = import ./nixship.nix { inherit self; };");
    await addOutput(other, nix.outputLine as string);
    expect(await built(`${other}#nixship`)).toEqual(await built(out.fleet));
  });

  it("appends the deploy's sshOpts to the node's, as deploy-rs does", async () => {
    const dir = await mkdtemp(join(work, "deploy-rs-"));
    await writeDeployRsFlake(dir, {
      web: { hostname: "web.example", extra: '        sshOpts = [ "-p" "2222" ];' },
    });
    await addOutput(dir, 'deploy.sshOpts = [ "-i" "/keys/id" ];');
    const r = await init(dir, "--from", "deploy-rs", "--format", "json", "--json");
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as InitJson & { written: string[] };
    const ssh = out.report.find((e) => e.option === "sshOpts");
    expect(ssh?.text).toMatch(/: Port 2222, IdentityFile \/keys\/id$/);
    // The block is in the fleet's own ssh_config, written beside it: the fleet works as written.
    const sshConfig = join(dir, "nixship-ssh_config");
    expect(out.written).toContain(sshConfig);
    expect(out.next).toContain(
      `# the hosts' ssh settings are in ${sshConfig}, the fleet's ssh.configFile: doctor tries them`,
    );
    const fleet = JSON.parse(await readFile(out.fleet, "utf8"));
    expect(fleet.ssh).toEqual({ configFile: "./nixship-ssh_config" });
    expect(fleet.hosts.web.sshHost).toBe("web");
    // As ssh reads it (nixship runs ssh with -F): web is web.example on port 2222, with its key;
    // another host still gets what ~/.ssh/config gives it.
    const home = await mkdtemp(join(work, "home-"));
    await mkdir(join(home, ".ssh"));
    await writeFile(join(home, ".ssh", "config"), "Host elsewhere\n  Port 2299\n");
    const seen = async (host: string) => {
      const g = await run("ssh", ["-F", sshConfig, "-G", host], { env: { HOME: home } });
      expect(g.code, g.stderr).toBe(0);
      return g.stdout.split("\n").filter((l) => /^(hostname|port|identityfile) /.test(l));
    };
    expect((await seen("web")).sort()).toEqual([
      "hostname web.example",
      "identityfile /keys/id",
      "port 2222",
    ]);
    expect(await seen("elsewhere")).toContain("port 2299");
  });

  it("says first, in next and in the report, to put nixship's host module on hosts it reaches through sudo", async () => {
    const dir = await mkdtemp(join(work, "deploy-rs-"));
    await writeDeployRsFlake(dir, {
      web: { hostname: "web.example", extra: '        sshUser = "deploy";' },
      db: { hostname: "db.example", extra: '        sshUser = "root";' },
    });
    const r = await init(dir, "--from", "deploy-rs", "--format", "json", "--json");
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as InitJson;
    expect(JSON.parse(await readFile(out.fleet, "utf8")).hosts.web.sudo).toBe(true);
    // web only: db is reached as root, which needs no module of nixship's to activate.
    expect(out.next.slice(0, 2)).toEqual([
      "# first add nixship.nixosModules.host to the system of web, then activate it once with deploy-rs:",
      `deploy --targets '${dir}#web'`,
    ]);
    expect(out.report).toContainEqual(
      expect.objectContaining({
        option: "user",
        outcome: "mapped",
        text: expect.stringContaining(
          "add it to the node's system and activate that once with deploy-rs",
        ),
        nodes: ["web"],
      }),
    );
    const text = await init(dir, "--from", "deploy-rs", "--format", "json", "--force");
    expect(text.code, text.stderr).toBe(0);
    expect(text.stderr).toContain(
      "before nixship's first deploy: web is reached as a user other than root (hosts.NAME.sudo)",
    );
    // All reached as root: no such step.
    const root = await mkdtemp(join(work, "deploy-rs-"));
    await writeDeployRsFlake(root, {
      web: { hostname: "web.example", extra: '        sshUser = "root";' },
    });
    const plain = JSON.parse(
      (await init(root, "--from", "deploy-rs", "--json")).stdout,
    ) as InitJson;
    expect(plain.next[0]).toMatch(/^nixship doctor/);
  });

  it("takes the configuration the profile is built from, where two share its name (one hostName)", async () => {
    const dir =
      await flakeDir(`      nixosConfigurations = let mk = tag: { config.system.build.toplevel = derivation {
        name = "nixos-system-web-24.05"; inherit system; builder = "/bin/sh"; args = [ "-c" "echo \${tag} > $out" ]; }; };
      in { web = mk "old"; web-next = mk "new"; };
      deploy.nodes.web = { hostname = "web.example"; profiles.system = {
        user = "root"; path = deploy-rs.lib.\${system}.activate.nixos self.nixosConfigurations.web-next; }; };`);
    const r = await init(dir, "--from", "deploy-rs", "--format", "json", "--json");
    expect(r.code, r.stderr).toBe(0);
    const fleet = JSON.parse(await readFile((JSON.parse(r.stdout) as InitJson).fleet, "utf8"));
    expect(fleet.hosts.web.system).toBe(".#nixosConfigurations.web-next");
  });

  it("in a git flake, says first to add the nixship.nix it wrote (a git flake holds only tracked files)", async () => {
    const dir = await mkdtemp(join(work, "deploy-rs-git-"));
    await writeDeployRsFlake(dir, { web: { hostname: "web.example" } });
    await run("git", ["-C", dir, "init", "-q"]);
    await run("git", ["-C", dir, "add", "."]);
    const r = await init(dir, "--from", "deploy-rs", "--json");
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as InitJson).next[0]).toBe(`git -C ${dir} add nixship.nix`);
  });

  it("writes nothing in Nix for a flake that has its nixship output already, and says so", async () => {
    const dir = await mkdtemp(join(work, "deploy-rs-"));
    await writeDeployRsFlake(dir, { web: { hostname: "web.example" } });
    await addOutput(dir, "nixship = { hosts = { }; };");
    const r = await init(dir, "--from", "deploy-rs", "--json");
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      written: [],
      said: expect.stringContaining("already has a 'nixship' output: that is the fleet"),
    });
    expect(existsSync(join(dir, "nixship.nix"))).toBe(false);
    const json = await init(dir, "--from", "deploy-rs", "--format", "json");
    expect(json.code).toBe(2);
    expect(json.stderr).toContain(
      "beside it would take its place for every command run without --fleet",
    );
    expect(existsSync(join(dir, "nixship.json"))).toBe(false);
  });

  it("keeps a fleet file made while Nix evaluated, as one there before (exit 2); --force replaces it", async () => {
    const dir = await mkdtemp(join(work, "deploy-rs-"));
    await writeDeployRsFlake(dir, { web: { hostname: "web.example" } });
    const fleetFile = join(dir, "nixship.json");
    const handWritten = '{"my":"hand-written fleet"}\n';
    // Nix itself makes the file as it starts to evaluate: after init looked, before it writes.
    const shim = await mkdtemp(join(work, "nix-shim-"));
    const realNix = (await run("sh", ["-c", "command -v nix"])).stdout.trim();
    await writeFile(
      join(shim, "nix"),
      `#!/bin/sh\ncase " $* " in *" eval "*) [ -e "$FLEET" ] || printf '%s' '${handWritten}' > "$FLEET" ;; esac\nexec ${realNix} "$@"\n`,
      { mode: 0o755 },
    );
    const env = { PATH: `${shim}:${process.env.PATH}`, FLEET: fleetFile };
    const args = ["init", dir, "--key-out", join(dir, "..", `${dir.split("/").pop()}.sec`)];
    const r = await nixship([...args, "--from", "deploy-rs", "--format", "json"], { env });
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain(`${fleetFile} already exists; init leaves it as it is`);
    expect(r.stderr).toContain("pass --force to replace it");
    expect(await readFile(fleetFile, "utf8")).toBe(handWritten);
    // Nothing staged beside it is left.
    expect((await readdir(dir)).filter((f) => f.startsWith(".nixship.json"))).toEqual([]);
    const forced = await nixship([...args, "--from", "deploy-rs", "--format", "json", "--force"], {
      env,
    });
    expect(forced.code, forced.stderr).toBe(0);
    expect(JSON.parse(await readFile(fleetFile, "utf8")).hosts.web.address).toBe("web.example");
  });

  it("is not stopped by a broken configuration no node deploys", async () => {
    const dir = await mkdtemp(join(work, "deploy-rs-"));
    await writeDeployRsFlake(dir, { web: { hostname: "web.example" } });
    await addOutput(
      dir,
      'nixosConfigurations.scratch = { config.system.build.toplevel.name = 1 + "a"; };',
    );
    const r = await init(dir, "--from", "deploy-rs", "--format", "json", "--json");
    expect(r.code, r.stderr).toBe(0);
    const fleet = JSON.parse(await readFile((JSON.parse(r.stdout) as InitJson).fleet, "utf8"));
    expect(fleet.hosts.web.system).toBe(".#nixosConfigurations.web");
  });

  it("names a node without a hostname, and a flake without deploy (exit 2)", async () => {
    const dir = await mkdtemp(join(work, "deploy-rs-"));
    await writeDeployRsFlake(dir, { web: { hostname: null } });
    const r = await init(dir, "--from", "deploy-rs");
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      `${join(dir, "flake.nix")}: deploy.nodes.web.hostname is not set: nixship cannot reach the node`,
    );
    const none = await flakeDir("      packages = { };");
    const n = await init(none, "--from", "deploy-rs");
    expect(n.code).toBe(2);
    expect(n.stderr).toContain("the flake has no deploy output");
  });
});
