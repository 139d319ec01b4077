// Knowing when a reboot is due, on a lab host: `status` compares the booted
// system's kernel, initrd and modules with the current system's, as NixOS's own
// switch-to-configuration does; the plan says per host whether the change needs a reboot; after
// a switch to a system with another kernel, `status` shows "reboot pending" and since when.
// Stand-in: the lab cannot boot a host yet (`lab reboot` is to come), so the test makes the
// host's /run/booted-system point at the system it runs, as a boot into it would.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runOk } from "../support/cli.js";
import { setExampleSystems } from "./support/lab-deploy.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

const HOST = "rd1";
let lab: SshLab;

interface Reboot {
  due: boolean;
  changed: string[];
  since: number | null;
  booted: Record<string, string | null>;
}

async function statusRow(): Promise<{ reboot?: Reboot; current: string }> {
  const r = await lab.nixship(["status", "--fleet", lab.fleetFile, "--json"]);
  expect(r.code, r.stdout).toBe(0);
  return (JSON.parse(r.stdout) as { hosts: { reboot?: Reboot; current: string }[] }).hosts[0] as {
    reboot?: Reboot;
    current: string;
  };
}

async function planned(system: string): Promise<{ action: string; reboot?: string[] }> {
  await setExampleSystems(lab.fleetFile, { [HOST]: system });
  const r = await lab.nixship(["plan", "--fleet", lab.fleetFile, "--json"]);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { hosts: { action: string; reboot?: string[] }[] }).hosts[0] as {
    action: string;
    reboot?: string[];
  };
}

beforeAll(async () => {
  lab = await startSshLab("rd", 1);
  await setExampleSystems(lab.fleetFile, { [HOST]: "web-v1" });
  const first = await lab.deploy();
  expect(first.code, first.stderr).toBe(0);
});

afterAll(async () => {
  await lab?.down();
});

describe("a reboot that is due", () => {
  it("without a booted system, status says nothing of a reboot", async () => {
    expect(await statusRow()).not.toHaveProperty("reboot");
  });

  it("booted on its system: no reboot due; the plan names the changes only a reboot loads", async () => {
    await runOk("ssh", [
      "-F",
      join(lab.info.dir, "ssh_config"),
      "-o",
      "ControlPath=none",
      HOST,
      "ln -sfn $(readlink -f /run/current-system) /run/booted-system",
    ]);
    const row = await statusRow();
    expect(row.reboot).toMatchObject({ due: false, changed: [] });
    expect(row.reboot?.booted.kernel).toMatch(/-example-kernel-6\.6\/bzImage$/);
    // web-v2 has the same kernel: a switch is enough. web-v4 has another: it needs a reboot.
    expect(await planned("web-v2")).toMatchObject({ action: "activate", reboot: [] });
    expect(await planned("web-v4")).toMatchObject({
      action: "activate",
      reboot: ["kernel", "initrd", "kernel-modules"],
    });
    const text = await lab.nixship(["plan", "--fleet", lab.fleetFile]);
    expect(text.stdout).toContain(
      "needs a reboot: its kernel, initrd, kernel-modules differ from the booted system's",
    );
  });

  it("after a switch to another kernel, status shows the reboot pending, and since when", async () => {
    const before = Math.floor(Date.now() / 1000) - 1;
    const r = await lab.deploy();
    expect(r.code, r.stderr).toBe(0);
    const row = await statusRow();
    expect(row.current).toMatch(/-example-web-system-v4$/);
    expect(row.reboot).toMatchObject({
      due: true,
      changed: ["kernel", "initrd", "kernel-modules"],
    });
    expect(row.reboot?.since).toBeGreaterThanOrEqual(before);
    const table = await lab.nixship(["status", "--fleet", lab.fleetFile]);
    expect(table.stdout).toMatch(
      /reboot pending since \S+: its kernel, initrd, kernel-modules differ from the booted system's/,
    );
  });
});
