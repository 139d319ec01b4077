// A fleet written in a flake, evaluated by the real Nix: hosts made from configurations that
// import nixosModules.deployment (through the stand-in for nixpkgs' nixosSystem), the same
// value as its JSON twin, every problem and Nix error named by the flake's attribute (exit 2),
// the flake's fleet found when no fleet file is, and the module's options the fleet file's
// host keys.
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { flakeFleetSource } from "../src/deploy/flake-fleet-source.js";
import { FLEET_KEYS } from "../src/fleet/fleet-keys.js";
import { loadFlakeFleet } from "../src/fleet/load-flake-fleet.js";
import { loadFleet } from "../src/fleet/load-fleet.js";
import { nixship, run, runOk } from "../support/cli.js";
import { TEST_NIX_CONFIG } from "../support/nix-config.js";
import { EXAMPLES_DIR } from "./support/example-systems.js";
import { writeFleetFlake } from "./support/fleet-flake.js";
import { evalNixJson, LIB_OPTIONS } from "./support/nixos-stand-in.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const MODULE = join(ROOT, "packaging/nixos/nixship-deployment.nix");
const NIX_ENV = { NIX_CONFIG: TEST_NIX_CONFIG };
const KEY = "cache.example.org-1:lWwOmhFw0ds2rFa+bN7VVTYVXK7ujJv76J6gVTXevhM=";

/** Two configurations with the module (one with a policy of its own), one without. */
const CONFIGURATIONS = `
      nixosConfigurations.web1 = nixosSystem {
        toplevel = examples.web-v1;
        modules = [ deployment { nixship.deployment = { address = "10.0.0.1"; tags = [ "web" ]; policy.canary = 0; }; } ];
      };
      nixosConfigurations.web2 = nixosSystem {
        toplevel = examples.web-v1;
        modules = [ deployment { nixship.deployment = { address = "10.0.0.2"; tags = [ "web" ]; sudo = true; }; } ];
      };
      nixosConfigurations.installer = nixosSystem { toplevel = examples.web-v3; modules = [ ]; };`;

const FLEET = (extra = "") => `${CONFIGURATIONS}
      nixship = fleetLib.fleetFromConfigurations {
        configurations = self.nixosConfigurations;
        cache = { url = "file:///var/cache/fleet"; publicKeys = [ "${KEY}" ]; };
        ssh = { knownHosts = ./known_hosts; user = "deploy"; };
        policy = { parallel = 2; health.http = [ { url = "http://{address}/health"; } ]; };
        policies."@web".confirmTimeout = 20;
        hosts.db1 = { system = examples.web-v2; address = "10.0.0.3"; tags = [ "db" ]; };${extra}
      };`;

/** The same fleet as a fleet file beside the flake. */
const TWIN = {
  cache: { url: "file:///var/cache/fleet", publicKeys: [KEY] },
  ssh: { knownHosts: "known_hosts", user: "deploy" },
  policy: { parallel: 2, health: { http: [{ url: "http://{address}/health" }] } },
  policies: { "@web": { confirmTimeout: 20 }, web1: { canary: 0 } },
  hosts: {
    db1: { system: ".#nixship.hosts.db1.system", address: "10.0.0.3", tags: ["db"] },
    web1: { system: ".#nixship.hosts.web1.system", address: "10.0.0.1", tags: ["web"] },
    web2: {
      system: ".#nixship.hosts.web2.system",
      address: "10.0.0.2",
      tags: ["web"],
      sudo: true,
    },
  },
};

let work: string;
const dirs: string[] = [];

async function flakeDir(outputs: string): Promise<string> {
  const dir = await mkdtemp(join(work, "flake-"));
  dirs.push(dir);
  await writeFleetFlake(dir, outputs);
  await writeFile(join(dir, "known_hosts"), "");
  return dir;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-fleet-flake-"));
});
afterAll(() => rm(work, { recursive: true, force: true }));

describe("a fleet in the flake", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await flakeDir(FLEET());
    await writeFile(join(dir, "twin.json"), JSON.stringify(TWIN));
  });

  it("is the value its fleet file twin parses to", async () => {
    const fromFlake = await loadFlakeFleet(await flakeFleetSource(".#nixship", dir));
    const fromFile = await loadFleet(join(dir, "twin.json"));
    expect(fromFlake).toEqual(fromFile);
    // A Nix path in the flake is the file in its directory, not its copy in the store.
    expect(fromFlake.ssh.knownHosts).toBe(join(dir, "known_hosts"));
    // The configuration without the module is no host.
    expect(fromFlake.hosts.map((h) => h.name)).toEqual(["db1", "web1", "web2"]);
  });

  it("builds each host's system, a configuration's toplevel, in one build", async () => {
    const r = await nixship(["build", "--fleet", `${dir}#nixship`, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const built = JSON.parse(r.stdout) as {
      systems: { path: string; hosts: string[] }[];
      hosts: Record<string, string>;
    };
    const twin = await nixship(["build", "--fleet", join(dir, "twin.json"), "--json"]);
    expect(twin.code, twin.stderr).toBe(0);
    expect(built.hosts).toEqual((JSON.parse(twin.stdout) as typeof built).hosts);
    expect(built.hosts.web1).toMatch(/-example-web-system-v1$/);
    expect(built.hosts.db1).toMatch(/-example-web-system-v2$/);
    // web1 and web2 run one system: one result, for both.
    expect(built.systems.map((s) => s.hosts)).toEqual([["db1"], ["web1", "web2"]]);
  });

  it("is found in the current directory when no fleet is named and there is no nixship.json", async () => {
    const r = await nixship(["build", "--json"], { cwd: dir, env: { NIXSHIP_FLEET: "" } });
    expect(r.code, r.stderr).toBe(0);
    expect(Object.keys((JSON.parse(r.stdout) as { hosts: object }).hosts)).toEqual([
      "db1",
      "web1",
      "web2",
    ]);
    // A nixship.json there is the fleet, as before.
    const only = { ...TWIN, policies: {}, hosts: { db1: TWIN.hosts.db1 } };
    const other = await flakeDir(FLEET());
    await writeFile(join(other, "nixship.json"), JSON.stringify(only));
    const file = await nixship(["build", "--json"], { cwd: other });
    expect(file.code, file.stderr).toBe(0);
    expect(Object.keys((JSON.parse(file.stdout) as { hosts: object }).hosts)).toEqual(["db1"]);
  });
});

describe("the flake here, when no fleet is named", () => {
  it("is not nixship's own: its checkout is no fleet, and doctor checks the local Nix alone", async () => {
    // nixship's own flake fetches nixpkgs: evaluating it would reach the network.
    const env = { NIXSHIP_FLEET: "" };
    const r = await nixship(["status"], { cwd: ROOT, env });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("nixship.json");
    // Its flake was not evaluated (the hint may name flakes as a way to give a fleet).
    expect(r.stderr).not.toMatch(/flake\.nix|download|github/i);
    const doctor = await nixship(["doctor", "--json"], { cwd: ROOT, env });
    const fleetCheck = (
      JSON.parse(doctor.stdout) as { checks: { name: string; detail: string }[] }
    ).checks.find((c) => c.name === "fleet file");
    expect(fleetCheck?.detail).toBe(
      "none given and no ./nixship.json (the flake here is nixship's own): only the local Nix was checked",
    );
  });

  it("in a git repository that does not track it is refused, naming the fix (exit 2)", async () => {
    const repo = await mkdtemp(join(work, "repo-"));
    dirs.push(repo);
    await runOk("git", ["init", "-q", repo]);
    await writeFile(join(repo, ".gitignore"), "lab/\n");
    const dir = join(repo, "lab");
    await mkdir(dir);
    await writeFleetFlake(dir, FLEET());
    await writeFile(join(dir, "known_hosts"), "");
    for (const args of [["status"], ["status", "--fleet", ".#nixship"]]) {
      const r = await nixship(args, { cwd: dir, env: { NIXSHIP_FLEET: "" } });
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.stderr).toContain(
        `${join(dir, "flake.nix")} is in the git repository ${repo}, which does not track it`,
      );
      expect(r.stderr).toContain(`'git -C ${repo} add lab/flake.nix'`);
      // Named as what the user gave, or as the fleet looked for here.
      expect(r.stderr).toContain(
        args.length === 1
          ? "error: the fleet here (.#nixship: no --fleet"
          : "error: --fleet .#nixship: ",
      );
      expect(r.stderr).toContain(`or name it path:${dir}`);
    }
    // As the hint says: added (not committed), it is read.
    await runOk("git", ["-C", repo, "add", "-f", "lab/flake.nix", "lab/known_hosts"]);
    const added = await nixship(["build", "--json"], { cwd: dir, env: { NIXSHIP_FLEET: "" } });
    expect(added.code, added.stderr).toBe(0);
    const byPath = await nixship(["build", "--json", "--fleet", `path:${dir}#nixship`]);
    expect(byPath.code, byPath.stderr).toBe(0);
  });
});

describe("a fleet in a git flake that reads a file git does not track", () => {
  it("is refused, naming the file and the git add that fixes it (exit 2)", async () => {
    const repo = await mkdtemp(join(work, "repo-untracked-"));
    dirs.push(repo);
    await runOk("git", ["init", "-q", repo]);
    await writeFleetFlake(
      repo,
      FLEET(`\n        hosts.db2 = import ./db2.nix { inherit examples; };`),
    );
    await writeFile(join(repo, "known_hosts"), "");
    await writeFile(
      join(repo, "db2.nix"),
      '{ examples }: { system = examples.web-v2; address = "10.0.0.4"; }\n',
    );
    await runOk("git", ["-C", repo, "add", "flake.nix", "known_hosts"]);
    const r = await nixship(["build", "--json", "--fleet", `${repo}#nixship`]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain(
      `hint: ${repo}/db2.nix is there, but the git repository ${repo} does not track it, and Nix reads a flake there from the files git tracks: 'git -C ${repo} add db2.nix' (a commit is not needed), then run it again`,
    );
    await runOk("git", ["-C", repo, "add", "db2.nix"]);
    const added = await nixship(["build", "--json", "--fleet", `${repo}#nixship`]);
    expect(added.code, added.stderr).toBe(0);
  });
});

describe("a fleet in the flake naming a Prometheus bearer token file", () => {
  const PROMETHEUS = (file: string) => `
        prometheus = { url = "http://127.0.0.1:9"; bearerTokenFile = "${file}"; };`;

  it("in the directory of a path: flake is refused before anything is copied, naming the fix (exit 2)", async () => {
    const dir = await flakeDir(FLEET(PROMETHEUS("prom.token")));
    await writeFile(join(dir, "prom.token"), "TOKEN-NEVER-IN-THE-STORE\n", { mode: 0o600 });
    const r = await nixship(["status", "--stored", "--fleet", `path:${dir}#nixship`]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain(
      `prometheus.bearerTokenFile ${join(dir, "prom.token")} is in the flake ${dir}, which Nix copies (every file of its directory) into the world-readable Nix store`,
    );
    expect(r.stderr).toContain("keep the token outside the flake");
    expect(r.stderr).not.toContain("TOKEN-NEVER-IN-THE-STORE");
  });

  it("outside the flake, or untracked in a git flake, is read", async () => {
    const outside = join(work, "prom-outside.token");
    await writeFile(outside, "TOKEN\n", { mode: 0o600 });
    const dir = await flakeDir(FLEET(PROMETHEUS(outside)));
    const r = await nixship(["status", "--stored", "--fleet", `path:${dir}#nixship`]);
    // Read past the fleet: what stops it is the fleet's cache, which is none here.
    expect(r.stderr).toContain("file:///var/cache/fleet holds no binary cache");
    expect(r.stderr).not.toContain("bearerTokenFile");
    // In a git repository that tracks the flake but not the token: git copies tracked files.
    const repo = await mkdtemp(join(work, "repo-token-"));
    dirs.push(repo);
    await runOk("git", ["init", "-q", repo]);
    await writeFleetFlake(repo, FLEET(PROMETHEUS("prom.token")));
    await writeFile(join(repo, "known_hosts"), "");
    await writeFile(join(repo, "prom.token"), "TOKEN\n", { mode: 0o600 });
    await runOk("git", ["-C", repo, "add", "flake.nix", "known_hosts"]);
    const untracked = await nixship(["status", "--stored", "--fleet", `${repo}#nixship`]);
    expect(untracked.stderr).toContain("file:///var/cache/fleet holds no binary cache");
    expect(untracked.stderr).not.toContain("bearerTokenFile");
    await runOk("git", ["-C", repo, "add", "prom.token"]);
    const tracked = await nixship(["status", "--stored", "--fleet", `${repo}#nixship`]);
    expect(tracked.code).toBe(2);
    expect(tracked.stderr).toContain("(the files git tracks, this one among them)");
  });
});

describe("a fleet in the flake with a mistake", () => {
  /** `nixship build` of a fleet whose nixship output is FLEET with `extra` in it. */
  async function buildWith(extra: string, outputs = FLEET(extra)) {
    const dir = await flakeDir(outputs);
    const r = await nixship(["build", "--fleet", `path:${dir}#nixship`]);
    return { ...r, file: join(dir, "flake.nix") };
  }

  it("names the attribute of each problem the fleet file's rules find, and the flake (exit 2)", async () => {
    const r = await buildWith(`
        hosts.db2 = { system = examples.web-v2; address = "10.0.0.4"; tags = "db"; adress = 1; };
        policies."@db".canary = "one";`);
    expect(r.code).toBe(2);
    // Each with the line that defines it.
    const at = `\\(${r.file}:\\d+\\)`;
    expect(r.stderr).toMatch(
      new RegExp(
        `${r.file}: nixship.hosts.db2.adress ${at}: unknown key \\(did you mean "address"\\?\\)`,
      ),
    );
    expect(r.stderr).toMatch(
      new RegExp(`${r.file}: nixship.hosts.db2.tags ${at}: must be a list \\(got "db"\\)`),
    );
    expect(r.stderr).toMatch(
      new RegExp(`${r.file}: nixship.policies."@db".canary ${at}: must be a whole number`),
    );
  });

  it("names the file and line that define a problem's attribute, in a file the flake imports (exit 2)", async () => {
    const dir = await flakeDir(`nixship = import ./nixship.nix { inherit examples; };`);
    await writeFile(
      join(dir, "nixship.nix"),
      [
        "{ examples }: {",
        `  cache = { url = "file:///var/cache/fleet"; publicKeys = [ "${KEY}" ]; };`,
        "  ssh.knownHosts = ./known_hosts;",
        "  hosts.db9 = {",
        "    system = examples.web-v2;",
        "    address = 9;",
        "  };",
        "}",
        "",
      ].join("\n"),
    );
    const r = await nixship(["build", "--fleet", `path:${dir}#nixship`]);
    expect(r.code).toBe(2);
    const line = (await readFile(join(dir, "nixship.nix"), "utf8"))
      .split("\n")
      .findIndex((l) => l.includes("address = 9"));
    expect(r.stderr).toContain(
      `nixship.hosts.db9.address (${join(dir, "nixship.nix")}:${line + 1}): must be a string`,
    );
  });

  it("names the attribute of a throw, and of a type error (exit 2)", async () => {
    const thrown = await buildWith(`
        ssh.maxConnections = throw "not decided yet";`);
    expect(thrown.code).toBe(2);
    expect(thrown.stderr).toContain(`${thrown.file}: nixship.ssh.maxConnections: not decided yet`);
    const typed = await buildWith(`
        hosts.db2 = { system = examples.web-v2; address = "10.0.0." + 4; };`);
    expect(typed.code).toBe(2);
    // Nix's own words, which differ between its versions.
    expect(typed.stderr).toMatch(
      new RegExp(
        `${typed.file}:\\d+:\\d+: nixship\\.hosts\\.db2\\.address: cannot \\w+ an integer to a string`,
      ),
    );
  });

  it("names the file, line and column of a syntax error in a file the flake imports (exit 2)", async () => {
    const dir = await flakeDir("nixship = import ./nixship.nix;");
    await writeFile(
      join(dir, "nixship.nix"),
      '{\n  hosts.web1 = {\n    address = "10.0.0.1"\n    tags = [ "web" ];\n  };\n}\n',
    );
    const r = await nixship(["build", "--fleet", `path:${dir}#nixship`]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      `error: ${join(dir, "nixship.nix")}:4:10: nixship: syntax error, unexpected '=', expecting ';'`,
    );
  });

  it("names the host whose configuration sets an option the module does not have (exit 2)", async () => {
    const r = await buildWith("", FLEET().replace('address = "10.0.0.2";', 'adress = "10.0.0.2";'));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      `${r.file}: nixship.hosts.web2: The option \`nixship.deployment.adress' does not exist.`,
    );
  });

  it("with an input and no flake.lock: names 'nix flake lock' as the fix, and writes no lock (exit 2)", async () => {
    const dir = await mkdtemp(join(work, "flake-"));
    dirs.push(dir);
    await writeFile(
      join(dir, "flake.nix"),
      `{\n  inputs.examples.url = "path:${EXAMPLES_DIR}";\n  outputs = { self, examples }: { nixship = { }; };\n}\n`,
    );
    const r = await nixship(["status", "--fleet", `path:${dir}#nixship`]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/requires lock file changes/);
    expect(r.stderr).toContain(
      "hint: the flake's flake.lock is missing or out of date with its inputs: run 'nix flake lock' in its directory",
    );
    expect(existsSync(join(dir, "flake.lock"))).toBe(false);
  });

  it("says which outputs the flake has when it has no fleet (exit 2)", async () => {
    const dir = await flakeDir(CONFIGURATIONS);
    const r = await nixship(["status", "--fleet", `${dir}#nixship`]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${join(dir, "flake.nix")}: the flake has no output "nixship"`);
    expect(r.stderr).toContain("its outputs: nixosConfigurations");
    // Not named but looked for: where a fleet could have been.
    const here = await nixship(["status"], { cwd: dir });
    expect(here.code).toBe(2);
    expect(here.stderr).toContain(
      'no fleet here: no ./nixship.json, and the flake here has no output "nixship"',
    );
  });
});

describe("a host's mode and ssh user in its configuration", () => {
  const INSTANCE = "i-0123456789abcdef0";
  const withDeployment = (web2: string) =>
    FLEET().replace('address = "10.0.0.2"; tags = [ "web" ]; sudo = true;', web2);

  it("makes mode the host's delivery and sshUser its own ssh user", async () => {
    const dir = await flakeDir(
      withDeployment(`address = "10.0.0.2"; mode = "ssm"; instanceId = "${INSTANCE}";`).replace(
        'address = "10.0.0.1";',
        'address = "10.0.0.1"; sshUser = "ops";',
      ),
    );
    const fleet = await loadFlakeFleet(await flakeFleetSource(".#nixship", dir));
    const byName = new Map(fleet.hosts.map((h) => [h.name, h]));
    expect(byName.get("web2")).toMatchObject({ delivery: "ssm", instanceId: INSTANCE });
    expect(byName.get("web1")).toMatchObject({ delivery: "ssh", sshUser: "ops" });
    // The fleet's own user stays the other hosts'.
    expect(fleet.ssh.user).toBe("deploy");
  });

  it("still reads the former name, delivery, and refuses a mode that differs from it (exit 2)", async () => {
    const former = await flakeDir(
      withDeployment(`address = "10.0.0.2"; delivery = "ssm"; instanceId = "${INSTANCE}";`),
    );
    const fleet = await loadFlakeFleet(await flakeFleetSource(".#nixship", former));
    expect(fleet.hosts.find((h) => h.name === "web2")?.delivery).toBe("ssm");
    const both = await flakeDir(
      withDeployment(`address = "10.0.0.2"; mode = "ssm"; delivery = "agent";`),
    );
    const r = await nixship(["build", "--fleet", `path:${both}#nixship`]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("nixship.hosts.web2");
    expect(r.stderr).toContain(
      "nixship.deployment.mode (ssm) and its former name delivery (agent) differ: set mode alone",
    );
  });
});

describe("nixosModules.deployment (packaging/nixos/nixship-deployment.nix)", () => {
  it("parses", async () => {
    const r = await run("nix-instantiate", ["--parse", MODULE], { env: NIX_ENV });
    expect(r.code, r.stderr).toBe(0);
  });

  it("has an option for each host key of the fleet file but system, and the host's policy", async () => {
    const options = await evalNixJson<Record<string, { default: unknown }>>(`
      let
        type = name: { inherit name; };
        lib = {${LIB_OPTIONS}
          types = {
            str = type "str"; bool = type "bool"; attrs = type "attrs";
            listOf = t: type "listOf"; nullOr = t: type "nullOr"; enum = values: type "enum";
          };
        };
        module = import ${JSON.stringify(MODULE)} { inherit lib; config = { }; };
      in builtins.mapAttrs (_: o: { inherit (o) default; }) module.options.nixship.deployment`);
    // `system` (required) is the configuration itself.
    expect(FLEET_KEYS.host.required).toEqual(["system"]);
    // `mode` is the module's name for the host key `delivery` (its former name, still read).
    expect(Object.keys(options).sort()).toEqual(
      [...FLEET_KEYS.host.optional, "policy", "mode"].sort(),
    );
    // Unset, each leaves the fleet file's default: the module's own defaults are those.
    expect(options.tags?.default).toEqual([]);
    expect(options.delivery?.default).toBe("ssh");
    expect(options.policy?.default).toEqual({});
    for (const key of [
      "address",
      "sshHost",
      "sshUser",
      "mode",
      "sudo",
      "hostKey",
      "instanceId",
      "targets",
    ]) {
      expect(options[key]?.default, key).toBeNull();
    }
  });
});
