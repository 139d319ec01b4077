// Papercuts, each as a user meets it: `lab address` and `lab ssh-config` without
// --name say that --name names a lab; `lab up --fleet F` prints a deploy of F; `lab list`
// takes --name; the README's nix.conf lines, run twice, leave each line once; a public key
// given where a secret key file belongs is named as one, with the file that is wanted.
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CliRun, nixship } from "../support/cli.js";
import { runReadmeNixConf } from "./support/readme-nix-conf.js";

/** This test's own lab name, in a lab directory of its own. */
const LAB = "pc";

let work: string;
let labsDir: string;
let fleetFile: string;
let up: CliRun;
const env = () => ({ NIXSHIP_LAB_DIR: labsDir });

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-papercuts-"));
  labsDir = join(work, "labs");
  fleetFile = join(work, "fleet.json");
  up = await nixship(["lab", "up", "1", "--name", LAB, "--fleet", fleetFile], { env: env() });
  expect(up.code, up.stderr).toBe(0);
});

afterAll(async () => {
  await nixship(["lab", "down", "--all"], { env: env() });
  await rm(work, { recursive: true, force: true });
});

describe("the lab's papercuts", () => {
  it("lab up --fleet F prints a deploy of F", () => {
    expect(up.stderr).toContain(
      `deploy: nixship deploy --fleet ${fleetFile} --key ${join(labsDir, LAB, "cache.sec")} --serve-cache 10.231.`,
    );
  });

  it("lab address and lab ssh-config without --name say --name, and name the labs there are", async () => {
    for (const command of [["address"], ["ssh-config", "--path"]]) {
      const r = await nixship(["lab", ...command], { env: env() });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("no lab 'lab' (the default name; --name NAME names another)");
      expect(r.stderr).toContain(
        `hint: name a lab with --name NAME; the labs in ${labsDir}: ${LAB}`,
      );
    }
    const named = await nixship(["lab", "address", "--name", LAB], { env: env() });
    expect(named.code, named.stderr).toBe(0);
    expect(named.stdout).toMatch(/^10\.231\.\d+\.1\n$/);
  });

  it("lab list takes --name, and names a lab that is not there", async () => {
    const r = await nixship(["lab", "list", "--name", LAB, "--json"], { env: env() });
    expect(r.code, r.stderr).toBe(0);
    const hosts = (JSON.parse(r.stdout) as { hosts: { name: string; lab: string }[] }).hosts;
    expect(hosts.map((h) => [h.lab, h.name])).toEqual([[LAB, `${LAB}1`]]);
    const none = await nixship(["lab", "list", "--name", "nosuch"], { env: env() });
    expect(none.code).toBe(2);
    expect(none.stderr).toContain("lab list: no lab 'nosuch'");
  });
});

describe("the README's nix.conf lines", () => {
  it("add each line once, however often they run", async () => {
    expect(await runReadmeNixConf(join(work, "etc-nix"), 2)).toBe(
      [
        "experimental-features = nix-command flakes",
        "build-users-group =",
        "sandbox = false",
        "substituters =",
        "",
      ].join("\n"),
    );
  });
});

describe("a public key given as --key", () => {
  it("is named as a public key, with the secret key file that is wanted, in a file or as is", async () => {
    const secret = join(work, "cache.sec");
    const key = await nixship(["key", "generate", "--name", "cache-1", "--out", secret]);
    expect(key.code, key.stderr).toBe(0);
    const publicKey = key.stdout.trim();
    const pub = join(work, "cache.pub");
    await writeFile(pub, `${publicKey}\n`);
    await chmod(pub, 0o644);
    const fleet = join(labsDir, LAB, "nixship.json");
    for (const given of [pub, publicKey]) {
      const r = await nixship(["deploy", "--fleet", fleet, "--key", given]);
      expect(r.code).toBe(2);
      const where = given === pub ? pub : `'${publicKey}'`;
      expect(r.stderr).toContain(
        `error: --key: ${where} is a public key ('cache-1'), not a secret key`,
      );
      expect(r.stderr).toContain(
        "hint: --key takes the secret key file its public key was made from ('nixship key generate --name cache-1 --out SECRET_FILE' wrote it, mode 0600)",
      );
      expect(r.stderr).not.toMatch(/64 bytes|chmod/);
    }
    const release = await nixship(["release", "refresh", "--fleet", fleet, "--release-key", pub]);
    expect(release.stderr).toContain(`--release-key: ${pub} is a public key ('cache-1')`);
  });
});
