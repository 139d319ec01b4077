// `lab up --sh bash`: hosts whose sh is bash, as NixOS's is, in their own mount namespaces alone.
// A deploy of the example flake reaches them (activate.sh piped to bash), a reboot keeps it, and
// the machine's own sh is left as it was.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nixship, run } from "../support/cli.js";
import {
  type LabInfo,
  labDeployArgs,
  servedBy,
  setExampleSystems,
  summaryOf,
} from "./support/lab-deploy.js";

const LAB = "lbs";
let work: string;
let lab: LabInfo & { files: { sshConfig: string; fleet: string; cacheKey: string } };
let machineSh: string;
const env = () => ({ NIXSHIP_LAB_DIR: join(work, "labs") });
/** What `sh` says it is: bash's version, or "not bash". */
const SAYS = `echo "\${BASH_VERSION:-not bash}"`;

async function onHost(host: string, command: string) {
  const r = await run("ssh", ["-F", lab.files.sshConfig, "-o", "ControlPath=none", host, command]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-lab-bash-"));
  machineSh = (await run("sh", ["-c", SAYS])).stdout.trim();
  const up = await nixship(["lab", "up", "2", "--name", LAB, "--sh", "bash", "--json"], {
    env: env(),
  });
  expect(up.code, up.stderr).toBe(0);
  lab = JSON.parse(up.stdout);
});

afterAll(async () => {
  await nixship(["lab", "down", "--name", LAB], { env: env() });
  await rm(work, { recursive: true, force: true });
});

describe("lab up --sh bash", () => {
  it("makes the hosts' sh bash, /bin/sh and sh on PATH alike, and leaves the machine's", async () => {
    const host = `${LAB}1`;
    expect(await onHost(host, `sh -c '${SAYS}'`)).toMatch(/^\d+\.\d+/);
    expect(await onHost(host, `/bin/sh -c '${SAYS}'`)).toMatch(/^\d+\.\d+/);
    // Invoked as sh, bash keeps to POSIX mode, as NixOS's /bin/sh does.
    expect(await onHost(host, `sh -c 'set -o | grep -w posix'`)).toMatch(/posix\s+on/);
    expect((await run("sh", ["-c", SAYS])).stdout.trim()).toBe(machineSh);
    const state = JSON.parse(await readFile(join(lab.dir, "lab.json"), "utf8"));
    expect(state.shell).toBe("bash");
  });

  it("takes a deploy of the example flake, and keeps bash across a reboot", async () => {
    await setExampleSystems(lab.files.fleet, { [`${LAB}1`]: "web-v2", [`${LAB}2`]: "web-v2" });
    const r = await nixship(labDeployArgs(lab, lab.files.fleet, lab.files.cacheKey, "--json"), {
      env: env(),
    });
    expect(r.code, r.stderr).toBe(0);
    const outcomes = summaryOf(r);
    expect(Object.values(outcomes).map((o) => o.status)).toEqual(["activated", "activated"]);
    expect(await servedBy(lab, `${LAB}2`)).toBe("web-v2");
    const rebooted = await nixship(["lab", "reboot", `${LAB}2`, "--name", LAB], { env: env() });
    expect(rebooted.code, rebooted.stderr).toBe(0);
    expect(await onHost(`${LAB}2`, `sh -c '${SAYS}'`)).toMatch(/^\d+\.\d+/);
  });

  it("refuses another shell, and a lab of the same name brought up without it", async () => {
    const bad = await nixship(["lab", "up", "1", "--name", "lbx", "--sh", "zsh"], { env: env() });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("--sh takes system or bash (what the hosts' sh is); got 'zsh'");
    const again = await nixship(["lab", "up", "2", "--name", LAB], { env: env() });
    expect(again.code).not.toBe(0);
    expect(again.stderr).toContain(`lab '${LAB}' already exists with 2 hosts, bash as their sh`);
  });
});
