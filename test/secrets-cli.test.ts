// `nixship secrets set|edit|rekey|list` end to end with the built CLI: real host keys (from a
// known_hosts file through ssh's own lookup, and a `hostKey`), a real admin age identity, the
// real `age` CLI decrypting as a host would, and the plaintext in no output and no file but
// the ciphertexts.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { chmod } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encryptSecret, parseRecipient, readAgeHeader } from "../src/age/age.js";
import { InterruptedError } from "../src/errors.js";
import { loadFleet } from "../src/fleet/load-fleet.js";
import { rekeySecrets } from "../src/secrets/secret-ops.js";
import { type CliRun, NIXSHIP_BIN, nixship } from "../support/cli.js";

const PLAINTEXT = "s3cret-db-password-7f1e9c";
const ROTATED = "rotated-password-2b44d0";
const SYSTEM = "/nix/store/vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-nixos-system-web";

let dir: string;
let fleetFile: string;
let adminIdentity: string;
let adminRecipient: string;
const hostKeys: Record<string, { privateFile: string; publicKey: string }> = {};
const outputs: string[] = [];

function makeHostKey(name: string): void {
  const privateFile = join(dir, `${name}_host_key`);
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", privateFile]);
  const pub = readFileSync(`${privateFile}.pub`, "utf8").trim().split(" ");
  hostKeys[name] = { privateFile, publicKey: `${pub[0]} ${pub[1]}` };
}

type Doc = {
  hosts: Record<string, Record<string, unknown>>;
  secrets: { admins: string[]; entries: Record<string, Record<string, unknown>> };
  [k: string]: unknown;
};

function writeFleet(edit: (doc: Doc) => void = () => {}): void {
  const doc: Doc = {
    cache: {
      url: `file://${join(dir, "cache")}`,
      publicKeys: ["c-1:lWwOmhFw0ds2rFa+bN7VVTYVXK7ujJv76J6gVTXevhM="],
    },
    releases: { channel: "prod", publicKeys: ["r-1:lWwOmhFw0ds2rFa+bN7VVTYVXK7ujJv76J6gVTXevhM="] },
    ssh: { knownHosts: "known_hosts" },
    hosts: {
      web1: { tags: ["web"], address: "10.77.0.1", system: SYSTEM },
      web2: { tags: ["web"], address: "10.77.0.2", system: SYSTEM },
      db1: { tags: ["db"], delivery: "agent", hostKey: hostKeys.db1?.publicKey, system: SYSTEM },
    },
    secrets: {
      admins: [adminRecipient],
      entries: { "db-password": { hosts: "@db" }, "web-token": { hosts: "@web", mode: "0440" } },
    },
  };
  edit(doc);
  writeFileSync(fleetFile, JSON.stringify(doc, null, 2));
}

async function cli(args: string[], input?: string, env: NodeJS.ProcessEnv = {}): Promise<CliRun> {
  const r = await nixship([...args, "--fleet", fleetFile], {
    ...(input === undefined ? {} : { input: Buffer.from(input) }),
    env,
  });
  outputs.push(r.stdout, r.stderr);
  return r;
}

/** What `age -d` on the host with that host key makes of the file (undefined: it cannot). */
function ageDecrypt(file: string, identityFile: string): string | undefined {
  const r = spawnSync("age", ["-d", "-i", identityFile, file], { encoding: "utf8" });
  return r.status === 0 ? r.stdout : undefined;
}

const secretFile = (name: string) => join(dir, "secrets", `${name}.age`);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "nixship-secrets-cli-"));
  fleetFile = join(dir, "nixship.json");
  for (const host of ["web1", "web2", "web3", "db1"]) makeHostKey(host);
  writeFileSync(
    join(dir, "known_hosts"),
    ["web1", "web2", "web3"].map((h, i) => `10.77.0.${i + 1} ${hostKeys[h]?.publicKey}\n`).join(""),
  );
  adminIdentity = join(dir, "admin.txt");
  execFileSync("age-keygen", ["-o", adminIdentity], { stdio: "ignore" });
  await chmod(adminIdentity, 0o600);
  adminRecipient = execFileSync("age-keygen", ["-y", adminIdentity], { encoding: "utf8" }).trim();
  writeFleet();
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("nixship secrets", () => {
  it("set encrypts stdin to the secret's hosts and the admins, and only to them", async () => {
    const r = await cli(["secrets", "set", "db-password"], PLAINTEXT);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("db-password: encrypted to 2 recipients (hosts: db1)");
    const file = secretFile("db-password");
    expect(ageDecrypt(file, hostKeys.db1?.privateFile as string)).toBe(PLAINTEXT);
    expect(ageDecrypt(file, adminIdentity)).toBe(PLAINTEXT);
    // A host that does not get the secret cannot read it.
    expect(ageDecrypt(file, hostKeys.web1?.privateFile as string)).toBeUndefined();
    expect(readFileSync(file).includes(PLAINTEXT)).toBe(false);
  });

  it("set reads --from FILE; ssh hosts' keys come from the fleet's known_hosts", async () => {
    const source = join(dir, "token.txt");
    writeFileSync(source, PLAINTEXT);
    const r = await cli(["secrets", "set", "web-token", "--from", source, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      name: "web-token",
      hosts: ["web1", "web2"],
      recipients: 3,
    });
    for (const host of ["web1", "web2"]) {
      expect(ageDecrypt(secretFile("web-token"), hostKeys[host]?.privateFile as string)).toBe(
        PLAINTEXT,
      );
    }
    rmSync(source);
  });

  it("list says every file is encrypted to exactly the right recipients", async () => {
    const r = await cli(["secrets", "list", "--json"]);
    expect(r.code, r.stdout).toBe(0);
    const rows = (
      JSON.parse(r.stdout) as { secrets: { name: string; state: string; hosts: string[] }[] }
    ).secrets;
    expect(rows.map((s) => [s.name, s.state, s.hosts])).toEqual([
      ["db-password", "ok", ["db1"]],
      ["web-token", "ok", ["web1", "web2"]],
    ]);
    const text = await cli(["secrets", "list"]);
    expect(text.stdout).toMatch(
      /web-token\s+web1,web2\s+\/run\/keys\/web-token\s+root:root\s+0440\s+ok/,
    );
  });

  it("rekey after a host joins a tag and one leaves: the new host reads it, the old cannot", async () => {
    writeFleet((doc) => {
      doc.hosts.web3 = { tags: ["web"], address: "10.77.0.3", system: SYSTEM };
      doc.hosts.web2 = { tags: ["old"], address: "10.77.0.2", system: SYSTEM };
    });
    const stale = await cli(["secrets", "list"]);
    expect(stale.code).toBe(1);
    expect(stale.stdout).toMatch(/web-token\s+web1,web3\s.*stale/);
    expect(stale.stdout).toContain("nixship secrets rekey web-token");
    const r = await cli(["secrets", "rekey", "--identity", adminIdentity, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(
      (JSON.parse(r.stdout) as { secrets: { name: string; outcome: string }[] }).secrets,
    ).toEqual([
      expect.objectContaining({ name: "db-password", outcome: "unchanged" }),
      expect.objectContaining({ name: "web-token", outcome: "rekeyed" }),
    ]);
    const file = secretFile("web-token");
    expect(ageDecrypt(file, hostKeys.web3?.privateFile as string)).toBe(PLAINTEXT);
    expect(ageDecrypt(file, hostKeys.web2?.privateFile as string)).toBeUndefined();
    expect((await cli(["secrets", "list"])).code).toBe(0);
  });

  it("a file that does not name its secret (written before names were bound) is stale, and rekey writes it with its name", async () => {
    const file = secretFile("db-password");
    const plaintext = ageDecrypt(file, hostKeys.db1?.privateFile as string) as string;
    expect(plaintext).toBeDefined();
    expect((await readAgeHeader(readFileSync(file), file)).secretName).toBe("db-password");
    const recipients = [adminRecipient, hostKeys.db1?.publicKey as string].map((r, i) =>
      parseRecipient(r, `recipient ${i}`),
    );
    writeFileSync(file, await encryptSecret(Buffer.from(plaintext), recipients));
    const stale = await cli(["secrets", "list"]);
    expect(stale.code).toBe(1);
    expect(stale.stdout).toMatch(/db-password\s+db1\s.*stale/);
    const r = await cli(["secrets", "rekey", "--identity", adminIdentity, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(
      (JSON.parse(r.stdout) as { secrets: { name: string; outcome: string }[] }).secrets,
    ).toEqual([
      expect.objectContaining({ name: "db-password", outcome: "rekeyed" }),
      expect.objectContaining({ name: "web-token", outcome: "unchanged" }),
    ]);
    expect((await readAgeHeader(readFileSync(file), file)).secretName).toBe("db-password");
    expect(ageDecrypt(file, hostKeys.db1?.privateFile as string)).toBe(plaintext);
    expect((await cli(["secrets", "list"])).code).toBe(0);
  });

  it("a file encrypted as another secret (copied over this one's) is never encrypted again under this name: list says of-another, rekey and edit refuse, and its hosts read nothing new", async () => {
    const tokenFile = secretFile("web-token");
    const token = readFileSync(tokenFile);
    // db-password's file (its value) copied over web-token's, as a change to the repository.
    writeFileSync(tokenFile, readFileSync(secretFile("db-password")));
    const list = await cli(["secrets", "list"]);
    expect(list.code).toBe(1);
    expect(list.stdout).toMatch(/web-token\s+\S+\s.*of-another/);
    expect(list.stdout).toContain("nixship secrets set web-token");
    const copied = readFileSync(tokenFile);
    const refused = {
      code: 2,
      stderr: expect.stringContaining(
        'was encrypted as secret "db-password": it holds that secret\'s value',
      ),
    };
    for (const args of [
      ["secrets", "rekey", "web-token", "--identity", adminIdentity],
      ["secrets", "rekey", "--force", "--identity", adminIdentity],
      ["secrets", "edit", "web-token", "--identity", adminIdentity],
    ]) {
      const r = await cli(args, undefined, { EDITOR: "true" });
      expect(r, args.join(" ")).toMatchObject(refused);
      expect(readFileSync(tokenFile).equals(copied)).toBe(true);
    }
    // web1 never gets to read db-password's value.
    expect(ageDecrypt(tokenFile, hostKeys.web1?.privateFile as string)).toBeUndefined();
    writeFileSync(tokenFile, token);
    expect((await cli(["secrets", "list"])).code).toBe(0);
  });

  it("list and rekey look up the keys of the hosts some secret goes to, and no other's", async () => {
    // An ssh that says whom it was asked about (ssh -G, for a host's known_hosts entries).
    const shims = join(dir, "shims");
    mkdirSync(shims, { recursive: true });
    const asked = join(dir, "ssh-asked.log");
    const real = execFileSync("sh", ["-c", "command -v ssh"], { encoding: "utf8" }).trim();
    writeFileSync(
      join(shims, "ssh"),
      `#!/bin/sh\nprintf '%s\\n' "$*" >>${asked}\nexec ${real} "$@"\n`,
      { mode: 0o755 },
    );
    // The fleet as the tests before left it, with a host no secret goes to.
    const before = readFileSync(fleetFile, "utf8");
    const doc = JSON.parse(before) as Doc;
    doc.hosts.mail1 = { tags: ["mail"], address: "10.77.0.9", system: SYSTEM };
    writeFileSync(fleetFile, JSON.stringify(doc, null, 2));
    try {
      const env = { PATH: `${shims}:${process.env.PATH ?? ""}` };
      for (const command of [
        ["secrets", "list", "--json"],
        ["secrets", "rekey", "--identity", adminIdentity, "--json"],
      ]) {
        rmSync(asked, { force: true });
        const r = await cli(command, undefined, env);
        expect(r.code, r.stdout + r.stderr).toBe(0);
        const lines = readFileSync(asked, "utf8");
        expect(lines).toContain("10.77.0.1");
        expect(lines).not.toContain("10.77.0.9");
      }
    } finally {
      writeFileSync(fleetFile, before);
    }
  });

  it("rekey interrupted before its first write stops there, every file as it was", async () => {
    const before = ["db-password", "web-token"].map((n) => readFileSync(secretFile(n)));
    const fleet = await loadFleet(fleetFile);
    const stop = new AbortController();
    stop.abort("interrupted (SIGINT)");
    await expect(
      rekeySecrets(fleet, new Map(), [], { force: true, signal: stop.signal }),
    ).rejects.toThrow(
      new InterruptedError("stopped before any secret's file was written: every one is as it was"),
    );
    expect(["db-password", "web-token"].map((n) => readFileSync(secretFile(n)))).toEqual(before);
  });

  it("edit goes through $EDITOR on a tmpfs scratch file that is gone afterwards", async () => {
    const seen = join(dir, "editor-saw");
    const editor = join(dir, "editor.sh");
    writeFileSync(
      editor,
      `#!/bin/sh\nprintf '%s\\n' "$1" > '${seen}'\nstat -c %a "$1" >> '${seen}'\nprintf '%s' '${ROTATED}' > "$1"\n`,
    );
    await chmod(editor, 0o755);
    const r = await cli(
      ["secrets", "edit", "db-password", "--identity", adminIdentity],
      undefined,
      {
        EDITOR: editor,
      },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("db-password: encrypted to 2 recipients");
    const [scratch, mode] = readFileSync(seen, "utf8").trim().split("\n");
    expect(scratch).toMatch(
      /^(\/dev\/shm|\/run\/user\/\d+)\/nixship-secret-[1-9]\d*-[0-9a-f]{16}\/db-password$/,
    );
    expect(mode).toBe("600");
    expect(existsSync(scratch as string)).toBe(false);
    expect(ageDecrypt(secretFile("db-password"), hostKeys.db1?.privateFile as string)).toBe(
      ROTATED,
    );
  });

  // Twice: the second signal has the process exit at once, and the scratch file still goes
  // (it is one of the process's last words), where it used to stay on the tmpfs till reboot.
  for (const signals of [["SIGTERM"], ["SIGINT", "SIGTERM"]] as const) {
    it(`edit stopped by ${signals.join(" then ")}: the editor stops with it, the scratch file goes, the secret stays`, async () => {
      const before = readFileSync(secretFile("db-password"));
      const seen = join(dir, `editor-pid-${signals.length}.txt`);
      const editor = join(dir, "slow-editor.sh");
      // An editor that says where it edits and which process it is, then waits (bounded).
      writeFileSync(editor, `#!/bin/sh\nprintf '%s %s\\n' "$$" "$1" > '${seen}'\nexec sleep 30\n`);
      await chmod(editor, 0o755);
      const child = spawn(
        process.execPath,
        [
          NIXSHIP_BIN,
          "secrets",
          "edit",
          "db-password",
          "--identity",
          adminIdentity,
          "--fleet",
          fleetFile,
          "--json",
        ],
        { env: { ...process.env, EDITOR: editor }, stdio: ["ignore", "pipe", "pipe"] },
      );
      let stdout = "";
      child.stdout.setEncoding("utf8").on("data", (d: string) => {
        stdout += d;
      });
      let stderr = "";
      child.stderr.setEncoding("utf8").on("data", (d: string) => {
        stderr += d;
      });
      const code = new Promise<number | null>((resolve) => child.on("close", resolve));
      // The shell creates the file before printf writes its line: wait for the whole line, or an
      // empty read gives pid 0, which names this process group and is always "alive".
      const written = () => existsSync(seen) && readFileSync(seen, "utf8").endsWith("\n");
      for (let i = 0; i < 100 && !written(); i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const [pid, scratch] = readFileSync(seen, "utf8").trim().split(" ");
      expect(Number(pid), `the editor's pid line: ${pid}`).toBeGreaterThan(1);
      for (const signal of signals) child.kill(signal);
      expect(await code, stderr).toBe(130);
      expect(stderr).toContain(
        signals.length === 2 ? "secrets edit: stopped" : "removing the scratch file",
      );
      // One interrupt: said on stdout too, as JSON (a second one exits at once).
      if (signals.length === 1) {
        expect(JSON.parse(stdout)).toMatchObject({ error: { code: "interrupted" } });
      }
      expect(existsSync(scratch as string)).toBe(false);
      expect(existsSync(dirname(scratch as string))).toBe(false);
      // The editor was stopped with it (bounded wait: it is signalled as nixship stops).
      let alive = true;
      for (let i = 0; i < 50 && alive; i++) {
        try {
          process.kill(Number(pid), 0);
          await new Promise((resolve) => setTimeout(resolve, 100));
        } catch {
          alive = false;
        }
      }
      expect(alive).toBe(false);
      expect(readFileSync(secretFile("db-password")).equals(before)).toBe(true);
    });
  }

  it("edit starts vi (vim, as Debian's alternatives make it) without its viminfo, swap, undo and backup files, which would keep the old value on disk", async () => {
    // A vim.basic of this test's own, reached as `vi` through a link: it writes the words it
    // was started with, then the new value.
    const bin = join(dir, "vim-bin");
    mkdirSync(bin, { recursive: true });
    const argv = join(dir, "vim-argv");
    const vim = join(bin, "vim.basic");
    writeFileSync(
      vim,
      `#!/bin/sh\nfor a in "$@"; do printf '%s\\n' "$a"; done > '${argv}'\neval last=\\\${$#}\nprintf '%s' '${ROTATED}' > "$last"\n`,
    );
    await chmod(vim, 0o755);
    execFileSync("ln", ["-sf", vim, join(bin, "vi")]);
    const r = await cli(
      ["secrets", "edit", "db-password", "--identity", adminIdentity],
      undefined,
      {
        EDITOR: "",
        VISUAL: "",
        PATH: `${bin}:${process.env.PATH ?? ""}`,
      },
    );
    expect(r.code, r.stderr).toBe(0);
    const words = readFileSync(argv, "utf8").trim().split("\n");
    expect(words.slice(0, -1)).toEqual([
      "-i",
      "NONE",
      "-n",
      "--cmd",
      "set noundofile nobackup nowritebackup",
    ]);
    expect(words.at(-1)).toMatch(/\/nixship-secret-[1-9]\d*-[0-9a-f]{16}\/db-password$/);
    expect(ageDecrypt(secretFile("db-password"), hostKeys.db1?.privateFile as string)).toBe(
      ROTATED,
    );
    // An editor that is not vim is started as written.
    const plain = join(bin, "myeditor");
    writeFileSync(plain, `#!/bin/sh\nprintf '%s\\n' "$@" > '${argv}'\n`);
    await chmod(plain, 0o755);
    const other = await cli(
      ["secrets", "edit", "db-password", "--identity", adminIdentity],
      undefined,
      { EDITOR: `${plain} --wait` },
    );
    expect(other.code, other.stderr).toBe(0);
    expect(readFileSync(argv, "utf8").trim().split("\n")[0]).toBe("--wait");
  });

  it("edit with a failing editor or an identity that is not an admin's writes nothing", async () => {
    const before = readFileSync(secretFile("db-password"));
    const failing = await cli(
      ["secrets", "edit", "db-password", "--identity", adminIdentity],
      undefined,
      {
        EDITOR: "false",
      },
    );
    expect(failing.code).toBe(1);
    expect(failing.stderr).toContain(
      "the editor 'false' exited with 1; the secret was left as it was",
    );
    const stranger = join(dir, "stranger.txt");
    execFileSync("age-keygen", ["-o", stranger], { stdio: "ignore" });
    await chmod(stranger, 0o600);
    const wrong = await cli(["secrets", "edit", "db-password", "--identity", stranger], undefined, {
      EDITOR: "true",
    });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('secret "db-password"');
    expect(readFileSync(secretFile("db-password")).equals(before)).toBe(true);
  });

  it("edit of a secret with no file yet, left empty by the editor, writes nothing and says how to set one empty", async () => {
    writeFleet((doc) => {
      doc.secrets.entries["api-key"] = { hosts: "@db" };
    });
    const r = await cli(["secrets", "edit", "api-key", "--identity", adminIdentity], undefined, {
      EDITOR: "true",
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      "error: secrets edit api-key: the secret has no file yet, and the editor left it empty (quit without saving?); nothing was written\nhint: an empty secret is set on purpose with 'nixship secrets set api-key --allow-empty < /dev/null'\n",
    );
    expect(existsSync(secretFile("api-key"))).toBe(false);
    writeFleet();
  });

  it("list shows a file that is not an age file as damaged, beside the others, and says what to do", async () => {
    const file = secretFile("web-token");
    const kept = readFileSync(file);
    writeFileSync(file, "garbage\n");
    try {
      const r = await cli(["secrets", "list", "--json"]);
      expect(r.code).toBe(1);
      const rows = (JSON.parse(r.stdout) as { secrets: { name: string; state: string }[] }).secrets;
      expect(rows.map((s) => [s.name, s.state])).toEqual([
        ["db-password", "ok"],
        ["web-token", "damaged"],
      ]);
      // What reads it whole names the fix.
      const rekey = await cli(["secrets", "rekey", "--identity", adminIdentity]);
      expect(rekey.code).toBe(2);
      expect(rekey.stderr).toContain(
        "hint: restore the file from version control (it is kept beside the fleet file), or set the secret anew with 'nixship secrets set NAME'",
      );
    } finally {
      writeFileSync(file, kept);
    }
  });

  it("edit without an identity names every way to give one; $NIXSHIP_IDENTITY is one", async () => {
    const home = join(dir, "empty-home");
    mkdirSync(home);
    const noIdentity = { HOME: home, NIXSHIP_IDENTITY: undefined, EDITOR: "true" };
    const none = await cli(["secrets", "edit", "db-password"], undefined, noIdentity);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain("no admin identity to decrypt secrets with");
    // Set empty is unset (as `NIXSHIP_IDENTITY=$X` with X empty gives it), not a file named "".
    const empty = await cli(["secrets", "edit", "db-password"], undefined, {
      ...noIdentity,
      NIXSHIP_IDENTITY: "",
    });
    expect(empty.code).toBe(2);
    expect(empty.stderr).toBe(none.stderr);
    const hint = none.stderr.split("\n").find((l) => l.startsWith("hint: ")) ?? "";
    for (const way of [
      "--identity FILE",
      "$NIXSHIP_IDENTITY",
      join(home, ".config", "nixship", "identity.txt"),
      join(home, ".ssh", "id_ed25519"),
    ]) {
      expect(hint).toContain(way);
    }
    const viaEnv = await cli(["secrets", "edit", "db-password"], undefined, {
      ...noIdentity,
      NIXSHIP_IDENTITY: adminIdentity,
    });
    expect(viaEnv.code, viaEnv.stderr).toBe(0);
    expect(viaEnv.stdout).toBe("db-password: unchanged\n");
  });

  it("refuses bad input clearly and writes nothing", async () => {
    const before = readFileSync(secretFile("db-password"));
    // The secret as an argument: refused, and not echoed.
    const arg = await cli(["secrets", "set", "db-password", "hunter2-as-argument"]);
    expect(arg.code).toBe(2);
    expect(arg.stderr).toContain("never from an argument");
    expect(arg.stderr).not.toContain("hunter2");
    // A secret the fleet does not have, and names that try to leave the secrets directory.
    for (const name of ["db-pasword", "../etc/passwd", "a/b"]) {
      const r = await cli(["secrets", "set", name], PLAINTEXT);
      expect(r.code, name).toBe(2);
      expect(r.stderr).toContain(`the fleet has no secret "${name}"`);
    }
    // A host without a known key: named, with the fix.
    writeFleet((doc) => {
      doc.hosts.web4 = { tags: ["web"], address: "10.77.0.4", system: SYSTEM };
    });
    const keyless = await cli(["secrets", "set", "web-token"], PLAINTEXT);
    expect(keyless.code).toBe(2);
    expect(keyless.stderr).toContain("goes to web4, whose SSH host key is not known");
    expect(keyless.stderr).toContain("known_hosts");
    writeFleet((doc) => {
      doc.hosts.web3 = { tags: ["web"], address: "10.77.0.3", system: SYSTEM };
      doc.hosts.web2 = { tags: ["old"], address: "10.77.0.2", system: SYSTEM };
    });
    // A plaintext file in the Nix store (a flake's ./token, copied there): exposed already.
    const flakeToken = join(dir, "token-in-flake");
    writeFileSync(flakeToken, "a-value-every-user-may-read");
    const stored = execFileSync("nix-store", ["--add", flakeToken], { encoding: "utf8" }).trim();
    const inStore = await cli(["secrets", "set", "db-password", "--from", stored]);
    expect(inStore.code).toBe(2);
    expect(inStore.stderr).toContain(
      "is in the Nix store, where every user of the machine may read it: the value is exposed already",
    );
    // A missing plaintext file, and an identity file others may read or that is not there.
    const missing = await cli(["secrets", "set", "db-password", "--from", join(dir, "nope")]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("cannot read");
    const loose = join(dir, "loose.txt");
    writeFileSync(loose, readFileSync(adminIdentity));
    await chmod(loose, 0o644);
    const exposed = await cli(["secrets", "rekey", "--identity", loose]);
    expect(exposed.code).toBe(2);
    expect(exposed.stderr).toContain("may be read by others");
    // An identity file that is not there: named by its flag, with how to make one.
    const absent = join(dir, "no-identity.txt");
    const gone = await cli(["secrets", "rekey", "--identity", absent]);
    expect(gone.code).toBe(2);
    expect(gone.stderr).toContain(`error: --identity ${absent}: no such file`);
    expect(gone.stderr).toContain(`hint: make one with 'age-keygen -o ${absent}'`);
    // An empty stdin (a pipe whose source failed) and an empty file: refused, the secret kept.
    const empty = await cli(["secrets", "set", "db-password"], "");
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain("secrets set db-password: stdin gave no bytes");
    expect(empty.stderr).toContain("--allow-empty");
    const blank = join(dir, "blank.txt");
    writeFileSync(blank, "");
    const emptyFile = await cli(["secrets", "set", "db-password", "--from", blank]);
    expect(emptyFile.code).toBe(2);
    expect(emptyFile.stderr).toContain(`${blank} gave no bytes`);
    expect(readFileSync(secretFile("db-password")).equals(before)).toBe(true);
    // On purpose, it is stored: the host reads an empty secret.
    const chosen = await cli(["secrets", "set", "db-password", "--allow-empty"], "");
    expect(chosen.code, chosen.stderr).toBe(0);
    expect(ageDecrypt(secretFile("db-password"), adminIdentity)).toBe("");
  });

  it("never printed a plaintext", () => {
    for (const text of outputs) {
      expect(text).not.toContain(PLAINTEXT);
      expect(text).not.toContain(ROTATED);
    }
  });
});
