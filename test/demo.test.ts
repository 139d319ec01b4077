// The README's demo (scripts/demo.sh), run as a newcomer runs it: from a fresh copy of the
// checkout, on a machine with no nix.conf at all (an empty /etc/nix, an empty NIX_CONF_DIR, no
// user nix.conf, no NIX_CONFIG) and an empty Nix store (a tmpfs over /nix in a private mount
// namespace, so that every example system really builds, and the machine's store and the other
// tests' paths are not touched). It runs to its end; then no process it started is left but the
// lab it says outlives it, and the command it prints takes that lab down.
import { cp, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run, runOk } from "../support/cli.js";

const CHECKOUT = fileURLToPath(new URL("..", import.meta.url));
/** What a clone holds that the demo and its setup read (dist: the checkout's build). */
const COPIED = [
  "scripts",
  "examples",
  "src",
  "dist",
  "package.json",
  "package-lock.json",
  "tsconfig.json",
  "tsconfig.build.json",
  "tsconfig.client.json",
];

let work: string;
let clone: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-demo-test-"));
  clone = join(work, "nixship");
  await mkdir(clone);
  for (const entry of COPIED) {
    await cp(join(CHECKOUT, entry), join(clone, entry), {
      recursive: true,
      preserveTimestamps: true,
    });
  }
  // The npm packages are the checkout's, each linked from a node_modules of the copy's own,
  // with setup.sh's stamp for this package.json and Node (so setup.sh runs no npm ci, which
  // would empty a node_modules it shares); the build is the one just copied.
  await mkdir(join(clone, "node_modules"));
  for (const entry of await readdir(join(CHECKOUT, "node_modules"))) {
    if (entry.startsWith(".")) continue;
    await symlink(join(CHECKOUT, "node_modules", entry), join(clone, "node_modules", entry));
  }
  await runOk(
    "sh",
    [
      "-c",
      'printf \'%s %s\\n\' "$(sha256sum package.json package-lock.json | sha256sum | cut -c1-64)" "$(node --version)" > node_modules/.nixship-setup',
    ],
    { cwd: clone },
  );
  await writeFile(join(clone, "dist", ".nixship-built"), "");
  await mkdir(join(work, "empty-nix-conf-dir"));
  // /run/netns as `ip netns add` makes it on a machine that had none: a shared mount, which
  // the demo's mount namespace (below) shares.
  await runOk("sh", [
    "-c",
    "mkdir -p /run/netns && { mountpoint -q /run/netns || mount --bind /run/netns /run/netns; } && mount --make-shared /run/netns",
  ]);
});

afterAll(async () => {
  // A demo that failed may leave a process of its own (its copy's path names it): ended here.
  for (const line of await processesMentioning(clone)) {
    try {
      process.kill(Number(line.split(":")[0]));
    } catch {}
  }
  const lab = join(clone, ".nixship-demo", "labs");
  await run(process.execPath, [join(clone, "dist/cli/bin.js"), "lab", "down", "--all"], {
    env: { NIXSHIP_LAB_DIR: lab },
  });
  await rm(work, { recursive: true, force: true });
});

/** Pids of processes whose command line mentions `needle` (other than this test's own). */
async function processesMentioning(needle: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await readdir("/proc")) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (cmdline.includes(needle)) found.push(`${pid}: ${cmdline.replaceAll("\0", " ")}`);
  }
  return found;
}

describe("scripts/demo.sh", () => {
  // A deadline for the whole demo (a lab of 3, three deploys, every example system built).
  it("runs to its end with no nix.conf and an empty store, leaving only the lab it names", {
    timeout: 600_000,
  }, async () => {
    // No NIX_CONFIG (the test suite's own is removed), no nix.conf anywhere Nix 2.8 looks:
    // $NIX_CONF_DIR/nix.conf (and /etc/nix, a tmpfs here), $NIX_USER_CONF_FILES (a file
    // that does not exist) instead of $XDG_CONFIG_HOME and $XDG_CONFIG_DIRS.
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const name of ["NIX_CONFIG", "NIXSHIP_LAB_DIR", "NIX_REMOTE", "NIX_PATH"])
      delete env[name];
    Object.assign(env, {
      NIX_CONF_DIR: join(work, "empty-nix-conf-dir"),
      NIX_USER_CONF_FILES: join(work, "empty-nix-conf-dir", "no-user-nix.conf"),
      XDG_CONFIG_HOME: join(work, "config"),
      XDG_CACHE_HOME: join(work, "cache"),
      NIXSHIP_CACHE_DIR: join(work, "nixship-cache"),
    });
    // The mount namespace keeps the machine's propagation, so that the lab's network
    // namespaces (bound under /run/netns, a shared mount) are seen outside it, as a lab's are;
    // the mounts that hold /etc/nix and /nix are made private first, so that the tmpfs over
    // each stays inside.
    const script = [
      "set -e",
      'mount --make-private "$(findmnt -n -o TARGET -T /etc/nix)"',
      "mount -t tmpfs -o mode=0755 nixship-demo-etc-nix /etc/nix",
      'mount --make-private "$(findmnt -n -o TARGET -T /nix)"',
      "mount -t tmpfs -o mode=0755 nixship-demo-nix /nix",
      'test -z "$(find /etc/nix "$NIX_CONF_DIR" -mindepth 1)"',
      // Its output to files: a process it leaves running holds them, not this test's pipes.
      `exec bash scripts/demo.sh >${join(work, "demo.out")} 2>${join(work, "demo.err")}`,
    ].join("\n");
    const ran = await run(
      "unshare",
      ["--mount", "--propagation", "unchanged", "bash", "-c", script],
      { env, cwd: clone },
    );
    const r = {
      code: ran.code,
      stdout: await readFile(join(work, "demo.out"), "utf8"),
      stderr: `${ran.stderr}${await readFile(join(work, "demo.err"), "utf8")}`,
    };
    const said = `${r.stdout}\n${r.stderr}`;
    expect(r.code, said).toBe(0);
    expect(r.stdout).toContain("demo finished");
    // setup.sh found the packages and the build as they are (no npm ci, no build).
    expect(r.stderr).toContain("setup: npm packages are up to date");
    // It built the example systems in its own empty store, and deployed them.
    expect(r.stderr).toMatch(/built \d+ systems?/);
    expect(r.stdout).toMatch(/demo1 serves: .*web-v1/);
    // Nothing of nixship's is left running: the demo's dashboard ended with it.
    expect(await processesMentioning(clone)).toEqual([]);
    // The lab outlives it, as it says, with the command that takes it down.
    const down = /^ {2}(NIXSHIP_LAB_DIR=\S+ node \S+ lab down --name demo)$/m.exec(r.stdout)?.[1];
    expect(down, r.stdout).toBeDefined();
    const labDir = join(clone, ".nixship-demo", "labs");
    const list = await run(
      process.execPath,
      [join(clone, "dist/cli/bin.js"), "lab", "list", "--json"],
      {
        env: { NIXSHIP_LAB_DIR: labDir },
      },
    );
    const hosts = (JSON.parse(list.stdout) as { hosts: { running: boolean }[] }).hosts;
    expect(hosts.map((h) => h.running)).toEqual([true, true, true]);
    const taken = await run("bash", ["-c", down as string]);
    expect(taken.code, taken.stderr).toBe(0);
    const after = await run(
      process.execPath,
      [join(clone, "dist/cli/bin.js"), "lab", "list", "--json"],
      {
        env: { NIXSHIP_LAB_DIR: labDir },
      },
    );
    expect(JSON.parse(after.stdout).hosts).toEqual([]);
  });
});
