// `nixship init` in a flake's directory, with the real Nix: the fleet it writes from the
// flake's configurations (one with nixosModules.deployment, one without, through the stand-in
// for nixosSystem) as a fleet file and as the flake's output, the cache and the key (0600,
// outside the flake), the placeholder address refused by name until filled in, then the
// fleet built; and its refusals (exit 2), which write nothing.
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nixship, runOk } from "../support/cli.js";
import { TEST_NIX_CONFIG } from "../support/nix-config.js";
import { writeFleetFlake } from "./support/fleet-flake.js";

const PLACEHOLDER = "FILL IN: the host's address";

/** web1 imports the deployment module and says its address; web2 does not import it. */
const CONFIGURATIONS = `
      nixosConfigurations.web1 = nixosSystem {
        toplevel = examples.web-v1;
        modules = [ deployment { nixship.deployment = { address = "10.0.0.1"; tags = [ "web" ]; policy.canary = 0; }; } ];
      };
      nixosConfigurations.web2 = nixosSystem { toplevel = examples.web-v2; modules = [ ]; };`;

let work: string;
/** Where the default key goes ($XDG_CONFIG_HOME), apart from every flake. */
let config: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-init-"));
  config = join(work, "config");
});
afterAll(() => rm(work, { recursive: true, force: true }));

async function flakeDir(outputs = CONFIGURATIONS): Promise<string> {
  const dir = await mkdtemp(join(work, "flake-"));
  await writeFleetFlake(dir, outputs);
  return dir;
}

function init(dir: string, args: readonly string[]) {
  return nixship(["init", ...args], {
    cwd: dir,
    env: { NIX_CONFIG: TEST_NIX_CONFIG, XDG_CONFIG_HOME: config, NIXSHIP_FLEET: "" },
  });
}

function inDir(dir: string, args: readonly string[]) {
  return nixship(args, { cwd: dir, env: { NIX_CONFIG: TEST_NIX_CONFIG, NIXSHIP_FLEET: "" } });
}

interface InitReport {
  format: string;
  written: string[];
  fleet: string;
  hosts: string[];
  placeholders: string[];
  cache: { url: string; created: boolean | null };
  key: { file: string; publicKey: string; created: boolean };
  outputLine: string | null;
  next: string[];
}

describe("nixship init --format json", () => {
  let dir: string;
  let report: InitReport;
  beforeAll(async () => {
    dir = await flakeDir();
    const r = await init(dir, ["--format", "json", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    report = JSON.parse(r.stdout) as InitReport;
  });

  it("writes nixship.json: a host per configuration, the cache and the key's public key", async () => {
    const fleet = JSON.parse(await readFile(join(dir, "nixship.json"), "utf8")) as Record<
      string,
      unknown
    >;
    const keyFile = join(config, "nixship", `nixship-${dir.split("/").pop()}-1.sec`);
    expect(report.key).toEqual({ file: keyFile, publicKey: expect.any(String), created: true });
    // No git repository: Nix copies the flake whole, so the cache is made outside it.
    const cacheDir = join(
      process.env.XDG_DATA_HOME as string,
      "nixship",
      "caches",
      `${basename(dir)}-${createHash("sha256").update(dir).digest("hex").slice(0, 8)}`,
    );
    expect(fleet).toEqual({
      cache: { url: `file://${cacheDir}`, publicKeys: [report.key.publicKey] },
      policies: { web1: { canary: 0 } },
      hosts: {
        web1: {
          tags: ["web"],
          address: "10.0.0.1",
          system: ".#nixosConfigurations.web1.config.system.build.toplevel",
        },
        web2: {
          address: PLACEHOLDER,
          system: ".#nixosConfigurations.web2.config.system.build.toplevel",
        },
      },
    });
    expect(report.hosts).toEqual(["web1", "web2"]);
    expect(report.placeholders).toEqual(["web2"]);
    expect(report.written).toEqual([keyFile, join(dir, "nixship.json")]);
    expect(report.next).toEqual([
      "nixship doctor",
      "nixship plan",
      `nixship deploy --key ${keyFile}`,
    ]);
    // The key: 0600, outside the flake; the cache: made, outside it too.
    expect((await stat(keyFile)).mode & 0o777).toBe(0o600);
    expect(await readFile(join(cacheDir, "nix-cache-info"), "utf8")).toContain(
      "StoreDir: /nix/store",
    );
    expect(report.cache).toEqual({ url: `file://${cacheDir}`, created: true });
    expect(existsSync(join(dir, ".nixship-cache"))).toBe(false);
  });

  it("makes the cache beside a flake in a git repository (Nix copies only what git tracks)", async () => {
    const git = await flakeDir();
    await runOk("git", ["init", "-q", git]);
    await runOk("git", ["-C", git, "add", "flake.nix"]);
    const r = await init(git, ["--format", "json", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as InitReport).cache).toEqual({
      url: `file://${git}/.nixship-cache`,
      created: true,
    });
    const said = await init(git, ["--format", "json", "--force"]);
    expect(`${said.stdout}${said.stderr}`).toContain(
      "keep .nixship-cache/ out of git (.gitignore)",
    );
  });

  it("writes a fleet that is refused, naming the placeholder, until the address is filled in", async () => {
    const refused = await inDir(dir, ["build"]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(
      `hosts.web2.address: is the placeholder 'nixship init' wrote: fill in the host's address`,
    );
    const file = join(dir, "nixship.json");
    await writeFile(file, (await readFile(file, "utf8")).replace(PLACEHOLDER, "10.0.0.2"));
    const built = await inDir(dir, ["build", "--json"]);
    expect(built.code, built.stderr).toBe(0);
    const hosts = (JSON.parse(built.stdout) as { hosts: Record<string, string> }).hosts;
    expect(hosts.web1).toMatch(/-example-web-system-v1$/);
    expect(hosts.web2).toMatch(/-example-web-system-v2$/);
  });

  it("keeps an existing nixship.json unless --force, and the key it made", async () => {
    const before = await readFile(join(dir, "nixship.json"), "utf8");
    const again = await init(dir, ["--format", "json"]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain(`${join(dir, "nixship.json")} already exists`);
    expect(again.stderr).toContain("--force");
    expect(await readFile(join(dir, "nixship.json"), "utf8")).toBe(before);
    const forced = await init(dir, ["--format", "json", "--json", "--force"]);
    expect(forced.code, forced.stderr).toBe(0);
    const second = JSON.parse(forced.stdout) as InitReport;
    expect(second.key).toEqual({ ...report.key, created: false });
    expect(second.written).toEqual([join(dir, "nixship.json")]);
    expect(await readFile(join(dir, "nixship.json"), "utf8")).toContain(PLACEHOLDER);
  });
});

describe("nixship init (--format nix)", () => {
  it("writes nixship.nix and the line for the flake, whose fleet then loads and builds", async () => {
    const dir = await flakeDir();
    const keyOut = join(work, "nix-keys", "fleet.sec");
    const r = await init(dir, ["--key-out", keyOut]);
    expect(r.code, r.stderr).toBe(0);
    const line = "nixship = import ./nixship.nix { inherit self; nixshipLib = nixship.lib; };";
    expect(r.stderr).toContain(
      `add this line to the outputs of ${join(dir, "flake.nix")}:\n  ${line}`,
    );
    expect(r.stderr).toContain("fill in the address of web2");
    expect(r.stderr).toContain(`nixship deploy --key ${keyOut}`);
    expect((await stat(keyOut)).mode & 0o777).toBe(0o600);
    const text = await readFile(join(dir, "nixship.nix"), "utf8");
    expect(text).toContain("nixshipLib.fleetFromConfigurations {");
    expect(text).toContain(
      `web2 = { system = self.nixosConfigurations.web2; address = "${PLACEHOLDER}"; };`,
    );
    expect(existsSync(join(dir, "nixship.json"))).toBe(false);

    // The line, as the user adds it (this flake's nixship lib is `fleetLib`).
    await writeFleetFlake(
      dir,
      `${CONFIGURATIONS}\n      ${line.replace("nixship.lib", "fleetLib")}`,
    );
    const refused = await inDir(dir, ["build"]);
    expect(refused.code).toBe(2);
    // Named at the file to edit: the nixship.nix init wrote, and the line.
    const line2 = text.split("\n").findIndex((l) => l.includes(PLACEHOLDER)) + 1;
    expect(refused.stderr).toContain(
      `${join(dir, "flake.nix")}: nixship.hosts.web2.address (${join(dir, "nixship.nix")}:${line2}): is the placeholder 'nixship init' wrote`,
    );
    await writeFile(join(dir, "nixship.nix"), text.replace(PLACEHOLDER, "10.0.0.2"));
    const built = await inDir(dir, ["build", "--json"]);
    expect(built.code, built.stderr).toBe(0);
    const hosts = (JSON.parse(built.stdout) as { hosts: Record<string, string> }).hosts;
    expect(Object.keys(hosts)).toEqual(["web1", "web2"]);
    expect(hosts.web2).toMatch(/-example-web-system-v2$/);

    // The flake has its fleet now: init says so and writes nothing.
    const after = await readFile(join(dir, "nixship.nix"), "utf8");
    const again = await init(dir, ["--key-out", keyOut, "--json"]);
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ written: [] });
    expect((JSON.parse(again.stdout) as { said: string }).said).toContain(
      "already has a 'nixship' output",
    );
    expect(await readFile(join(dir, "nixship.nix"), "utf8")).toBe(after);

    // A fleet file beside it would take the flake's fleet's place: refused unless --force.
    const shadow = await init(dir, ["--key-out", keyOut, "--format", "json"]);
    expect(shadow.code).toBe(2);
    expect(shadow.stderr).toContain(
      `${join(dir, "flake.nix")} already has a 'nixship' output, its fleet: ${join(dir, "nixship.json")} beside it would take its place for every command run without --fleet; nothing written`,
    );
    expect(existsSync(join(dir, "nixship.json"))).toBe(false);
    const forced = await init(dir, ["--key-out", keyOut, "--format", "json", "--force"]);
    expect(forced.code, forced.stderr).toBe(0);
    expect(existsSync(join(dir, "nixship.json"))).toBe(true);
  });

  it("refuses to write the Nix fleet beside a nixship.json, which every command without --fleet would read instead", async () => {
    const dir = await flakeDir(`
      nixosConfigurations.db1 = nixosSystem { toplevel = examples.web-v2; modules = [ ]; };`);
    const old = '{ "hosts": {} }\n';
    await writeFile(join(dir, "nixship.json"), old);
    const keyOut = join(work, "shadowed.sec");
    const refused = await init(dir, ["--key-out", keyOut]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(
      `${join(dir, "nixship.json")} beside the flake would take the place of the fleet init writes (nixship.nix, the flake's 'nixship' output) for every command run without --fleet; nothing written`,
    );
    expect(existsSync(join(dir, "nixship.nix"))).toBe(false);
    expect(existsSync(keyOut)).toBe(false);
    // With --force it writes, and the next commands name the flake's fleet.
    const forced = await init(dir, ["--key-out", keyOut, "--force", "--json"]);
    expect(forced.code, forced.stderr).toBe(0);
    const next = (JSON.parse(forced.stdout) as { next: string[] }).next;
    expect(next.filter((c) => /^nixship (doctor|plan|deploy)/.test(c))).not.toEqual([]);
    for (const c of next.filter((c) => /^nixship (doctor|plan|deploy)/.test(c))) {
      expect(c).toContain(`--fleet ${dir}#nixship`);
    }
    expect(await readFile(join(dir, "nixship.json"), "utf8")).toBe(old);
  });

  it("writes a plain attribute set when no configuration imports the module", async () => {
    const dir = await flakeDir(`
      nixosConfigurations.db1 = nixosSystem { toplevel = examples.web-v2; modules = [ ]; };`);
    const r = await init(dir, ["--key-out", join(work, "plain.sec"), "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as InitReport;
    expect(out.outputLine).toBe("nixship = import ./nixship.nix { inherit self; };");
    const text = await readFile(join(dir, "nixship.nix"), "utf8");
    expect(text).toContain("{ self, ... }:");
    expect(text).not.toContain("fleetFromConfigurations");
  });
});

describe("nixship init refuses", () => {
  /** What is in `dir` and the key directory besides flake.nix. */
  async function leftBehind(dir: string, keys: string): Promise<string[]> {
    const files = (await readdir(dir)).filter((f) => f !== "flake.nix");
    return existsSync(keys) ? [...files, ...(await readdir(keys))] : files;
  }

  it("a directory without flake.nix, naming it and the fix (exit 2)", async () => {
    const dir = await mkdtemp(join(work, "plain-"));
    const r = await init(dir, ["--format", "json"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${dir} is no flake's directory: it has no flake.nix`);
    expect(r.stderr).toContain("nix flake init");
    expect(await readdir(dir)).toEqual([]);
  });

  it("a flake without nixosConfigurations, saying what it looked for, and writes nothing (exit 2)", async () => {
    const dir = await flakeDir(`      packages = { };`);
    const keys = join(work, "none-keys");
    const r = await init(dir, ["--key-out", join(keys, "k.sec")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      `${join(dir, "flake.nix")}: the flake has no NixOS configurations (looked for the output nixosConfigurations; its outputs: packages)`,
    );
    expect(await leftBehind(dir, keys)).toEqual([]);
  });

  it("a key inside the flake's directory (exit 2)", async () => {
    const dir = await flakeDir();
    await mkdir(join(dir, "keys"));
    const r = await init(dir, ["--key-out", join(dir, "keys/cache.sec")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("would be inside the flake's directory");
    expect(await leftBehind(dir, join(dir, "keys"))).toEqual(["keys"]);
  });

  it("a key named '..something' in the flake's directory, or reached through a link to it (exit 2)", async () => {
    const dir = await flakeDir();
    const link = join(work, `link-${Date.now()}`);
    await symlink(dir, link);
    for (const keyOut of [join(dir, "..cache.sec"), join(link, "cache.sec")]) {
      const r = await init(dir, ["--key-out", keyOut]);
      expect(r.code, keyOut).toBe(2);
      expect(r.stderr).toContain("would be inside the flake's directory");
    }
    expect(await leftBehind(dir, join(work, "no-keys"))).toEqual([]);
  });

  // nixship.deployment's types are loose (tags: strings, policy: an attribute set): values the
  // module takes and the fleet does not are named by where they came from, in both formats,
  // before a key, a cache or a fleet is written (init used to write it and say "next: doctor").
  it("deployment values the fleet would refuse, naming each, and writes nothing (exit 2)", async () => {
    const dir = await flakeDir(`
      nixosConfigurations.web1 = nixosSystem {
        toplevel = examples.web-v1;
        modules = [ deployment { nixship.deployment = { address = "10.0.0.1"; tags = [ "Web" ]; policy.parallel = 0; }; } ];
      };`);
    const keys = join(work, "unloadable-keys");
    for (const format of ["json", "nix"]) {
      const r = await init(dir, ["--format", format, "--key-out", join(keys, "k.sec")]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(
        `init: the fleet from the configurations in ${join(dir, "flake.nix")} would not load:`,
      );
      expect(r.stderr).toContain("  hosts.web1.tags[0]: must be a string matching");
      expect(r.stderr).toContain("  policies.web1.parallel: must be a whole number >= 1 (got 0)");
      expect(r.stderr).toContain("hosts.NAME is nixosConfigurations.NAME's");
      expect(await leftBehind(dir, keys)).toEqual([]);
    }
  });

  it("an error in a configuration's deployment, naming the configuration and option (exit 2)", async () => {
    const dir = await flakeDir(`
      nixosConfigurations.web7 = nixosSystem {
        toplevel = examples.web-v1;
        modules = [ deployment { nixship.deployment = { address = "10.0.0.7"; tags = [ (throw "the tag is not there yet") ]; }; } ];
      };`);
    const keys = join(work, "throwing-keys");
    const r = await init(dir, ["--format", "json", "--key-out", join(keys, "k.sec")]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain("nixosConfigurations.web7.config.nixship.deployment.tags");
    expect(r.stderr).toContain("the tag is not there yet");
    expect(await leftBehind(dir, keys)).toEqual([]);
  });

  it("a cache that cannot be made (its URL names a file), and writes no key (exit 2)", async () => {
    const dir = await flakeDir();
    const keys = join(work, "cache-file-keys");
    const file = join(work, "not-a-cache");
    await writeFile(file, "a file\n");
    const r = await init(dir, ["--key-out", join(keys, "k.sec"), "--cache", `file://${file}`]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`file://${file}`);
    expect(await leftBehind(dir, keys)).toEqual([]);
  });

  it("a cache URL holding credentials, without quoting them, and writes nothing (exit 2)", async () => {
    const dir = await flakeDir();
    const keys = join(work, "cache-url-keys");
    const r = await init(dir, [
      "--key-out",
      join(keys, "k.sec"),
      "--cache",
      "s3://AKIAEXAMPLE:wJalrXUtnFEMI/K7MDENG/s3cr3t@bucket/p",
      "--json",
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--cache: bad store URL "s3://bucket/p"');
    expect(`${r.stdout}${r.stderr}`).not.toMatch(/s3cr3t|K7MDENG|AKIAEXAMPLE/);
    expect(await leftBehind(dir, keys)).toEqual([]);
  });
});
