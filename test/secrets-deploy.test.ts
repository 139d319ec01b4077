// Secrets over ssh, on a lab of three hosts with the real Nix, sshd and age: two
// secrets, one to @web and one to @db, land on exactly their hosts with their owner and mode
// before the service starts (it reads one); rotation and removal reach the hosts; a tampered
// file and an unknown owner fail the activation, naming the secret, and change nothing; and
// the plaintext is in no output, no object of the cache, and no Nix store. A reboot (lab
// reboot, deploy --reboot) keeps them: the host installs them again at boot.
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CliRun, nixship, run } from "../support/cli.js";
import {
  deployEvents,
  type LabInfo,
  labDeployArgs,
  setExampleSystems,
} from "./support/lab-deploy.js";
import {
  filesHolding,
  freshPlaintext,
  keptOn,
  servedSecret,
  sha256,
  storeFilesHolding,
} from "./support/secrets-scan.js";

/** When this file started: the Nix store paths made since are the ones a leak could be in. */
const STARTED = new Date();
const LAB = "sd";
const TOKEN = freshPlaintext("web-token");
const TOKEN_ROTATED = freshPlaintext("web-token-rotated");
const PASSWORD = freshPlaintext("db-password");
let work: string;
let labsDir: string;
let lab: LabInfo;
let fleetFile: string;
let keyFile: string;
let cacheDir: string;
const outputs: string[] = [];
const env = () => ({ NIXSHIP_LAB_DIR: labsDir });

async function cli(args: string[], input?: string): Promise<CliRun> {
  const r = await nixship(args, {
    env: env(),
    ...(input === undefined ? {} : { input: Buffer.from(input) }),
  });
  outputs.push(r.stdout, r.stderr);
  return r;
}

async function onHost(host: string, command: string): Promise<CliRun> {
  return run("ssh", ["-F", join(lab.dir, "ssh_config"), host, command]);
}

type FleetDoc = {
  secrets?: { admins: string[]; entries: Record<string, Record<string, unknown>> };
};
function editFleet(edit: (doc: FleetDoc) => void): void {
  const doc = JSON.parse(readFileSync(fleetFile, "utf8")) as FleetDoc;
  edit(doc);
  writeFileSync(fleetFile, JSON.stringify(doc, null, 2));
}

const addressOf = (host: string) => lab.hosts.find((h) => h.name === host)?.address as string;

function deploy(...extra: string[]): Promise<CliRun> {
  return cli(labDeployArgs(lab, fleetFile, keyFile, "--json", ...extra));
}

function outcomes(r: CliRun): Record<string, { status: string; phase?: string; message?: string }> {
  const summary = deployEvents(r).find((e) => e.type === "summary") as
    | { results: { host: string; outcome: { status: string; phase?: string; message?: string } }[] }
    | undefined;
  if (!summary) throw new Error(`no summary; stderr:\n${r.stderr}`);
  return Object.fromEntries(summary.results.map((x) => [x.host, x.outcome]));
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-secrets-deploy-"));
  labsDir = join(work, "labs");
  const up = await nixship(["lab", "up", "3", "--name", LAB, "--json"], { env: env() });
  expect(up.code, up.stderr).toBe(0);
  lab = JSON.parse(up.stdout) as LabInfo;
  fleetFile = join(lab.dir, "nixship.json");
  keyFile = join(lab.dir, "cache.sec");
  const fleet = JSON.parse(readFileSync(fleetFile, "utf8")) as { cache: { url: string } };
  cacheDir = fleet.cache.url.replace(/^file:\/\//, "");
  const admin = join(work, "admin.txt");
  execFileSync("age-keygen", ["-o", admin], { stdio: "ignore" });
  await chmod(admin, 0o600);
  const recipient = execFileSync("age-keygen", ["-y", admin], { encoding: "utf8" }).trim();
  editFleet((doc) => {
    doc.secrets = {
      admins: [recipient],
      entries: {
        "web-token": { hosts: "@web", group: "nogroup", mode: "0440" },
        "db-password": { hosts: "@db", owner: "nobody" },
      },
    };
  });
  await setExampleSystems(fleetFile, { sd1: "web-v1", sd2: "web-v1", sd3: "web-v1" });
  expect((await cli(["secrets", "set", "web-token", "--fleet", fleetFile], TOKEN)).code).toBe(0);
  expect((await cli(["secrets", "set", "db-password", "--fleet", fleetFile], PASSWORD)).code).toBe(
    0,
  );
});

afterAll(async () => {
  await nixship(["lab", "down", "--name", LAB], { env: env() });
  await rm(work, { recursive: true, force: true });
});

describe("secrets over ssh", () => {
  it("each host gets exactly its secrets, with owner and mode, before its service starts", async () => {
    const r = await deploy();
    expect(r.code, r.stderr).toBe(0);
    expect(await keptOn(lab.dir, "sd1", "/run/keys/web-token")).toBe(`root:nogroup 440 ${TOKEN}`);
    expect(await keptOn(lab.dir, "sd3", "/run/keys/web-token")).toBe(`root:nogroup 440 ${TOKEN}`);
    expect(await keptOn(lab.dir, "sd2", "/run/keys/db-password")).toBe(
      `nobody:root 400 ${PASSWORD}`,
    );
    expect(await keptOn(lab.dir, "sd2", "/run/keys/web-token")).toBe("(none)");
    expect(await keptOn(lab.dir, "sd1", "/run/keys/db-password")).toBe("(none)");
    // The service read its token as it started: it was there before the switch.
    expect(await servedSecret(addressOf("sd1"))).toBe(sha256(TOKEN));
    expect(await servedSecret(addressOf("sd2"))).toBeNull();
    // On tmpfs.
    expect((await onHost("sd1", "stat -f -c %T /run/keys")).stdout.trim()).toBe("tmpfs");
  });

  it("rotation: secrets set, then a deploy, changes the file and what the service read", async () => {
    expect(
      (await cli(["secrets", "set", "web-token", "--fleet", fleetFile], TOKEN_ROTATED)).code,
    ).toBe(0);
    const planned = await cli(["plan", "--fleet", fleetFile, "--on", "sd1"]);
    expect(planned.stdout).toMatch(/sd1\s.*already running; its secrets change/);
    const r = await deploy("--on", "@web");
    expect(r.code, r.stderr).toBe(0);
    expect(Object.values(outcomes(r)).map((o) => o.status)).toEqual(["activated", "activated"]);
    expect(await keptOn(lab.dir, "sd1", "/run/keys/web-token")).toBe(
      `root:nogroup 440 ${TOKEN_ROTATED}`,
    );
    expect(await keptOn(lab.dir, "sd3", "/run/keys/web-token")).toBe(
      `root:nogroup 440 ${TOKEN_ROTATED}`,
    );
    // A service whose unit did not change is left running, as NixOS leaves it: it keeps what
    // it read. A new system restarts it, and it reads the new token.
    expect(await servedSecret(addressOf("sd3"))).toBe(sha256(TOKEN));
    // Nothing changed since: the hosts are up to date.
    const again = await deploy("--on", "@web");
    expect(Object.values(outcomes(again)).map((o) => o.status)).toEqual(["skipped", "skipped"]);
    await setExampleSystems(fleetFile, { sd3: "web-v2" });
    expect((await deploy("--on", "sd3")).code).toBe(0);
    expect(await servedSecret(addressOf("sd3"))).toBe(sha256(TOKEN_ROTATED));
  });

  it("a tampered file fails the activation in phase secrets, naming it; nothing changes", async () => {
    const file = join(lab.dir, "secrets", "web-token.age");
    const good = readFileSync(file);
    const bad = Buffer.from(good);
    bad[bad.length - 20] = (bad[bad.length - 20] as number) ^ 1;
    writeFileSync(file, bad);
    await setExampleSystems(fleetFile, { sd1: "web-v2" });
    const r = await deploy("--on", "sd1");
    expect(r.code).toBe(1);
    expect(outcomes(r).sd1).toMatchObject({ status: "failed", phase: "secrets" });
    expect(outcomes(r).sd1?.message).toContain("web-token");
    expect(await keptOn(lab.dir, "sd1", "/run/keys/web-token")).toBe(
      `root:nogroup 440 ${TOKEN_ROTATED}`,
    );
    expect((await onHost("sd1", "ls -a /run/keys")).stdout).not.toContain(".nixship");
    expect((await run("curl", ["-s", `http://${lab.hosts[0]?.address}/version`])).stdout).toContain(
      "web-v1",
    );
    writeFileSync(file, good);
  });

  it("an owner that does not exist on the host fails, naming it, and writes nothing", async () => {
    editFleet((doc) => {
      (doc.secrets?.entries["db-password"] as Record<string, unknown>).owner = "nosuchuser";
    });
    const r = await deploy("--on", "sd2");
    expect(r.code).toBe(1);
    expect(outcomes(r).sd2).toMatchObject({ status: "failed", phase: "secrets" });
    expect(outcomes(r).sd2?.message).toMatch(/db-password.*nosuchuser|nosuchuser.*db-password/);
    expect(await keptOn(lab.dir, "sd2", "/run/keys/db-password")).toBe(
      `nobody:root 400 ${PASSWORD}`,
    );
    editFleet((doc) => {
      (doc.secrets?.entries["db-password"] as Record<string, unknown>).owner = "nobody";
    });
  });

  it("removing a secret from the fleet removes it from its hosts", async () => {
    editFleet((doc) => {
      delete doc.secrets?.entries["db-password"];
    });
    const r = await deploy("--on", "sd2");
    expect(r.code, r.stderr).toBe(0);
    expect(outcomes(r).sd2?.status).toBe("activated");
    expect(await keptOn(lab.dir, "sd2", "/run/keys/db-password")).toBe("(none)");
  });

  it("decrypts with the age package the fleet names, realised on the host from the cache", async () => {
    // A stand-in for nixpkgs' age: a store path whose bin/age is Debian's.
    const built = await run("nix", [
      "build",
      "--impure",
      "--no-link",
      "--json",
      "--expr",
      'derivation { name = "age-from-debian"; system = builtins.currentSystem; builder = "/bin/sh"; args = ["-c" "mkdir -p $out/bin && cp /usr/bin/age $out/bin/age"]; PATH = "/usr/bin:/bin"; }',
    ]);
    expect(built.code, built.stderr).toBe(0);
    const age = (JSON.parse(built.stdout) as { outputs: { out: string } }[])[0]?.outputs.out;
    expect(await onHost("sd1", `test -e ${age} && echo present || echo absent`)).toMatchObject({
      stdout: "absent\n",
    });
    editFleet((doc) => {
      (doc.secrets as Record<string, unknown>).age = age;
    });
    expect((await cli(["secrets", "set", "web-token", "--fleet", fleetFile], TOKEN)).code).toBe(0);
    const r = await deploy("--on", "sd1");
    expect(r.code, r.stderr).toBe(0);
    const logs = deployEvents(r).filter((e) => e.type === "host-log" && e.host === "sd1");
    expect(logs.map((e) => e.line).join("\n")).toContain(`age: ${age}/bin/age`);
    expect((await onHost("sd1", `test -x ${age}/bin/age && echo present`)).stdout).toBe(
      "present\n",
    );
    expect(await keptOn(lab.dir, "sd1", "/run/keys/web-token")).toBe(`root:nogroup 440 ${TOKEN}`);
    editFleet((doc) => {
      delete (doc.secrets as Record<string, unknown>).age;
    });
  });

  it("a reboot keeps them: installed again at boot, before the service starts", async () => {
    const rebooted = await cli(["lab", "reboot", "sd1", "--name", LAB]);
    expect(rebooted.code, rebooted.stderr).toBe(0);
    expect(await keptOn(lab.dir, "sd1", "/run/keys/web-token")).toBe(`root:nogroup 440 ${TOKEN}`);
    // The service read its token as it started at boot.
    expect(await servedSecret(addressOf("sd1"))).toBe(sha256(TOKEN));
    // What the host keeps on its disk is the ciphertext, root's alone.
    expect((await onHost("sd1", "stat -c '%U %a' /nix/var/nixship/secrets-bundle")).stdout).toBe(
      "root 600\n",
    );
    // A deploy with a reboot: the secrets it installs are there after the boot.
    await setExampleSystems(fleetFile, { sd3: "web-v3" });
    const r = await deploy("--on", "sd3", "--reboot", "always");
    expect(r.code, r.stderr).toBe(0);
    expect(await keptOn(lab.dir, "sd3", "/run/keys/web-token")).toBe(`root:nogroup 440 ${TOKEN}`);
    expect(await servedSecret(addressOf("sd3"))).toBe(sha256(TOKEN));
    const planned = await cli(["plan", "--fleet", fleetFile, "--on", "@web"]);
    expect(planned.stdout).not.toContain("its secrets change");
  });

  it("a host whose secrets went (a boot that installs none) is behind in status until a deploy", async () => {
    const status = async () => {
      const r = await cli(["status", "--fleet", fleetFile, "--on", "sd1", "--json"]);
      return {
        code: r.code,
        row: (JSON.parse(r.stdout) as { hosts: Record<string, unknown>[] }).hosts[0],
      };
    };
    expect(await status()).toMatchObject({ code: 0, row: { hostState: "in-step" } });
    // What a boot leaves on a host whose system does not install them again: /run emptied.
    await onHost("sd1", "rm -f /run/nixship/secrets /run/keys/web-token");
    expect(await status()).toMatchObject({
      code: 1,
      row: { inStep: false, hostState: "behind", secretsAway: true },
    });
    const text = await cli(["status", "--fleet", fleetFile, "--on", "sd1"]);
    expect(text.stdout).toContain("its secrets are not those its last deploy installed");
    const r = await deploy("--on", "sd1");
    expect(r.code, r.stderr).toBe(0);
    expect(await keptOn(lab.dir, "sd1", "/run/keys/web-token")).toBe(`root:nogroup 440 ${TOKEN}`);
    expect(await status()).toMatchObject({ code: 0, row: { hostState: "in-step" } });
  });

  it("the plaintext is in no output, no object of the cache, and no Nix store", async () => {
    const all = [TOKEN, TOKEN_ROTATED, PASSWORD];
    for (const text of outputs) for (const secret of all) expect(text).not.toContain(secret);
    expect(await storeFilesHolding(all, STARTED)).toEqual([]);
    for (const secret of all) {
      expect(await filesHolding(cacheDir, secret)).toEqual([]);
      for (const host of lab.hosts) {
        expect(await filesHolding(join(lab.dir, "hosts", host.name, "nix"), secret)).toEqual([]);
      }
    }
  });
});
