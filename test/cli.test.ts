// The CLI contract: exit codes (0 ok, 1 failed, 2 bad usage or input), errors that name what
// was wrong, --help, --json errors, and the nar commands against nix-store.
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { COMMANDS as ENTRIES, loadCommands } from "../src/cli/commands.js";
import { buildNar, narNode } from "../src/nix/nar-write.js";
import { generatedKey, NIXSHIP_BIN, nixStoreDump, nixship } from "../support/cli.js";
import { buildFixtureClosure } from "./support/fixture-closure.js";
import { narTokens } from "./support/nar-bytes.js";

let work: string;
let key: string;
let root: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-cli-"));
  key = join(work, "k.sec");
  await nixship(["key", "generate", "--name", "cli-1", "--out", key]);
  root = await buildFixtureClosure();
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe("usage errors exit 2 and say what is wrong", () => {
  it.each([
    [["frobnicate"], /unknown command 'frobnicate'\nhint: run 'nixship --help'/],
    // A typo gets the command it was likely meant to be; an option before the command, why.
    [["deplyo"], /unknown command 'deplyo'\nhint: did you mean 'nixship deploy'\?/],
    [["lab", "upp"], /unknown command 'lab upp'\nhint: did you mean 'nixship lab up'\?/],
    [
      ["agent", "--once", "--config", "/nonexistent/agent.json"],
      /cannot read the agent's config \/nonexistent\/agent.json: no such file or directory \(ENOENT\)\nhint: write the config/,
    ],
    // Never read whole: a device that never ends is refused before a byte of it is kept.
    [
      ["agent", "status", "--config", "/dev/zero"],
      /cannot read the agent's config \/dev\/zero: not a regular file\nhint: write the config/,
    ],
    [
      ["plan", "--fleet", "/nonexistent/nixship.json"],
      /cannot read the fleet file \/nonexistent\/nixship.json: no such file\nhint: create it \('nixship init'.*--fleet.*\$NIXSHIP_FLEET/,
    ],
    // A bad flag is said before the fleet is read, by the command that was given it.
    [
      ["plan", "--fleet", "/nonexistent/nixship.json", "--max-connections", "0"],
      /^error: plan: --max-connections must be a whole number ≥ 1, got '0'/,
    ],
    [
      ["status", "--fleet", "/nonexistent/nixship.json", "--max-connections", "100001"],
      /^error: status: --max-connections takes at most 100000, got '100001'/,
    ],
    // `--fleet "$FLEET"` with FLEET unset names no fleet: never the one that happens to be here.
    [["plan", "--fleet", ""], /^error: plan: --fleet is empty\nhint: name a fleet file/],
    [["deploy", "--fleet", " "], /^error: deploy: --fleet is empty/],
    [["push", "ROOT", "--fleet", "", "--key", "KEY"], /^error: push: --fleet is empty/],
    [["cache", "pins", "--fleet", ""], /^error: --fleet is empty/],
    [
      ["key", "generate", "--name", "", "--out", "/tmp/x.sec"],
      /^error: key generate: --name is empty/,
    ],
    [
      ["rollout", "resume", "abc123", "--store", "file:///tmp/x"],
      /rollout resume: 'abc123' is not a rollout's id \(8 to 32 lowercase hex digits/,
    ],
    [["lab", "up", "abc"], /^error: lab up: N is the number of hosts, a whole number; got 'abc'/],
    [
      ["ssm", "document", "--script", "--json"],
      /^error: ssm document: --script prints a shell script, not JSON/,
    ],
    [["--verbose", "deploy"], /'--verbose' comes before a command: options follow the command/],
    [
      ["deploy", "--paralel", "2"],
      /deploy: Unknown option '--paralel'\nhint: did you mean --parallel\?/,
    ],
    [["key"], /'nixship key' needs a subcommand.*\n.*takes one of: generate, public/],
    [["push", "/nix/store/x"], /--to is required|is not a valid store path/],
    [["push", "--to", "file:///tmp/x", "--key", "k"], /name at least one installable/],
    [
      ["push", "ROOT", "--to", "file:///tmp/x", "--key", "KEY", "--compression", "lz4"],
      /--compression must be one of zstd, xz, none, got 'lz4'/,
    ],
    [
      ["push", "ROOT", "--to", "file:///tmp/x", "--key", "KEY", "--jobs", "0"],
      /--jobs must be a whole number ≥ 1, got '0'/,
    ],
    // A negative number is the flag's value, refused by the flag's own rule.
    [
      ["push", "ROOT", "--to", "file:///tmp/x", "--key", "KEY", "--jobs", "-1"],
      /--jobs must be a whole number ≥ 1, got '-1'/,
    ],
    // Past the largest exact whole number, the limit it passed is named.
    [
      ["push", "ROOT", "--to", "file:///tmp/x", "--key", "KEY", "--jobs", "99999999999999999999"],
      /--jobs must be a whole number from 1 to 9007199254740991, got '99999999999999999999'/,
    ],
    [
      ["push", "ROOT", "--to", "file:///tmp/x", "--key", "KEY", "--level", "22"],
      /--level for zstd must be from 1 to 19, got 22/,
    ],
    [
      [
        "push",
        "ROOT",
        "--to",
        "file:///tmp/x",
        "--key",
        "KEY",
        "--compression",
        "none",
        "--level",
        "3",
      ],
      /--level has no meaning with --compression none/,
    ],
    [["push", "ROOT", "--to", "ftp://x/y", "--key", "KEY"], /ftp:\/\/x\/y/],
    [["push", "ROOT", "--to", "relative/dir", "--key", "KEY"], /relative\/dir/],
    [
      ["push", "ROOT", "--to", "file:///tmp/x", "--key", "/nonexistent.sec"],
      /--key \/nonexistent\.sec: no such file\nhint: make one with 'nixship key generate --name NAME --out \/nonexistent\.sec'/,
    ],
    [
      ["push", "ROOT", "--to", "file:///tmp/x", "--key", "KEY", "--bogus"],
      /push: Unknown option '--bogus'/,
    ],
    [["verify", "--cache", "file:///tmp/x"], /at least one --trusted-key is required/],
    [
      ["verify", "--cache", "file:///tmp/x", "--trusted-key", "k:AAAA"],
      /public key 'k' must hold 32 bytes/,
    ],
    [
      ["verify", "--cache", "file:///tmp/x", "--trusted-key", "/no/such/file"],
      /--trusted-key \/no\/such\/file: no such file\nhint: give the public key itself \(NAME:BASE64/,
    ],
    [
      ["verify", "--cache", "file:///tmp/x", "--trusted-key", "/etc"],
      /--trusted-key '\/etc' is neither a public key .* nor a readable file \(not a regular file\)/,
    ],
    [
      ["fetch", "ROOT", "--from", "file:///tmp/x", "--trusted-key", "PUB"],
      /choose exactly one of --import and --restore DIR/,
    ],
    [
      ["fetch", "/nix/store/bad", "--from", "file:///tmp/x", "--trusted-key", "PUB", "--import"],
      /STORE_PATH '\/nix\/store\/bad'/,
    ],
    [["cache", "serve", "file:///tmp/x", "--listen", "nohost"], /--listen must be HOST:PORT/],
    // Words a command takes none of are refused, not ignored.
    [["agent", "pause", "extra"], /agent pause: unexpected argument 'extra'/],
    [["lab", "ssh-config", "extra"], /lab ssh-config: unexpected argument 'extra'/],
    // release refresh selects no host: --on would be ignored, so it is refused.
    [["release", "refresh", "--on", "web1"], /release refresh: Unknown option '--on'/],
  ])("nixship %j", async (args, message) => {
    const pub = (await nixship(["key", "public", key])).stdout.trim();
    const real = args.map((a) => (a === "ROOT" ? root : a === "KEY" ? key : a === "PUB" ? pub : a));
    const r = await nixship(real);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).toMatch(/^error: /);
  });

  it("a directory where a file is named: bad input (exit 2), in words, with what the flag takes", async () => {
    const dir = join(work, "dir-for-files");
    await mkdir(join(dir, "cache"), { recursive: true });
    await writeFile(join(dir, "cache", "nix-cache-info"), "StoreDir: /nix/store\n");
    const pub = (await nixship(["key", "public", key])).stdout.trim();
    const outputs = join(dir, "out.json");
    const output = (value: unknown) => ({ sensitive: false, type: "string", value });
    await writeFile(
      outputs,
      JSON.stringify({
        cache_url: output(`file://${join(dir, "cache")}`),
        region: output("eu-west-1"),
        ssm_document_name: output("nixship-activate"),
        hosts: output({
          web1: {
            instance_id: "i-0123456789abcdef0",
            private_ip: "10.0.0.5",
            public_ip: "",
            ssh_host_public_key: "",
            tags: {},
          },
        }),
      }),
    );
    const system = `/nix/store/${"a".repeat(32)}-nixos-system-x`;
    const args = ["fleet", "from-terraform", outputs, "--system", system, "--cache-key", pub];
    const r = await nixship([...args, "--via", "ssh", "--known-hosts", dir, "--json"]);
    expect(r.code, r.stdout).toBe(2);
    expect(JSON.parse(r.stdout)).toMatchObject({
      error: {
        code: "known-hosts-unreadable",
        message: `cannot read ${dir}: it is not a regular file (ENOTFILE)`,
        hint: "--known-hosts names the known_hosts file to update (made when it is not there)",
      },
    });
  });

  it("a fleet named by $NIXSHIP_FLEET that does not read says where its name came from", async () => {
    const r = await nixship(["status", "--stored"], {
      env: { ...process.env, NIXSHIP_FLEET: "/nonexistent/env-fleet.json" },
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /^error: the fleet \$NIXSHIP_FLEET names: cannot read the fleet file \/nonexistent\/env-fleet.json: no such file/,
    );
  });

  it("release publish of an ssh host names what it takes, not deploy's --via", async () => {
    const dir = join(work, "publish-mixed");
    await mkdir(join(dir, "cache"), { recursive: true });
    await writeFile(join(dir, "cache", "nix-cache-info"), "StoreDir: /nix/store\n");
    const cache = await generatedKey(dir, "mixed-cache-1");
    const release = await generatedKey(dir, "mixed-release-1");
    const system = `/nix/store/${"a".repeat(32)}-nixos-system-x`;
    const fleet = join(dir, "fleet.json");
    await writeFile(
      fleet,
      JSON.stringify({
        cache: { url: `file://${join(dir, "cache")}`, publicKeys: [cache.publicKey] },
        releases: { channel: "prod", publicKeys: [release.publicKey] },
        hosts: { web1: { address: "192.0.2.1", system }, a1: { delivery: "agent", system } },
      }),
    );
    const r = await nixship([
      "release",
      "publish",
      "--fleet",
      fleet,
      "--key",
      cache.file,
      "--release-key",
      release.file,
      "--json",
    ]);
    expect(r.code, r.stderr).toBe(2);
    const { error } = JSON.parse(r.stdout) as { error: { message: string; hint: string } };
    expect(error.message).toBe(
      "release publish releases to agent hosts only, but web1 is delivered by ssh in the fleet file",
    );
    expect(error.hint).toBe(
      "select the agent hosts with --on, or deploy the others with 'nixship deploy'",
    );
  });

  it("push says when it made a new cache, so that a mistyped URL does not pass unseen", async () => {
    const url = `file://${join(work, "new-cache")}`;
    const first = await nixship(["push", root, "--to", url, "--key", key]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toContain(`created a new binary cache at ${url} (it had none)`);
    const json = await nixship(["push", root, "--to", url, "--key", key, "--json"]);
    expect(JSON.parse(json.stdout)).not.toHaveProperty("createdCache");
    const again = await nixship(["push", root, "--to", url, "--key", key]);
    expect(again.stderr).not.toContain("created a new binary cache");
  });

  it("terraform vars, whose stdout Terraform reads whole, says its errors on stderr alone, --json or not", async () => {
    const r = await nixship(["terraform", "vars", "--json"]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/^error: terraform vars: Unknown option '--json'/);
  });

  it("timeouts given as flags end within a day, as the fleet file's", async () => {
    const fleet = join(work, "timeouts-fleet.json");
    await writeFile(
      fleet,
      JSON.stringify({ hosts: { h1: { address: "192.0.2.1", system: root } } }),
    );
    for (const [args, message] of [
      [
        ["rollback", "--on", "h1", "--activation-timeout", "5000000"],
        "rollback: --activation-timeout must be a whole number from 1 to 86400, got '5000000'",
      ],
      [
        ["deploy", "--confirm-timeout", "86401"],
        "deploy: --confirm-timeout must be a whole number from 0 to 86400, got '86401'",
      ],
      [
        ["deploy", "--reboot-timeout", "0"],
        "deploy: --reboot-timeout must be a whole number from 1 to 86400, got '0'",
      ],
    ] as const) {
      const r = await nixship([...args, "--fleet", fleet]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(message);
    }
  });

  it("plans with --serve-cache what the deploy would refuse, and refuses it as the deploy does", async () => {
    const bare = join(work, "serve-fleet.json");
    await writeFile(
      bare,
      JSON.stringify({ hosts: { h1: { address: "192.0.2.1", system: root } } }),
    );
    for (const command of ["plan", "deploy", "rollback"]) {
      const r = await nixship([command, "--fleet", bare, "--serve-cache", "10.0.0.1:0"]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(`${command}: --serve-cache needs a cache in the fleet file`);
    }
    const cached = join(work, "serve-cached-fleet.json");
    const publicKey = (await nixship(["key", "public", key])).stdout.trim();
    await writeFile(
      cached,
      JSON.stringify({
        cache: { url: `file://${join(work, "serve-cache")}`, publicKeys: [publicKey] },
        hosts: { h1: { address: "192.0.2.1", system: root } },
      }),
    );
    const loopback = await nixship(["plan", "--fleet", cached, "--serve-cache", "127.0.0.1:0"]);
    expect(loopback.code, loopback.stderr).toBe(2);
    expect(loopback.stderr).toContain(
      "--serve-cache 127.0.0.1:0 is a loopback address, which only this machine reaches: h1 would fail",
    );
  });

  it("prints JSON errors on stdout under --json", async () => {
    const r = await nixship([
      "verify",
      "--cache",
      "nope://x",
      "--trusted-key",
      (await nixship(["key", "public", key])).stdout.trim(),
      "--json",
    ]);
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stdout).error).toMatchObject({ code: "bad-store-url" });
  });

  it("refuses to overwrite a key without --force", async () => {
    const r = await nixship(["key", "generate", "--name", "x", "--out", key]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/already exists; pass --force/);
    expect((await nixship(["key", "generate", "--name", "x", "--out", key, "--force"])).code).toBe(
      0,
    );
    await nixship(["key", "generate", "--name", "cli-1", "--out", key, "--force"]);
  });
});

describe("secrets are never echoed", () => {
  it("refuses the key text where its file belongs, in text and --json, and never shows it", async () => {
    const text = (await readFile(key, "utf8")).trim();
    const body = text.slice(text.indexOf(":") + 1);
    const shown = (out: string) =>
      Array.from({ length: body.length - 5 }, (_, i) => body.slice(i, i + 6)).filter((run) =>
        out.includes(run),
      );
    const runs = [
      ["push", root, "--to", `file://${join(work, "c")}`, "--key", text],
      ["push", root, "--to", `file://${join(work, "c")}`, "--key", text, "--json"],
      ["key", "public", text],
      [
        "cache",
        "serve",
        `file://${join(work, "c")}`,
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        text,
      ],
    ];
    for (const args of runs) {
      const r = await nixship(args);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.stderr + r.stdout).toContain("looks like the secret itself (not shown)");
      expect(shown(r.stderr + r.stdout), args.join(" ")).toEqual([]);
    }
    // The release key's environment variable too (read for agent hosts).
    const pub = (await nixship(["key", "public", key])).stdout.trim();
    const fleet = join(work, "agent-fleet.json");
    await writeFile(
      fleet,
      JSON.stringify({
        cache: { url: `file://${join(work, "c")}`, publicKeys: [pub] },
        releases: { channel: "p", publicKeys: [pub] },
        hosts: { a1: { delivery: "agent", system: root } },
      }),
    );
    const env = await nixship(["rollback", "--fleet", fleet, "--json"], {
      env: { NIXSHIP_RELEASE_KEY: text },
    });
    expect(env.code, env.stderr).toBe(2);
    expect(env.stdout).toContain("looks like the secret itself (not shown)");
    expect(shown(env.stderr + env.stdout)).toEqual([]);
  });

  it("refuses a key file others may read, naming the fix", async () => {
    const open = join(work, "open.sec");
    await writeFile(open, await readFile(key, "utf8"), { mode: 0o644 });
    await chmod(open, 0o644);
    const r = await nixship(["key", "public", open]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`secret key file ${open} may be read by others (mode 0644)`);
    expect(r.stderr).toContain(`hint: chmod 600 ${open}`);
  });
});

// Every command, loaded: each entry's own path must be the table's (loadCommand checks it).
const COMMANDS = await loadCommands();

describe("the command table", () => {
  it("loads, for each entry, the command its words name", () => {
    expect(COMMANDS.map((c) => c.path.join(" "))).toEqual(ENTRIES.map((e) => e.path.join(" ")));
  });
});

describe("help for every command and group", () => {
  // Groups whose first word is not a command of its own (`agent` is one: its help is its own).
  const groups = [
    ...new Set(COMMANDS.filter((c) => c.path.length > 1).map((c) => c.path[0])),
  ].filter((g) => !COMMANDS.some((c) => c.path.length === 1 && c.path[0] === g));

  it.each(COMMANDS.map((c) => [c.path.join(" ")]))(
    "'%s --help' and 'help %s' print its usage",
    async (path) => {
      const words = path.split(" ");
      const flag = await nixship([...words, "--help"]);
      expect(flag.code, flag.stderr).toBe(0);
      expect(flag.stdout).toMatch(new RegExp(`^Usage: nixship ${path}( |\n|$)`));
      const asked = await nixship(["help", ...words]);
      expect(asked.code, asked.stderr).toBe(0);
      expect(asked.stdout).toBe(flag.stdout);
    },
  );

  it.each(groups.map((g) => [g]))(
    "'%s --help' lists each of its subcommands with a line",
    async (group) => {
      const r = await nixship([group as string, "--help"]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^Usage: nixship ${group} SUBCOMMAND`));
      for (const c of COMMANDS.filter((x) => x.path[0] === group && x.path.length > 1)) {
        expect(r.stdout).toContain(`  ${c.path.slice(1).join(" ")}`);
        expect(r.stdout).toContain(c.summary);
      }
      expect((await nixship(["help", group as string])).stdout).toBe(r.stdout);
    },
  );

  it("'agent --help', a command with subcommands of its own, names each of them", async () => {
    const r = await nixship(["agent", "--help"]);
    expect(r.code).toBe(0);
    for (const c of COMMANDS.filter((x) => x.path[0] === "agent" && x.path.length > 1)) {
      expect(r.stdout).toContain(`  nixship ${c.path.join(" ")} `);
    }
  });

  it("'version' and '--version' print the package's version", async () => {
    const pkg = JSON.parse(await readFile(new URL("../package.json", import.meta.url), "utf8")) as {
      version: string;
    };
    for (const args of [["version"], ["--version"]]) {
      const r = await nixship(args);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(`${pkg.version}\n`);
    }
  });

  it("no command: the list on stdout, and on stderr the fault, exit 2; help's own help is the list", async () => {
    const bare = await nixship([]);
    expect(bare.code).toBe(2);
    expect(bare.stdout).toMatch(/^nixship \d+\.\d+\.\d+: build NixOS systems once/);
    expect(bare.stderr).toBe(
      "error: name a command\nhint: the commands are listed above; run 'nixship --help'\n",
    );
    for (const args of [["help", "help"], ["help", "--help"], ["--help"]]) {
      const r = await nixship(args);
      expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(0);
      expect(r.stdout).toBe(bare.stdout);
    }
  });

  it("'version' takes --json and --help, and refuses anything else", async () => {
    const json = await nixship(["version", "--json"]);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual({ version: expect.stringMatching(/^\d+\.\d+\.\d+$/) });
    expect((await nixship(["version", "--help"])).stdout).toMatch(
      /^Usage: nixship version \[--json\]/,
    );
    const extra = await nixship(["version", "extra"]);
    expect(extra.code).toBe(2);
    expect(extra.stderr).toBe(
      "error: version: unexpected argument 'extra'\nhint: see 'nixship version --help'\n",
    );
    expect((await nixship(["version", "--bogus"])).code).toBe(2);
  });

  it("a usage error that names no fix of its own points at the command's help", async () => {
    for (const [args, message] of [
      [["key", "public"], "key public: expects exactly one SECRET_FILE"],
      [["fetch"], "fetch: expects exactly one STORE_PATH"],
      [["cache", "unpin"], "cache unpin: expects exactly one pin NAME"],
    ] as const) {
      const r = await nixship(args);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toBe(`error: ${message}\nhint: see 'nixship ${args.join(" ")} --help'\n`);
    }
  });

  it("a cache URL given as a word to a command that takes --cache names the flag", async () => {
    for (const command of ["stats", "gc", "pins"]) {
      const r = await nixship(["cache", command, "file:///var/cache/x"]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toBe(
        `error: cache ${command}: unexpected argument 'file:///var/cache/x'\nhint: name the cache with --cache URL (or --fleet FILE)\n`,
      );
    }
  });

  it("key generate and key public --json: the key's name, its public key, and the file", async () => {
    const file = join(work, "json-key.sec");
    const made = await nixship([
      "key",
      "generate",
      "--name",
      "cache.example.org-1",
      "--out",
      file,
      "--json",
    ]);
    expect(made.code, made.stderr).toBe(0);
    const generated = JSON.parse(made.stdout) as Record<string, string>;
    expect(generated).toEqual({
      name: "cache.example.org-1",
      publicKey: expect.stringMatching(/^cache\.example\.org-1:[A-Za-z0-9+/]{43}=$/),
      file,
    });
    const read = await nixship(["key", "public", file, "--json"]);
    expect(read.code, read.stderr).toBe(0);
    expect(JSON.parse(read.stdout)).toEqual(generated);
    const plain = await nixship(["key", "public", file]);
    expect(plain.stdout).toBe(`${generated.publicKey}\n`);
  });

  it("'nar ls' and 'nar restore' with nothing on stdin say so, and how to give a NAR", async () => {
    const ls = await nixship(["nar", "ls"], { input: Buffer.alloc(0) });
    expect(ls.code).toBe(2);
    expect(ls.stderr).toBe(
      "error: nar ls: stdin was empty: no NAR to read\nhint: pipe one in: nixship nar dump PATH | nixship nar ls (or < file.nar)\n",
    );
    const dir = join(work, "empty-restore");
    const restore = await nixship(["nar", "restore", dir], { input: Buffer.alloc(0) });
    expect(restore.code).toBe(2);
    expect(restore.stderr).toContain("error: nar restore: stdin was empty: no NAR to read\n");
    await expect(readdir(dir)).rejects.toThrow(/ENOENT/);
  });

  it("an unknown command is a usage error, as JSON under --json", async () => {
    const r = await nixship(["lab", "frob", "--json"]);
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stdout)).toEqual({
      error: {
        code: "usage",
        message: "unknown command 'lab frob'",
        hint: expect.stringContaining(
          "'lab' takes one of: up, down, list, exec, agents, reboot, ssh-config",
        ),
      },
    });
    const help = await nixship(["help", "frobnicate"]);
    expect(help.code).toBe(2);
    expect(help.stderr).toContain("unknown command 'frobnicate'");
    // Options after an unknown command are not part of its name.
    const asked = await nixship(["frobnicate", "--help"]);
    expect(asked.code).toBe(2);
    expect(asked.stderr).toContain("unknown command 'frobnicate'\n");
  });
});

describe("help", () => {
  it("lists every command and explains each one", async () => {
    const top = await nixship(["--help"]);
    expect(top.code).toBe(0);
    for (const c of [
      "key generate",
      "key public",
      "push",
      "verify",
      "fetch",
      "cache serve",
      "nar dump",
      "nar restore",
      "nar ls",
    ]) {
      expect(top.stdout).toContain(c);
      const help = await nixship([...c.split(" "), "--help"]);
      expect(help.code).toBe(0);
      expect(help.stdout).toMatch(/^Usage: nixship /);
    }
  });
});

describe("operation failures exit 1", () => {
  it("verify, cache stats, cache gc, fetch and release list of a URL that holds no cache: one refusal (a typo must not pass as 0 paths checked, a path missing or no releases)", async () => {
    const pub = (await nixship(["key", "public", key])).stdout.trim();
    const url = `file://${work}/no-such-cache`;
    for (const args of [
      ["verify", "--cache", url, "--trusted-key", pub],
      ["cache", "stats", "--cache", url],
      ["cache", "gc", "--cache", url, "--dry-run"],
      ["fetch", root, "--from", url, "--trusted-key", pub, "--restore", join(work, "typo-restore")],
      ["release", "list", "--channel", "prod", "--store", url],
    ]) {
      const r = await nixship(args);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.stderr).toContain(`${url} holds no binary cache (it has no nix-cache-info)`);
      expect(r.stderr).toContain(
        `hint: check the URL for a typo; to start a new cache there, run 'nixship cache init ${url}'`,
      );
    }
  });

  it("cache gc's numbers in anything but digits: refused before the cache is read, saying how to write them", async () => {
    for (const [flag, value] of [
      ["--keep-days", "1e99"],
      ["--grace", "-1"],
      ["--price", "0x10"],
      ["--keep-days", "7d"],
    ] as const) {
      const r = await nixship([
        "cache",
        "gc",
        "--cache",
        `file://${work}/no-such-cache`,
        flag,
        value,
      ]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(
        `cache gc: ${flag} must be a number ≥ 0 written in digits (as 7 or 0.5), got '${value}'`,
      );
    }
  });

  it("cache init where nix-cache-info is a directory: refused, not said made (stats would send the user back to init)", async () => {
    const dir = join(work, "info-is-a-dir");
    await mkdir(join(dir, "nix-cache-info"), { recursive: true });
    const r = await nixship(["cache", "init", `file://${dir}`, "--json"]);
    expect(r.code, r.stdout).toBe(2);
    expect(JSON.parse(r.stdout)).toMatchObject({
      error: {
        code: "bad-cache-info",
        message: `file://${dir}: nix-cache-info is there, but is not a file a reader takes (a directory?)`,
        hint: `remove it, then run 'nixship cache init file://${dir}' again`,
      },
    });
  });

  it("fetch --restore into a directory that is not there: exit 2 before a byte is read, for a NAR of any size", async () => {
    // 4 MiB: more than the stream between the read and the restore holds. A restore that
    // failed before reading left the read waiting on it for good.
    const big = join(work, "restore-big");
    await writeFile(big, randomBytes(4 << 20));
    const path = spawnSync("nix-store", ["--add", big], { encoding: "utf8" }).stdout.trim();
    expect(path).toMatch(/-restore-big$/);
    const cache = `file://${work}/restore-cache`;
    const pushed = await nixship([
      "push",
      path,
      "--to",
      cache,
      "--key",
      key,
      "--compression",
      "none",
    ]);
    expect(pushed.code, pushed.stderr).toBe(0);
    const pub = (await nixship(["key", "public", key])).stdout.trim();
    const into = join(work, "no-such-parent", "out");
    const r = await nixship([
      "fetch",
      path,
      "--from",
      cache,
      "--trusted-key",
      pub,
      "--restore",
      into,
    ]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain(
      `error: cannot restore into '${into}': ${dirname(into)} is not a directory that exists\n`,
    );
    expect(r.stderr).not.toMatch(/bug in nixship|is not the NAR/);
  });

  it("fetch of a path the cache does not have", async () => {
    const pub = (await nixship(["key", "public", key])).stdout.trim();
    expect((await nixship(["cache", "init", `file://${work}/empty`])).code).toBe(0);
    const r = await nixship([
      "fetch",
      root,
      "--from",
      `file://${work}/empty`,
      "--trusted-key",
      pub,
      "--restore",
      join(work, "r"),
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${root} is not in the cache`);
  });
});

describe("faults of the machine get a hint, not a bug report", () => {
  it("an address no interface has (cache serve --listen)", async () => {
    const cache = `file://${join(work, "served-cache")}`;
    expect((await nixship(["cache", "init", cache])).code).toBe(0);
    const r = await nixship(["cache", "serve", cache, "--listen", "10.254.254.254:0"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^error: listen EADDRNOTAVAIL: address not available 10\.254\.254\.254/,
    );
    expect(r.stderr).toContain("hint: no network interface of this machine has that address");
    expect(r.stderr).not.toMatch(/bug in nixship/);
  });
});

describe("nar commands", () => {
  it("nar dump matches nix-store --dump and nar restore round-trips it", async () => {
    const bytes = nixStoreDump(root);
    const ours = spawnSync(process.execPath, [NIXSHIP_BIN, "nar", "dump", root], {
      maxBuffer: 1 << 28,
    });
    expect(ours.status).toBe(0);
    expect(ours.stdout.equals(bytes)).toBe(true);
    const dir = join(work, "restored");
    const restore = await nixship(["nar", "restore", dir], { input: bytes });
    expect(restore.code, restore.stderr).toBe(0);
    expect(nixStoreDump(dir).equals(bytes)).toBe(true);
  });

  it("nar dump of a path that is not there, or a tree holding a named pipe: a clear error, exit 2", async () => {
    const missing = join(work, "no-such-path");
    const gone = await nixship(["nar", "dump", missing]);
    expect(gone.code).toBe(2);
    expect(gone.stderr).toBe(
      `error: nar dump: cannot read ${missing}: no such file or directory\n`,
    );
    const tree = join(work, "with-pipe");
    await mkdir(tree);
    spawnSync("mkfifo", [join(tree, "p")]);
    const pipe = await nixship(["nar", "dump", tree]);
    expect(pipe.code).toBe(2);
    expect(pipe.stderr).toBe(
      `error: cannot put '${join(tree, "p")}' in a NAR: it is a fifo, not a regular file, directory or symlink\n`,
    );
  });

  it("stops quietly when its reader goes away (nixship ... | head)", () => {
    // The fixture's lib path holds a 9 MB file: far more than a pipe buffer.
    const lib = spawnSync("nix-store", ["-qR", root], { encoding: "utf8" })
      .stdout.split("\n")
      .find((p) => p.endsWith("-nixship-fixture-lib"));
    expect(lib).toBeDefined();
    // biome-ignore lint/suspicious/noTemplateCurlyInString: ${PIPESTATUS[0]} is bash, not JS.
    const script = '"$0" "$1" nar dump "$2" | head -c 10 >/dev/null; exit "${PIPESTATUS[0]}"';
    const run = spawnSync("bash", ["-c", script, process.execPath, NIXSHIP_BIN, lib as string]);
    expect(run.stderr.toString()).toBe("");
    expect(run.status).toBe(0);
  });

  it("nar ls lists entries, and --json gives them as data", async () => {
    const nar = buildNar(
      narNode.directory([["bin", narNode.directory([["hi", narNode.regular("echo", true)]])]]),
    );
    const plain = await nixship(["nar", "ls"], { input: nar });
    expect(plain.stdout).toContain("./bin/hi");
    const json = await nixship(["nar", "ls", "--json"], { input: nar });
    expect(JSON.parse(json.stdout)).toContainEqual(
      expect.objectContaining({ path: "bin/hi", executable: true }),
    );
  });

  it("nar ls lists a small NAR whose listing is larger than a string may be (each line holds its whole path), as text and as JSON", async () => {
    // 62 directories of 254-byte names, then 50,000 files: a 9.6 MB NAR, a listing of 793 MB.
    const parts: Buffer[] = [narTokens("nix-archive-1", "(", "type", "directory")];
    for (let d = 0; d < 62; d++) {
      const name = `d${String(d).padStart(3, "0")}${"x".repeat(250)}`;
      parts.push(narTokens("entry", "(", "name", name, "node", "(", "type", "directory"));
    }
    for (let i = 0; i < 50_000; i++) {
      const name = String(i).padStart(10, "0");
      parts.push(narTokens("entry", "(", "name", name, "node", "(", "type", "regular"));
      parts.push(narTokens("contents", "", ")", ")"));
    }
    for (let d = 0; d < 62; d++) parts.push(narTokens(")", ")"));
    parts.push(narTokens(")"));
    const file = join(work, "deep.nar");
    await writeFile(file, Buffer.concat(parts));
    for (const [flag, lines] of [
      ["", 62 + 50_000],
      ["--json", 2 + 63 + 50_000],
    ] as const) {
      // Counted by wc as it streams by: the test holds none of it.
      const r = spawnSync(
        "bash",
        [
          "-c",
          `"$0" "$1" nar ls ${flag} < "$2" | wc -l; exit "\${PIPESTATUS[0]}"`,
          process.execPath,
          NIXSHIP_BIN,
          file,
        ],
        { encoding: "utf8" },
      );
      expect(r.stderr, flag).toBe("");
      expect(r.status, flag).toBe(0);
      expect(Number(r.stdout.trim()), flag).toBe(lines);
    }
  });

  it("an interrupt while no command traps one exits 130 saying so (--json: the error object); a trap takes it over", async () => {
    // The module the executable imports first, then a wait with no trap of its own (as a
    // command that leaves interrupts to the default, or the rest of nixship still loading).
    const early = join(dirname(NIXSHIP_BIN), "early-interrupts.js");
    const run = async (body: string, args: string[]) => {
      const child = spawn(
        process.execPath,
        [
          "--input-type=module",
          "-e",
          `await import(${JSON.stringify(early)}); ${body}`,
          "--",
          ...args,
        ],
        { stdio: ["ignore", "pipe", "pipe"] },
      );
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d: Buffer) => {
        stdout += d.toString();
        if (stdout.includes("ready\n")) child.kill("SIGINT");
      });
      child.stderr.on("data", (d: Buffer) => {
        stderr += d.toString();
      });
      const code = await new Promise<number | null>((done) => child.on("close", done));
      return { code, stdout, stderr };
    };
    const wait = `console.log("ready"); setTimeout(() => {}, 60_000);`;
    const plain = await run(wait, []);
    expect(plain).toEqual({
      code: 130,
      stdout: "ready\n",
      stderr: "error: interrupted (SIGINT)\n",
    });
    const json = await run(wait, ["--json"]);
    expect(json.code).toBe(130);
    expect(JSON.parse(json.stdout.replace("ready\n", ""))).toEqual({
      error: { code: "interrupted", message: "interrupted (SIGINT)" },
    });
    // A command's own trap has the signal: the early handler leaves it be.
    const trapped = await run(
      `process.on("SIGINT", () => { console.log("trapped"); process.exit(7); }); ${wait}`,
      [],
    );
    expect(trapped).toEqual({ code: 7, stdout: "ready\ntrapped\n", stderr: "" });
    // The last words are said before it exits (a file half-replaced removed, util/atomic-file.ts),
    // also at a signal after a trap let go of the first one (the agent's service stop does).
    const lastWords = join(dirname(NIXSHIP_BIN), "..", "util", "last-words.js");
    const sayer = `const { onLastWord } = await import(${JSON.stringify(lastWords)}); onLastWord(async () => console.log("last word"));`;
    expect(await run(`${sayer} ${wait}`, [])).toEqual({
      code: 130,
      stdout: "ready\nlast word\n",
      stderr: "error: interrupted (SIGINT)\n",
    });
    const letGo = `process.once("SIGINT", () => { console.log("first"); setTimeout(() => process.kill(process.pid, "SIGINT"), 50); });`;
    expect(await run(`${sayer} ${letGo} ${wait}`, [])).toEqual({
      code: 130,
      stdout: "ready\nfirst\nlast word\n",
      stderr: "error: interrupted (SIGINT)\n",
    });
  });

  it("nar restore refuses a malformed NAR with exit 2, leaving nothing", async () => {
    const bad = Buffer.concat([buildNar(narNode.regular("x")), Buffer.from("trailing garbage")]);
    await writeFile(join(work, "bad.nar"), bad);
    const dir = join(work, "bad-restore");
    const r = await nixship(["nar", "restore", dir], { input: bad });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^error: .*trailing/m);
    expect((await readdir(work)).filter((n) => n.includes("bad-restore"))).toEqual([]);
  });
});
