// Published host keys pinned on first use (docs/secrets.md, "Host keys"), with the built CLI,
// real ssh-keygen keys and the real `age`: an agent host without `hostKey` publishes its key to
// the store; `secrets set` encrypts to it and pins it beside the fleet file. A process on that
// host that rewrites the published key (its role may) gets nothing: `secrets rekey` and `set`
// refuse, naming both fingerprints, `list` says so and exits 1, a deploy's preparation refuses,
// and the secret stays readable by the real key alone, until `rekey --replace-host-keys`.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { chmod } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deployHostKeys } from "../src/delivery/host-keys.js";
import type { FleetHost } from "../src/fleet/fleet.js";
import { keyFingerprint } from "../src/fleet/known-hosts.js";
import { PINS_FILE } from "../src/secrets/host-key-pins.js";
import { type CliRun, nixship } from "../support/cli.js";

const PLAINTEXT = "pinned-secret-41c7";
const SYSTEM = "/nix/store/vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-nixos-system-db";

let dir: string;
let fleetFile: string;
let adminIdentity: string;
const keys: Record<string, { privateFile: string; publicKey: string }> = {};

function makeKey(name: string): void {
  const privateFile = join(dir, `${name}_key`);
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", privateFile]);
  const pub = readFileSync(`${privateFile}.pub`, "utf8").trim().split(" ");
  keys[name] = { privateFile, publicKey: `${pub[0]} ${pub[1]}` };
}

const key = (name: string) => keys[name] as { privateFile: string; publicKey: string };

/** What the agent of db1 (or whoever holds its role) writes to the store. */
function publish(name: string): void {
  const where = join(dir, "cache", "status", "host-keys");
  mkdirSync(where, { recursive: true });
  writeFileSync(join(where, "db1.pub"), `${key(name).publicKey}\n`);
}

async function cli(args: string[], input?: string): Promise<CliRun> {
  return await nixship([...args, "--fleet", fleetFile], {
    ...(input === undefined ? {} : { input: Buffer.from(input) }),
    env: { NIXSHIP_IDENTITY: adminIdentity },
  });
}

function ageDecrypt(identityFile: string): string | undefined {
  const file = join(dir, "secrets", "db-password.age");
  const r = spawnSync("age", ["-d", "-i", identityFile, file], { encoding: "utf8" });
  return r.status === 0 ? r.stdout : undefined;
}

const pinsText = () => readFileSync(join(dir, PINS_FILE), "utf8");

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "nixship-host-key-pins-"));
  fleetFile = join(dir, "nixship.json");
  for (const name of ["db1", "intruder"]) makeKey(name);
  adminIdentity = join(dir, "admin.txt");
  execFileSync("age-keygen", ["-o", adminIdentity], { stdio: "ignore" });
  await chmod(adminIdentity, 0o600);
  const admin = execFileSync("age-keygen", ["-y", adminIdentity], { encoding: "utf8" }).trim();
  const doc = {
    cache: {
      url: `file://${join(dir, "cache")}`,
      publicKeys: ["c-1:lWwOmhFw0ds2rFa+bN7VVTYVXK7ujJv76J6gVTXevhM="],
    },
    releases: { channel: "prod", publicKeys: ["r-1:lWwOmhFw0ds2rFa+bN7VVTYVXK7ujJv76J6gVTXevhM="] },
    hosts: { db1: { tags: ["db"], delivery: "agent", system: SYSTEM } },
    secrets: { admins: [admin], entries: { "db-password": { hosts: "@db" } } },
  };
  writeFileSync(fleetFile, JSON.stringify(doc, null, 2));
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("published host keys, pinned on first use", () => {
  it("set encrypts to the key db1 published, pins it beside the fleet file, and says so with its fingerprint", async () => {
    publish("db1");
    const r = await cli(["secrets", "set", "db-password", "--json"], PLAINTEXT);
    expect(r.code, r.stderr).toBe(0);
    expect(ageDecrypt(key("db1").privateFile)).toBe(PLAINTEXT);
    expect(pinsText()).toContain(`\ndb1 ${key("db1").publicKey}\n`);
    // Trusted on first sight: the operator is shown what to check on the host.
    const fingerprint = keyFingerprint(key("db1").publicKey);
    expect(JSON.parse(r.stdout).pinned).toEqual([{ host: "db1", fingerprint }]);
    expect(r.stderr).toBe(
      `db1: pinned its host key ${fingerprint}, as it published it in the store, in ${PINS_FILE}: check it on the host (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub)\n`,
    );
    // Pinned once: the next command says nothing of it.
    const again = await cli(["secrets", "set", "db-password", "--json"], PLAINTEXT);
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout).pinned).toEqual([]);
    expect(again.stderr).toBe("");
  });

  it("a key rewritten in the store is refused by rekey and set, named with both fingerprints", async () => {
    publish("intruder");
    const before = readFileSync(join(dir, "secrets", "db-password.age"));
    for (const args of [
      ["secrets", "rekey", "--force"],
      ["secrets", "set", "db-password"],
    ]) {
      const r = await cli(args, "replaced-value");
      expect(r.code, args.join(" ")).toBe(1);
      expect(r.stderr).toContain(
        `db1: its SSH host key changed: ${join(dir, PINS_FILE)} trusts ${keyFingerprint(key("db1").publicKey)}, the store (status/host-keys/db1.pub) gives ${keyFingerprint(key("intruder").publicKey)}`,
      );
      expect(r.stderr).toContain("--replace-host-keys");
    }
    expect(readFileSync(join(dir, "secrets", "db-password.age")).equals(before)).toBe(true);
    expect(ageDecrypt(key("intruder").privateFile)).toBeUndefined();
    expect(pinsText()).toContain(`db1 ${key("db1").publicKey}`);
  });

  it("list names the changed key and exits 1; the secret is judged against the pin", async () => {
    const r = await cli(["secrets", "list", "--json"]);
    expect(r.code).toBe(1);
    const listed = JSON.parse(r.stdout) as {
      secrets: { name: string; state: string }[];
      hostKeysChanged: unknown[];
    };
    expect(listed.secrets).toEqual([expect.objectContaining({ name: "db-password", state: "ok" })]);
    expect(listed.hostKeysChanged).toEqual([
      {
        host: "db1",
        pinned: keyFingerprint(key("db1").publicKey),
        published: keyFingerprint(key("intruder").publicKey),
      },
    ]);
    const text = await cli(["secrets", "list"]);
    expect(text.stdout).toMatch(
      /db1: its published host key SHA256:\S+ is not the SHA256:\S+ pinned/,
    );
  });

  it("a deploy's preparation refuses the changed key, and says which command takes it", async () => {
    const host: FleetHost = {
      name: "db1",
      tags: ["db"],
      address: undefined,
      system: { kind: "store-path", path: SYSTEM as never },
      delivery: "agent",
    };
    const fleet = {
      ssh: {
        configFile: undefined,
        knownHosts: undefined,
        user: undefined,
        sudo: false,
        maxConnections: 128,
      },
      cache: { url: `file://${join(dir, "cache")}`, publicKeys: [], substituter: undefined },
    } as never;
    await expect(deployHostKeys(fleet, [host], dir)).rejects.toThrow(
      /db1: its SSH host key changed/,
    );
    await expect(deployHostKeys(fleet, [host], dir)).rejects.toMatchObject({
      hint: expect.stringContaining("nixship secrets rekey --replace-host-keys"),
    });
  });

  it("rekey --replace-host-keys takes the new key (checked out of band) and pins it, keeping the file's notes", async () => {
    const note = "# db1's new key checked by alice on the console (INC-4411)";
    writeFileSync(join(dir, PINS_FILE), `${pinsText()}${note}\n`);
    const r = await cli(["secrets", "rekey", "--replace-host-keys"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(
      `db1: pinned its new host key ${keyFingerprint(key("intruder").publicKey)}, as it published it in the store`,
    );
    expect(ageDecrypt(key("intruder").privateFile)).toBe(PLAINTEXT);
    expect(ageDecrypt(key("db1").privateFile)).toBeUndefined();
    expect(pinsText()).toContain(`db1 ${key("intruder").publicKey}`);
    expect(pinsText()).toContain(`\n${note}\n`);
    expect((await cli(["secrets", "list"])).code).toBe(0);
  });
});
