// A non-root deploy user bound to the host's own trust, on two lab hosts. Each lab
// host has the normal user `deploy` and the one sudoers rule nixosModules.host writes; the
// systems deployed install nixship-activate with the host's pinned trust (examples/system.nix,
// `pinned`, from the module's own text). A first deploy as root puts it there (the bootstrap);
// then everything goes through `sudo -n /run/current-system/sw/bin/nixship-activate` as
// `deploy`: deploy, a canary that fails and rolls back, prune, a manual rollback, status,
// doctor, the system's own command checks and the secrets it declares. The same user cannot
// realise a path signed by another key (whatever trust it passes), cannot run a command of its
// choice through sudo, cannot place a secret where its system does not say, and cannot read the
// host's secrets.
import { createHash } from "node:crypto";
import { chmod, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encryptSecret, parseRecipient } from "../src/age/age.js";
import { activateArgs, parseActivationResult } from "../src/host/activation.js";
import { shellQuote } from "../src/util/shell-quote.js";
import { nixship, run, runOk } from "../support/cli.js";
import {
  type LabCache,
  type RunningServer,
  serveLabCache,
  startCacheServer,
} from "../support/serve.js";
import { deployEvents, servedBy, sshdLogins, summaryOf } from "./support/lab-deploy.js";
import { freshPlaintext, keptOn } from "./support/secrets-scan.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

const ROOT = new URL("..", import.meta.url).pathname;
const ACTIVATOR = "/run/current-system/sw/bin/nixship-activate";
/** The systems' own command check (nixship/health-commands): the deploy user's home is there. */
const DECLARED = "test -e /run/nixship-lab/home";
/** The deploy user's home on a lab host. */
const LAB_HOME = "/run/nixship-lab/home";
const PASSWORD = freshPlaintext("db-password");

let lab: SshLab;
let cache: RunningServer;
let other: LabCache;
let labKey: string;
let systems: Record<string, string>;
let sshConfig: string;

interface FleetDoc {
  ssh: Record<string, unknown>;
  policy?: Record<string, unknown>;
  policies?: Record<string, unknown>;
  secrets?: unknown;
  cache: { substituter?: string; publicKeys: string[] };
  hosts: Record<string, Record<string, unknown>>;
}

async function editFleet(edit: (doc: FleetDoc) => void): Promise<void> {
  const doc = JSON.parse(await readFile(lab.fleetFile, "utf8")) as FleetDoc;
  edit(doc);
  await writeFile(lab.fleetFile, JSON.stringify(doc, null, 2));
}

async function deploy(to: Record<string, string>, ...extra: string[]) {
  await editFleet((doc) => {
    for (const [host, system] of Object.entries(to)) {
      (doc.hosts[host] as Record<string, unknown>).system = systems[system];
    }
  });
  return lab.nixship([
    "deploy",
    "--fleet",
    lab.fleetFile,
    "--key",
    join(lab.info.dir, "cache.sec"),
    "--json",
    ...extra,
  ]);
}

/** A shell command on a lab host as `user` (the lab's client key logs in as either). */
async function onHost(host: string, user: string, command: string, input?: string) {
  return await run("ssh", ["-F", sshConfig, "-l", user, host, command], {
    ...(input === undefined ? {} : { input: Buffer.from(input) }),
  });
}

/** The last line of a command's stdout as JSON (the activation script's answer). */
function lastJson(stdout: string): Record<string, unknown> {
  return JSON.parse(stdout.trim().split("\n").at(-1) ?? "null") as Record<string, unknown>;
}

/** A "system" of the deploy user's own at `dir` on pin1, whose switch leaves `mark` (as root). */
async function evilSystem(dir: string, mark: string): Promise<void> {
  const made = await onHost(
    "pin1",
    "deploy",
    `mkdir -p ${dir}/bin && printf '#!/bin/sh\\ntouch ${mark}\\n' > ${dir}/bin/switch-to-configuration && chmod +x ${dir}/bin/switch-to-configuration`,
  );
  expect(made.code, made.stderr).toBe(0);
}

/** Lines of a host's sshd log that say a key logged in as `user`. */
function logins(host: string, user: string): Promise<number> {
  return sshdLogins(lab.info.dir, host, user);
}

/** The plan's trust of each host, from a --json deploy's plan event. */
function pinningOf(r: { stdout: string }): Record<string, unknown> {
  const plan = deployEvents(r.stdout).find((e) => e.type === "plan") as
    | { plan: { hosts: { host: string; pinning?: unknown }[] } }
    | undefined;
  return Object.fromEntries((plan?.plan.hosts ?? []).map((h) => [h.host, h.pinning]));
}

beforeAll(async () => {
  lab = await startSshLab("pin", 2);
  sshConfig = join(lab.info.dir, "ssh_config");
  const gateway = `10.231.${lab.info.number}.1`;
  // The lab's cache, served at an address known before the systems are built: their trust
  // files name it.
  cache = await startCacheServer(`file://${join(lab.info.dir, "cache")}`, [], {}, `${gateway}:0`);
  await editFleet((doc) => {
    doc.cache.substituter = cache.url;
    labKey = doc.cache.publicKeys[0] as string;
  });
  const pinned = `{
    substituters = [ ${JSON.stringify(cache.url)} ];
    trustedKeys = [ ${JSON.stringify(labKey)} ];
    script = ${ROOT}dist/host/activate.sh;
    text = import ${ROOT}packaging/nixos/nixship-activate.nix;
  }`;
  const mk = (name: string, extra = "") =>
    `${name} = import ${ROOT}examples/system.nix { system = builtins.currentSystem; name = "${name}"; version = "${name}"; pinned = ${pinned}; checks = { commands = [ { run = ${JSON.stringify(DECLARED)}; timeout = 5; } ]; }; ${extra} };`;
  const secret = `secrets = { db-password = { owner = "nobody"; group = "root"; mode = "0400"; path = "/run/keys/db-password"; }; };`;
  // A secret root's service reads, and one the deploy user owns (a token of its own).
  const twoSecrets = `secrets = { db-password = { owner = "nobody"; group = "root"; mode = "0400"; path = "/run/keys/db-password"; }; deploy-token = { owner = "deploy"; group = "root"; mode = "0400"; path = "/run/keys/deploy-token"; }; };`;
  const expr = `{ ${mk("pin-v1")} ${mk("pin-v2")} ${mk("pin-broken", 'health = "fail";')} ${mk("pin-v3")} ${mk("pin-secret", secret)} ${mk("pin-secrets", twoSecrets)} }`;
  const built = JSON.parse(
    await runOk("nix", ["build", "--impure", "--no-link", "--json", "--expr", expr]),
  ) as { outputs: { out: string } }[];
  systems = {};
  for (const { outputs } of built) {
    systems[(await readFile(`${outputs.out}/nixos-version`, "utf8")).trim()] = outputs.out;
  }
  // A system signed by another key, served from another cache: nothing the hosts pin.
  const otherExpr = `import ${ROOT}examples/system.nix { system = builtins.currentSystem; name = "pin-other"; version = "other"; }`;
  const otherPath = (await runOk("nix-build", ["--no-out-link", "--expr", otherExpr])).trim();
  systems["pin-other"] = otherPath;
  const otherDir = join(lab.info.dir, "other");
  await runOk("mkdir", ["-p", otherDir]);
  other = await serveLabCache(otherDir, [otherPath], gateway, "other-1");
}, 240_000);

afterAll(async () => {
  await cache?.stop();
  await other?.server.stop();
  await lab?.down();
});

describe("a deploy user bound to the host's pinned trust", () => {
  it("bootstraps as root: the hosts are not pinned yet, and then have nixship-activate", async () => {
    const r = await deploy({ pin1: "pin-v1", pin2: "pin-v1" });
    expect(r.code, r.stderr).toBe(0);
    expect(pinningOf(r)).toEqual({
      pin1: { pinned: false, activator: false },
      pin2: { pinned: false, activator: false },
    });
    expect(await servedBy(lab.info, "pin1")).toBe("pin-v1");
    const doctor = await lab.nixship(["doctor", "--fleet", lab.fleetFile, "--json"]);
    const checks = JSON.parse(doctor.stdout) as {
      checks: { area: string; name: string; status: string; detail: string }[];
    };
    const pinnedCheck = checks.checks.find((c) => c.area === "host pin1" && c.name === "pinned");
    expect(pinnedCheck).toMatchObject({ status: "warn" });
    expect(pinnedCheck?.detail).toContain(`though the host has ${ACTIVATOR}`);
  });

  it("deploys through sudo as the deploy user, pinned, and doctor says so", async () => {
    await editFleet((doc) => {
      doc.ssh.user = "deploy";
      doc.ssh.sudo = true;
      doc.policy = { ...doc.policy, requirePinned: true };
    });
    const rootBefore = await logins("pin1", "root");
    const r = await deploy({ pin1: "pin-v2", pin2: "pin-v2" });
    expect(r.code, r.stderr).toBe(0);
    const keyName = labKey.split(":")[0];
    expect(pinningOf(r)).toEqual({
      pin1: { pinned: true, by: "nixship-activate", keys: [keyName] },
      pin2: { pinned: true, by: "nixship-activate", keys: [keyName] },
    });
    expect(await servedBy(lab.info, "pin1")).toBe("pin-v2");
    expect(await servedBy(lab.info, "pin2")).toBe("pin-v2");
    // Every connection of that deploy logged in as deploy, none as root.
    expect(await logins("pin1", "root")).toBe(rootBefore);
    expect(await logins("pin1", "deploy")).toBeGreaterThan(0);
    // The plan's text names whose trust each host takes.
    const plan = await lab.nixship(["plan", "--fleet", lab.fleetFile]);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toContain(`pin1, pin2: pinned: nixship-activate, keys ${keyName}`);
    const doctor = await lab.nixship(["doctor", "--fleet", lab.fleetFile, "--json"]);
    const found = (
      JSON.parse(doctor.stdout) as {
        checks: { area: string; name: string; status: string; detail: string }[];
      }
    ).checks.filter((c) => c.name === "pinned");
    expect(found.map((c) => [c.area, c.status])).toEqual([
      ["host pin1", "ok"],
      ["host pin2", "ok"],
    ]);
    expect(found[0]?.detail).toContain(`trusts keys ${keyName} and substitutes from ${cache.url}`);
    // What the deploy user needs, not what root needs: nothing of Nix, and nothing
    // else fails either.
    const all = (
      JSON.parse(doctor.stdout) as {
        checks: { area: string; name: string; status: string; detail: string }[];
      }
    ).checks.filter((c) => c.area === "host pin1");
    expect(all.find((c) => c.name === "nix")).toMatchObject({
      status: "ok",
      detail: 'not needed by deploy: nixship-activate runs root\'s Nix (see "pinned")',
    });
    expect(all.filter((c) => c.status === "fail")).toEqual([]);
  });

  it("doctor fails a pinned host that pins none of cache.publicKeys (the fleet's key rotated away)", async () => {
    const kept = labKey;
    await editFleet((doc) => {
      doc.cache.publicKeys = [other.publicKey];
    });
    try {
      const doctor = await lab.nixship(["doctor", "--fleet", lab.fleetFile, "--json"]);
      expect(doctor.code).toBe(1);
      const found = (
        JSON.parse(doctor.stdout) as {
          checks: { area: string; name: string; status: string; detail: string; fix?: string }[];
        }
      ).checks.find((c) => c.area === "host pin1" && c.name === "pinned");
      expect(found).toMatchObject({
        status: "fail",
        detail: expect.stringContaining(
          `; none of them is in cache.publicKeys (${other.publicKey.split(":")[0]}): it refuses every path this fleet pushes`,
        ),
        fix: expect.stringContaining("services.nixship-host.trustedKeys"),
      });
    } finally {
      await editFleet((doc) => {
        doc.cache.publicKeys = [kept];
      });
    }
  });

  it("rolls a failing canary back, prunes, rolls back by hand and reports status, all as deploy", async () => {
    const rootBefore = await logins("pin1", "root");
    const broken = await deploy({ pin1: "pin-broken", pin2: "pin-broken" }, "--canary", "1");
    expect(broken.code).toBe(1);
    const outcomes = summaryOf(broken);
    expect(outcomes.pin1).toMatchObject({ status: "failed", rolledBack: true });
    expect(await servedBy(lab.info, "pin1")).toBe("pin-v2");
    expect(await servedBy(lab.info, "pin2")).toBe("pin-v2");

    const pruned = await deploy({ pin1: "pin-v3", pin2: "pin-v2" }, "--keep-generations", "1");
    expect(pruned.code, pruned.stderr).toBe(0);
    expect(summaryOf(pruned).pin1).toMatchObject({ status: "activated" });
    expect(summaryOf(pruned).pin1?.pruned).toMatchObject({ kept: expect.any(Array) });

    const back = await lab.nixship([
      "rollback",
      "--fleet",
      lab.fleetFile,
      "--on",
      "pin1",
      "--json",
    ]);
    expect(back.code, back.stderr).toBe(0);
    expect(await servedBy(lab.info, "pin1")).toBe("pin-v2");

    const status = await lab.nixship(["status", "--fleet", lab.fleetFile, "--json"]);
    expect(status.code, status.stderr).toBe(0);
    const rows = (JSON.parse(status.stdout) as { hosts: { host: string; current: string }[] })
      .hosts;
    expect(rows.map((h) => [h.host, h.current])).toEqual([
      ["pin1", systems["pin-v2"]],
      ["pin2", systems["pin-v2"]],
    ]);
    expect(await logins("pin1", "root")).toBe(rootBefore);
  });

  it("cannot make the host realise a path signed by another key, whatever trust it passes", async () => {
    const args = activateArgs({
      path: systems["pin-other"] as string,
      action: "switch",
      substituters: [other.server.url],
      trustedKeys: [other.publicKey],
    });
    const r = await onHost(
      "pin1",
      "deploy",
      `sudo -n ${ACTIVATOR} ${args.map(shellQuote).join(" ")}`,
    );
    expect(r.code).toBe(3);
    const result = parseActivationResult(r.stdout, "pin1");
    expect(result).toMatchObject({ ok: false, command: "activate", phase: "realise" });
    expect(await servedBy(lab.info, "pin1")).toBe("pin-v2");
    // Nor by naming another trust file: sudo keeps the caller's environment out.
    const env = await onHost(
      "pin1",
      "deploy",
      `sudo -n NIXSHIP_TRUST_FILE=/tmp/mine ${ACTIVATOR} status`,
    );
    expect(env.code).not.toBe(0);
    expect(env.stderr).toMatch(/not (permitted|allowed) to set/);
  });

  it("cannot run a command of its choice as root, through sudo or a health check", async () => {
    const shell = await onHost("pin1", "deploy", "sudo -n /bin/sh -c 'touch /root/owned'");
    expect(shell.code).not.toBe(0);
    expect(shell.stderr).toContain("a password is required");
    const check = await onHost(
      "pin1",
      "deploy",
      `sudo -n ${ACTIVATOR} ${activateArgs({
        path: systems["pin-v2"] as string,
        action: "test",
        healthChecks: [{ run: "touch /root/owned", timeout: 30 }],
      })
        .map(shellQuote)
        .join(" ")}`,
    );
    expect(check.code).toBe(2);
    expect(parseActivationResult(check.stdout, "pin1")).toMatchObject({
      ok: false,
      command: "activate",
      phase: "realise",
    });
    const mark = await onHost("pin1", "root", "test -e /root/owned && echo made || echo none");
    expect(mark.stdout.trim()).toBe("none");
  });

  it("cannot turn status --check-paths into options of root's Nix", async () => {
    const profilesBefore = await onHost("pin1", "root", "stat -c '%U:%G %a' /nix/var/nix/profiles");
    // The attack: one input line that xargs would split into options making root's Nix chown
    // the profiles directory to the deploy user's group.
    const line = `/nix/store/${"0".repeat(32)}-x --option store local?real=/nix/var/nix/profiles&state=${LAB_HOME}/st --option build-users-group deploy`;
    const r = await onHost(
      "pin1",
      "deploy",
      `printf '%s\\n' ${shellQuote(line)} | sudo -n ${ACTIVATOR} status --check-paths`,
    );
    expect(r.code, r.stderr).toBe(2);
    expect(lastJson(r.stdout)).toMatchObject({
      ok: false,
      command: "status",
      result: "usage",
      message:
        "status --check-paths: line 1 of the paths is not a store path in canonical form (/nix/store/HASH-NAME, one a line)",
    });
    const profilesAfter = await onHost("pin1", "root", "stat -c '%U:%G %a' /nix/var/nix/profiles");
    expect(profilesAfter.stdout).toBe(profilesBefore.stdout);
    expect(profilesAfter.stdout.trim()).toBe("root:root 755");
    // Paths in canonical form are still answered.
    const ok = await onHost(
      "pin1",
      "deploy",
      `printf '%s\\n%s\\n' ${systems["pin-v2"]} /nix/store/${"0".repeat(32)}-x | sudo -n ${ACTIVATOR} status --check-paths`,
    );
    expect(ok.code, ok.stderr).toBe(0);
    expect(lastJson(ok.stdout)).toMatchObject({ ok: true, missing: ["0".repeat(32)] });
  });

  it("cannot roll back to a generation whose link it planted", async () => {
    const mark = "/root/owned-by-generation";
    // What a writable profiles directory would let the deploy user plant: a generation that
    // leads to a "system" of its own, and one that leads to a store path no pinned key signed.
    await evilSystem(`${LAB_HOME}/evil`, mark);
    const unsigned = (
      await onHost(
        "pin1",
        "root",
        `d=$(mktemp -d) && cp -a ${LAB_HOME}/evil $d/evil && nix-store --add $d/evil`,
      )
    ).stdout.trim();
    expect(unsigned).toMatch(/^\/nix\/store\/[0-9a-z]{32}-evil$/);
    const planted = await onHost(
      "pin1",
      "root",
      `ln -sfn ${LAB_HOME}/evil /nix/var/nix/profiles/system-77-link && ln -sfn ${unsigned} /nix/var/nix/profiles/system-78-link`,
    );
    expect(planted.code, planted.stderr).toBe(0);
    try {
      const home = await onHost("pin1", "deploy", `sudo -n ${ACTIVATOR} rollback --to 77`);
      expect(home.code, home.stderr).toBe(9);
      expect(lastJson(home.stdout)).toMatchObject({ ok: false, result: "no-generation" });
      expect(String(lastJson(home.stdout).message)).toContain(
        `generation 77 of /nix/var/nix/profiles/system leads to '${LAB_HOME}/evil', not to a store path in canonical form`,
      );
      const store = await onHost("pin1", "deploy", `sudo -n ${ACTIVATOR} rollback --to 78`);
      expect(store.code, store.stderr).toBe(9);
      expect(String(lastJson(store.stdout).message)).toContain(
        `generation 78, ${unsigned} is not signed by a key this host pins`,
      );
    } finally {
      await onHost(
        "pin1",
        "root",
        "rm -f /nix/var/nix/profiles/system-77-link /nix/var/nix/profiles/system-78-link",
      );
    }
    expect(
      (await onHost("pin1", "root", `test -e ${mark} && echo made || echo none`)).stdout.trim(),
    ).toBe("none");
    expect(await servedBy(lab.info, "pin1")).toBe("pin-v2");
  });

  it("cannot have root run a system or an age package through a link in the store", async () => {
    const mark = "/root/owned-through-link";
    const signed = systems["pin-v2"] as string;
    const base = signed.slice("/nix/store/".length);
    // A store path that is a link into the deploy user's home (any user adds one through the
    // daemon), under which a directory of the signed system's name holds the user's program.
    await evilSystem(`${LAB_HOME}/trap/${base}`, mark);
    const made = await onHost("pin1", "deploy", `mkdir -p ${LAB_HOME}/trap/sub`);
    expect(made.code, made.stderr).toBe(0);
    const link = (
      await onHost(
        "pin1",
        "root",
        `d=$(mktemp -d) && ln -s ${LAB_HOME}/trap/sub $d/L && nix-store --add $d/L`,
      )
    ).stdout.trim();
    expect(link).toMatch(/^\/nix\/store\/[0-9a-z]{32}-L$/);
    const through = `${link}/../${base}`;
    const activate = await onHost(
      "pin1",
      "deploy",
      `sudo -n ${ACTIVATOR} activate --path ${through} --action test`,
    );
    expect(activate.code, activate.stderr).toBe(2);
    expect(lastJson(activate.stdout)).toMatchObject({
      ok: false,
      command: "activate",
      result: "usage",
    });
    expect(String(lastJson(activate.stdout).message)).toContain(
      `--path must be a store path in canonical form (/nix/store/HASH-NAME, nothing before or after), got '${through}'`,
    );
    const age = await onHost(
      "pin1",
      "deploy",
      `sudo -n ${ACTIVATOR} activate --path ${signed} --action test --secrets --age ${through}`,
      "nixship-secrets 1\n",
    );
    expect(age.code, age.stderr).toBe(2);
    expect(String(lastJson(age.stdout).message)).toContain(
      `--age must be a store path in canonical form (/nix/store/HASH-NAME, nothing before or after), got '${through}'`,
    );
    // The link itself as the system: refused once realised, before anything of it runs.
    const itself = await onHost(
      "pin1",
      "deploy",
      `sudo -n ${ACTIVATOR} activate --path ${link} --action test`,
    );
    expect(itself.code, itself.stderr).toBe(3);
    expect(String(lastJson(itself.stdout).message)).toContain(
      `${link} is a link or resolves elsewhere`,
    );
    expect(
      (await onHost("pin1", "root", `test -e ${mark} && echo made || echo none`)).stdout.trim(),
    ).toBe("none");
  });

  it("cannot have a secret installed where or as whom its system does not say", async () => {
    // A well-formed bundle line for a secret pin-v2 does not declare (it declares none).
    const body = Buffer.from("age file").toString("base64");
    const sha = createHash("sha256").update("age file").digest("hex");
    const bundle = `nixship-secrets 1\nsudo deploy root 0644 /run/sudoers-mine ${sha} ${body}\n`;
    const r = await onHost(
      "pin1",
      "deploy",
      `sudo -n ${ACTIVATOR} activate --path ${systems["pin-v2"]} --action test --secrets`,
      bundle,
    );
    expect(r.code).toBe(11);
    const result = parseActivationResult(r.stdout, "pin1");
    expect(result).toMatchObject({ ok: false, command: "activate", phase: "secrets" });
    expect((result as { message: string }).message).toContain(
      "secrets bundle line 2 (secret sudo): the system does not declare it so",
    );
    const planted = await onHost(
      "pin1",
      "root",
      "test -e /run/sudoers-mine && echo made || echo none",
    );
    expect(planted.stdout.trim()).toBe("none");
  });

  it("cannot have one secret's file installed as another's it may read, nor a file that names no secret", async () => {
    // The system, signed, in the pinned cache (as a deploy of it would have pushed it).
    const pushed = await lab.nixship([
      "push",
      systems["pin-secrets"] as string,
      "--fleet",
      lab.fleetFile,
      "--key",
      join(lab.info.dir, "cache.sec"),
    ]);
    expect(pushed.code, pushed.stderr).toBe(0);
    const hostKey = (await onHost("pin1", "root", "cat /etc/ssh/ssh_host_ed25519_key.pub")).stdout;
    const to = [parseRecipient(hostKey.trim(), "pin1's host key")];
    const line = (name: string, owner: string, file: Uint8Array) =>
      `${name} ${owner} root 0400 /run/keys/${name} ${createHash("sha256").update(file).digest("hex")} ${Buffer.from(file).toString("base64")}`;
    const activate = (bundle: string) =>
      onHost(
        "pin1",
        "deploy",
        `sudo -n ${ACTIVATOR} activate --path ${systems["pin-secrets"]} --action test --secrets`,
        `nixship-secrets 1\n${bundle}\n`,
      );
    // db-password's file (from the fleet's repository, say), sent as the deploy user's token.
    const dbPassword = await encryptSecret(Buffer.from(PASSWORD), to, { secret: "db-password" });
    const swapped = await activate(line("deploy-token", "deploy", dbPassword));
    expect(swapped.code, swapped.stderr).toBe(11);
    expect(String(lastJson(swapped.stdout).message)).toContain(
      "secret deploy-token: its age file was encrypted as secret 'db-password'",
    );
    // A file that names no secret (as nixship wrote them before it bound names).
    const unnamed = await encryptSecret(Buffer.from(PASSWORD), to);
    const old = await activate(line("deploy-token", "deploy", unnamed));
    expect(old.code, old.stderr).toBe(11);
    expect(String(lastJson(old.stdout).message)).toContain(
      "secret deploy-token: its age file does not name the secret it is (written before nixship bound names), and this host's trust is pinned: run 'nixship secrets rekey'",
    );
    expect(await keptOn(lab.info.dir, "pin1", "/run/keys/deploy-token")).toBe("(none)");
    expect(swapped.stdout + old.stdout + swapped.stderr + old.stderr).not.toContain(PASSWORD);
    // (A file encrypted as its own secret installs: "installs the secrets its system declares".)
  });

  it("refuses, before it changes anything, a host that requirePinned finds unpinned", async () => {
    await editFleet((doc) => {
      (doc.hosts.pin2 as Record<string, unknown>).sudo = false;
    });
    try {
      // pin2 is reached as deploy by the piped script now: not pinned, whose trust is ours.
      const r = await deploy({ pin1: "pin-v3", pin2: "pin-v3" });
      expect(r.code).toBe(2);
      const error = JSON.parse(r.stdout.trim().split("\n").at(-1) as string) as {
        error: { code: string; message: string };
      };
      expect(error.error.code).toBe("host-not-pinned");
      expect(error.error.message).toContain(
        "pin2: it has nixship-activate but is reached by the piped script",
      );
      expect(await servedBy(lab.info, "pin1")).toBe("pin-v2");
    } finally {
      await editFleet((doc) => {
        delete (doc.hosts.pin2 as Record<string, unknown>).sudo;
      });
    }
  });

  it("runs the system's own command checks, and refuses the fleet file's on a pinned host", async () => {
    await editFleet((doc) => {
      doc.policies = { "@web": { health: { commands: [{ run: "touch /root/owned" }] } } };
    });
    try {
      const refused = await deploy({ pin1: "pin-v3", pin2: "pin-v3" });
      expect(refused.code).toBe(2);
      expect(refused.stdout).toContain("pinned-host-command-check");
      expect(refused.stdout).toContain("pin1: `touch /root/owned`");
    } finally {
      await editFleet((doc) => {
        delete doc.policies;
      });
    }
    // The system's own check (nixship/health-commands) runs as root through nixship-activate.
    const r = await deploy({ pin1: "pin-v3", pin2: "pin-v3" });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr + r.stdout).toContain(`health: ${DECLARED}`);
    expect(await servedBy(lab.info, "pin2")).toBe("pin-v3");
  });

  it("installs the secrets its system declares, as deploy, who cannot read them", async () => {
    const admin = join(lab.info.dir, "admin.txt");
    await runOk("age-keygen", ["-o", admin]);
    await chmod(admin, 0o600);
    const recipient = (await runOk("age-keygen", ["-y", admin])).trim();
    await editFleet((doc) => {
      doc.secrets = {
        admins: [recipient],
        entries: { "db-password": { hosts: "pin1", owner: "nobody" } },
      };
    });
    const set = await nixship(["secrets", "set", "db-password", "--fleet", lab.fleetFile], {
      input: Buffer.from(PASSWORD),
    });
    expect(set.code, set.stderr).toBe(0);
    const r = await deploy({ pin1: "pin-secret", pin2: "pin-secret" });
    expect(r.code, r.stderr).toBe(0);
    expect(await keptOn(lab.info.dir, "pin1", "/run/keys/db-password")).toBe(
      `nobody:root 400 ${PASSWORD}`,
    );
    expect(await keptOn(lab.info.dir, "pin2", "/run/keys/db-password")).toBe("(none)");
    expect(r.stdout + r.stderr).not.toContain(PASSWORD);
    const read = await onHost("pin1", "deploy", "cat /run/keys/db-password");
    expect(read.code).not.toBe(0);
    expect(read.stdout).not.toContain(PASSWORD);
    const key = await onHost("pin1", "deploy", "cat /etc/ssh/ssh_host_ed25519_key");
    expect(key.code).not.toBe(0);
    expect(key.stdout).not.toContain("PRIVATE KEY");
    // The fleet file asks for another mode than the system declares: refused, nothing changed.
    await editFleet((doc) => {
      (doc.secrets as { entries: Record<string, Record<string, unknown>> }).entries["db-password"] =
        { hosts: "pin1", owner: "nobody", mode: "0444" };
    });
    const refused = await deploy({ pin1: "pin-secret" }, "--on", "pin1");
    expect(refused.code).toBe(1);
    expect(summaryOf(refused).pin1).toMatchObject({ status: "failed", phase: "secrets" });
    expect(String(summaryOf(refused).pin1?.message)).toContain("does not declare it so");
    expect(await keptOn(lab.info.dir, "pin1", "/run/keys/db-password")).toBe(
      `nobody:root 400 ${PASSWORD}`,
    );
    // A bundle kept from before names were bound (its file names no secret) is installed again
    // at boot all the same: root kept it when an activation took it, and a host whose
    // nixship-activate was just upgraded must find its secrets after a reboot.
    const hostKey = (await onHost("pin1", "root", "cat /etc/ssh/ssh_host_ed25519_key.pub")).stdout;
    const unnamed = await encryptSecret(Buffer.from(PASSWORD), [
      parseRecipient(hostKey.trim(), "pin1's host key"),
    ]);
    const line = `db-password nobody root 0400 /run/keys/db-password ${createHash("sha256").update(unnamed).digest("hex")} ${Buffer.from(unnamed).toString("base64")}`;
    const kept = await onHost(
      "pin1",
      "root",
      "cat > /nix/var/nixship/secrets-bundle && rm -f /run/nixship/secrets /run/keys/db-password",
      `nixship-secrets 1\n${line}\n`,
    );
    expect(kept.code, kept.stderr).toBe(0);
    const restored = await onHost("pin1", "root", `${ACTIVATOR} restore-secrets`);
    expect(lastJson(restored.stdout)).toMatchObject({ ok: true, result: "restored", secrets: 1 });
    expect(await keptOn(lab.info.dir, "pin1", "/run/keys/db-password")).toBe(
      `nobody:root 400 ${PASSWORD}`,
    );
  });
});
