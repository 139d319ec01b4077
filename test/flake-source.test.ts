// A flake beside the fleet file never carries a secret into the world-readable Nix store: in
// a git repository it is evaluated as git+file (only tracked files are copied, so a key in
// .gitignore stays out), and a plain directory (path:) holding a key is refused, naming it.
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nixship, runOk } from "../support/cli.js";

// A flake whose one package lists the files of its own source: what reached the store.
const FLAKE = `{
  outputs = { self }: {
    packages.x86_64-linux.lister = derivation {
      name = "source-lister";
      system = "x86_64-linux";
      builder = "/bin/sh";
      args = [ "-c" "ls -A \${self} > $out" ];
      PATH = "/usr/bin:/bin";
    };
  };
}
`;
const FLEET = JSON.stringify({ hosts: { h1: { address: "10.0.0.1", system: ".#lister" } } });

let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-flake-source-"));
});
afterAll(() => rm(work, { recursive: true, force: true }));

async function makeFlake(dir: string, secretName: string, secret: string): Promise<void> {
  await runOk("mkdir", ["-p", dir]);
  await writeFile(join(dir, "flake.nix"), FLAKE);
  await writeFile(join(dir, "nixship.json"), FLEET);
  await writeFile(join(dir, secretName), secret, { mode: 0o600 });
  await chmod(join(dir, secretName), 0o600);
}

describe("flake sources", () => {
  it("in a git repository: git+file, and an ignored key never reaches the store", async () => {
    const repo = join(work, "repo");
    const made = await nixship(["key", "generate", "--name", "fleet-1", "--out", join(work, "k")]);
    expect(made.code, made.stderr).toBe(0);
    await makeFlake(repo, "cache.sec", await readFile(join(work, "k"), "utf8"));
    await writeFile(join(repo, ".gitignore"), "cache.sec\n");
    const git = (...args: string[]) =>
      runOk("git", ["-C", repo, "-c", "user.name=t", "-c", "user.email=t@t", ...args]);
    await git("init", "-q");
    await git("add", "flake.nix", "nixship.json", ".gitignore");
    await git("commit", "-q", "-m", "fleet");

    const r = await nixship(["build", "--fleet", join(repo, "nixship.json"), "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const out = (JSON.parse(r.stdout) as { hosts: Record<string, string> }).hosts.h1 as string;
    const listed = (await readFile(out, "utf8")).split("\n").filter(Boolean);
    expect(listed).toContain("flake.nix");
    expect(listed).not.toContain("cache.sec");
  });

  it("a plain directory (path:) holding a private key is refused before anything is copied", async () => {
    const plain = join(work, "plain");
    await makeFlake(
      plain,
      "id_ed25519",
      "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
    );
    const r = await nixship(["build", "--fleet", join(plain, "nixship.json"), "--json"]);
    expect(r.code).toBe(2);
    const { error } = JSON.parse(r.stdout) as {
      error: { code: string; message: string; hint: string };
    };
    expect(error.code).toBe("secret-in-flake");
    expect(error.message).toBe(
      `${join(plain, "id_ed25519")} holds an SSH or TLS private key, and the flake ${plain} would be copied whole into the world-readable Nix store`,
    );
    expect(error.hint).toContain("move the key out of the flake's directory");
  });

  it("the same directory without the key builds as path:", async () => {
    const plain = join(work, "plain");
    await rm(join(plain, "id_ed25519"));
    const r = await nixship(["build", "--fleet", join(plain, "nixship.json"), "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const out = (JSON.parse(r.stdout) as { hosts: Record<string, string> }).hosts.h1 as string;
    expect((await readFile(out, "utf8")).split("\n")).toContain("nixship.json");
  });
});

describe("evaluation errors", () => {
  it("a missing output names the hosts' fleet field and the outputs that exist, exit 2", async () => {
    const dir = join(work, "outputs");
    await makeFlake(dir, "README", "nothing secret\n");
    await writeFile(
      join(dir, "nixship.json"),
      JSON.stringify({
        hosts: {
          web1: { address: "10.0.0.1", system: ".#listr" },
          web2: { address: "10.0.0.2", system: ".#listr" },
        },
      }),
    );
    const r = await nixship(["build", "--fleet", join(dir, "nixship.json"), "--json"]);
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stdout)).toEqual({
      error: {
        code: "flake-output-missing",
        message: 'hosts.web1.system, hosts.web2.system: the flake has no output ".#listr"',
        hint: "the flake has lister",
      },
    });
  });

  it("a missing flake directory names the hosts' fleet field, the path and the fix, exit 2", async () => {
    const dir = join(work, "no-flake");
    await runOk("mkdir", ["-p", join(dir, "empty")]);
    const fleet = join(dir, "nixship.json");
    await writeFile(
      fleet,
      JSON.stringify({
        hosts: {
          web1: { address: "10.0.0.1", system: "./nosuch#web" },
          web2: { address: "10.0.0.2", system: "./nosuch#web" },
        },
      }),
    );
    const r = await nixship(["build", "--fleet", fleet, "--json"]);
    expect(r.code, r.stderr).toBe(2);
    expect(JSON.parse(r.stdout)).toEqual({
      error: {
        code: "flake-missing",
        message: `hosts.web1.system, hosts.web2.system: the flake directory ${join(dir, "nosuch")} does not exist`,
        hint: `fix the path (a relative one is relative to the fleet file's directory, ${dir}), or make the flake there ('nix flake init')`,
      },
    });
    // A directory without a flake.nix is bad input too; and push names its argument.
    await writeFile(
      fleet,
      JSON.stringify({ hosts: { web1: { address: "10.0.0.1", system: "path:./empty#web" } } }),
    );
    const empty = await nixship(["build", "--fleet", fleet]);
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain(
      `error: hosts.web1.system: the flake directory ${join(dir, "empty")} has no flake.nix`,
    );
    const key = join(dir, "push.sec");
    expect((await nixship(["key", "generate", "--name", "k-1", "--out", key])).code).toBe(0);
    const cache = `file://${join(dir, "cache")}`;
    expect((await nixship(["cache", "init", cache])).code).toBe(0);
    const push = await nixship(["push", "./nosuch#web", "--to", cache, "--key", key], {
      cwd: dir,
    });
    expect(push.code).toBe(2);
    expect(push.stderr).toContain(
      `error: './nosuch#web': the flake directory ${join(dir, "nosuch")} does not exist`,
    );
    expect(push.stderr).toContain(`relative to the current directory, ${dir}`);
  });

  it("Nix's own error, without the expression nixship generated", async () => {
    const dir = join(work, "broken");
    await makeFlake(dir, "README", "nothing secret\n");
    await writeFile(join(dir, "flake.nix"), "{ outputs = { self }: { packages = ; }; }\n");
    const r = await nixship(["build", "--fleet", join(dir, "nixship.json")]);
    expect(r.code).toBe(1);
    // Where it is, in the flake's own directory, not in Nix's copy of it.
    expect(r.stderr).toContain(
      `error: evaluating path:${dir} (${join(dir, "flake.nix")}:1:36): syntax error`,
    );
    expect(r.stderr).not.toContain("builtins.getFlake");
    expect(r.stderr).not.toContain("--expr");
  });
});

describe("push resolves an installable as the fleet file does", () => {
  // `.#worker1` names a NixOS configuration here: `nix build .#worker1` would look only in
  // packages and legacyPackages; the fleet file (and push) also in nixosConfigurations.
  const WORKER_FLAKE = `{
  outputs = { self }: {
    nixosConfigurations.worker1.config.system.build.toplevel = derivation {
      name = "nixos-system-worker1";
      system = "x86_64-linux";
      builder = "/bin/sh";
      args = [ "-c" "echo worker1 > $out" ];
    };
  };
}
`;

  it(".#worker1 is the nixosConfiguration's toplevel, the same path `build --fleet` gives", async () => {
    const dir = join(work, "workers");
    await makeFlake(dir, "README", "nothing secret\n");
    await writeFile(join(dir, "flake.nix"), WORKER_FLAKE);
    await writeFile(
      join(dir, "nixship.json"),
      JSON.stringify({ hosts: { worker1: { address: "10.0.0.1", system: ".#worker1" } } }),
    );
    const built = await nixship(["build", "--fleet", join(dir, "nixship.json"), "--json"]);
    expect(built.code, built.stderr).toBe(0);
    const system = (JSON.parse(built.stdout) as { hosts: Record<string, string> }).hosts.worker1;
    expect(system).toMatch(/-nixos-system-worker1$/);

    const key = join(work, "push.sec");
    const made = await nixship(["key", "generate", "--name", "push-1", "--out", key, "--force"]);
    expect(made.code, made.stderr).toBe(0);
    const cache = `file://${join(work, "push-cache")}`;
    const pushed = await nixship(["push", ".#worker1", "--to", cache, "--key", key, "--json"], {
      cwd: dir,
    });
    expect(pushed.code, pushed.stderr).toBe(0);
    expect((JSON.parse(pushed.stdout) as { roots: string[] }).roots).toEqual([system]);

    // A missing output: named as given, with the outputs that exist.
    const missing = await nixship(["push", ".#worker2", "--to", cache, "--key", key, "--json"], {
      cwd: dir,
    });
    expect(missing.code).toBe(2);
    expect(JSON.parse(missing.stdout)).toEqual({
      error: {
        code: "flake-output-missing",
        message: 'the flake has no output ".#worker2"',
        hint: "the flake has nixosConfigurations.worker1",
      },
    });
  });

  it("a plain directory holding a private key is refused by push too, before anything is copied", async () => {
    const dir = join(work, "workers");
    await writeFile(join(dir, "cache.sec"), await readFile(join(work, "push.sec"), "utf8"), {
      mode: 0o600,
    });
    const r = await nixship(
      [
        "push",
        ".#worker1",
        "--to",
        `file://${join(work, "push-cache")}`,
        "--key",
        join(work, "push.sec"),
        "--json",
      ],
      { cwd: dir },
    );
    expect(r.code).toBe(2);
    expect((JSON.parse(r.stdout) as { error: { code: string } }).error.code).toBe(
      "secret-in-flake",
    );
  });
});
