// Reboots in a rollout, over ssh on lab hosts that reboot as machines do (`lab
// reboot`: everything in the host stops, its boot loader picks an entry, /run starts empty,
// the system's init runs). Two labs: one whose boot loaders count boots (2 tries per new
// entry), one without counting. Each host first runs web-v1 from a boot (booted-system v1).
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  deployEvents,
  servedAfterBoot,
  servedBy,
  setExampleSystems,
  summaryOf,
} from "./support/lab-deploy.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

let counting: SshLab;
let plain: SshLab;

interface HostRow {
  readonly host: string;
  readonly reachable: boolean;
  readonly current?: string;
  readonly booted?: string;
  readonly generation?: number;
  readonly generations?: { generation: number; path: string }[];
  readonly reboot?: { due: boolean; changed: string[] };
  readonly boot?: { id: string; assessment: string | null; pending: unknown };
}

/** The host's live status, as `nixship status --json` reports it. */
async function statusOf(lab: SshLab, host: string): Promise<HostRow> {
  const r = await lab.nixship(["status", "--fleet", lab.fleetFile, "--on", host, "--json"]);
  const row = (JSON.parse(r.stdout) as { hosts: HostRow[] }).hosts[0];
  if (row === undefined) throw new Error(`no status for ${host}: ${r.stderr}`);
  return row;
}

const name = (path: string | undefined) => path?.replace(/^.*-example-web-system-/, "") ?? "-";

async function deploy(lab: SshLab, host: string, system: string, ...extra: string[]) {
  await setExampleSystems(lab.fleetFile, { [host]: system });
  return lab.deploy("--on", host, "--json", ...extra);
}

/** Deploys web-v1 to every host of the lab, then reboots each into it. */
async function bootV1(lab: SshLab): Promise<void> {
  const hosts = lab.info.hosts.map((h) => h.name);
  await setExampleSystems(lab.fleetFile, Object.fromEntries(hosts.map((h) => [h, "web-v1"])));
  const r = await lab.deploy("--json");
  expect(r.code, r.stderr).toBe(0);
  for (const host of hosts) {
    const rebooted = await lab.nixship(["lab", "reboot", host, "--name", lab.name]);
    expect(rebooted.code, rebooted.stderr).toBe(0);
  }
}

beforeAll(async () => {
  [counting, plain] = await Promise.all([
    startSshLab("rbc", 3, { bootCounting: 2 }),
    startSshLab("rbn", 1),
  ]);
  await Promise.all([bootV1(counting), bootV1(plain)]);
});

afterAll(async () => {
  await Promise.all([counting?.down(), plain?.down()]);
});

describe("deploy --reboot", () => {
  it("reboots a host whose kernel changes, not one whose kernel stays", async () => {
    const host = "rbc1";
    const before = await statusOf(counting, host);
    // web-v3 has web-v1's kernel: a switch, no reboot.
    const same = await deploy(counting, host, "web-v3", "--reboot", "auto");
    expect(same.code, same.stderr).toBe(0);
    const plannedSame = deployEvents(same).find((e) => e.type === "plan") as unknown as {
      plan: { hosts: { rebooting?: boolean; reboot?: string[] }[] };
    };
    expect(plannedSame.plan.hosts[0]?.rebooting).toBeUndefined();
    expect(plannedSame.plan.hosts[0]?.reboot).toEqual([]);
    const afterSwitch = await statusOf(counting, host);
    expect(afterSwitch.boot?.id).toBe(before.boot?.id);
    expect(name(afterSwitch.current)).toBe("v3");

    // web-v4 has another kernel: the plan says it reboots, and it does.
    await setExampleSystems(counting.fleetFile, { [host]: "web-v4" });
    const planned = await counting.nixship([
      "plan",
      "--fleet",
      counting.fleetFile,
      "--on",
      host,
      "--reboot",
      "auto",
      "--json",
    ]);
    expect(planned.code, planned.stderr).toBe(0);
    const hostPlan = (JSON.parse(planned.stdout) as { hosts: Record<string, unknown>[] }).hosts[0];
    expect(hostPlan).toMatchObject({
      rebooting: true,
      reboot: ["kernel", "initrd", "kernel-modules"],
      bootCounting: true,
    });
    const r = await deploy(counting, host, "web-v4", "--reboot", "auto");
    expect(r.code, r.stderr).toBe(0);
    const phases = deployEvents(r)
      .filter((e) => e.type === "host-phase" && e.host === host)
      .map((e) => e.phase);
    expect(phases).toContain("reboot");
    const after = await statusOf(counting, host);
    expect(after.boot?.id).not.toBe(before.boot?.id);
    expect(name(after.booted)).toBe("v4");
    expect(name(after.current)).toBe("v4");
    expect(after.reboot?.due).toBe(false);
    // Confirmed: the boot loader keeps the entry for good, and nothing is left pending.
    expect(after.boot?.assessment).toBe("good");
    expect(after.boot?.pending).toBeNull();
    expect(await servedBy(counting.info, host)).toBe("web-v4");
  });

  it("a system that does not boot: the boot loader falls back, the profile goes back", async () => {
    const host = "rbc2";
    const r = await deploy(counting, host, "web-noboot", "--reboot", "auto");
    expect(r.code).toBe(1);
    const outcome = summaryOf(r)[host];
    expect(outcome).toMatchObject({ status: "failed", phase: "reboot", rolledBack: true });
    expect(String(outcome?.message)).toMatch(/instead of .*-noboot: that system did not boot/);
    const after = await statusOf(counting, host);
    expect(name(after.booted)).toBe("v1");
    expect(name(after.current)).toBe("v1");
    // The profile is back on v1, and the system that did not boot is no generation any more.
    expect(after.generations?.map((g) => name(g.path))).toEqual(["v1"]);
    expect(await servedAfterBoot(counting.info, host)).toBe("web-v1");
    // The next boot is v1 again: its entry is good, and noboot's entry goes with its generation.
    const reboot = await counting.nixship(["lab", "reboot", host, "--name", "rbc", "--json"]);
    expect(JSON.parse(reboot.stdout)).toMatchObject({ up: true, attempts: [{ booted: true }] });
    const entries = await readdir(join(counting.info.dir, "hosts", host, "boot/loader/entries"));
    expect(entries).toEqual(["nixos-generation-1.conf"]);
  });

  it("a system that boots but fails its check is rolled back and rebooted into the previous", async () => {
    const host = "rbc3";
    const r = await deploy(counting, host, "web-v4-broken", "--reboot", "auto");
    expect(r.code).toBe(1);
    const outcome = summaryOf(r)[host];
    expect(outcome).toMatchObject({ status: "failed", phase: "health", rolledBack: true });
    expect(String(outcome?.message)).toMatch(/status 500.*rebooted into the previous system/);
    const after = await statusOf(counting, host);
    expect(name(after.booted)).toBe("v1");
    expect(after.generations?.map((g) => name(g.path))).toEqual(["v1"]);
    expect(await servedAfterBoot(counting.info, host)).toBe("web-v1");
  });

  it("a canary that fails its reboot stops the rollout", async () => {
    await setExampleSystems(counting.fleetFile, {
      rbc1: "web-noboot",
      rbc2: "web-noboot",
      rbc3: "web-noboot",
    });
    const r = await counting.deploy("--json", "--reboot", "auto", "--canary", "1");
    expect(r.code).toBe(1);
    const outcomes = Object.values(summaryOf(r));
    expect(outcomes.filter((o) => o.status === "failed")).toHaveLength(1);
    expect(outcomes.filter((o) => o.reason === "not-started")).toHaveLength(2);
    expect(deployEvents(r).some((e) => e.type === "stopped")).toBe(true);
  });

  it("without boot counting, a host that does not come back fails at --reboot-timeout", async () => {
    const host = "rbn1";
    const r = await deploy(plain, host, "web-noboot", "--reboot", "auto", "--reboot-timeout", "12");
    expect(r.code).toBe(1);
    const outcome = summaryOf(r)[host];
    expect(outcome).toMatchObject({ status: "failed", phase: "reboot", rolledBack: false });
    expect(String(outcome?.message)).toMatch(/did not come back within 12s of its reboot/);
    const list = await plain.nixship(["lab", "list"]);
    expect(list.stdout).toMatch(/rbn1\s+\S+\s+down/);
  });

  it("a host left down is brought back at its boot menu (lab reboot --entry), then rolled back", async () => {
    // Follows the test above: rbn1 is down, its profile on web-noboot (generation 2).
    const host = "rbn1";
    const unknown = await plain.nixship(["lab", "reboot", host, "--name", "rbn", "--entry", "7"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/rbn1 has no boot entry for generation 7/);
    expect(unknown.stderr).toMatch(/its boot menu offers generation 1, 2/);
    // Without --name: the lab that has the host, though it is down.
    const picked = await plain.nixship(["lab", "reboot", host, "--entry", "1"]);
    expect(picked.code, picked.stderr).toBe(0);
    expect(picked.stderr).toMatch(/rbn1: booted generation 1/);
    const up = await statusOf(plain, host);
    expect(name(up.booted)).toBe("v1");
    expect(name(up.current)).toBe("v1");
    expect(await servedAfterBoot(plain.info, host)).toBe("web-v1");
    // The pick did not change the profile; a rollback puts it back on the system that runs.
    const back = await plain.nixship(["rollback", "--fleet", plain.fleetFile, "--on", host]);
    expect(back.code, back.stderr).toBe(0);
    const after = await statusOf(plain, host);
    expect(name(after.current)).toBe("v1");
    expect(after.generation).toBe(1);
    // Its next ordinary boot is web-v1 too.
    const rebooted = await plain.nixship(["lab", "reboot", host, "--name", "rbn"]);
    expect(rebooted.code, rebooted.stderr).toBe(0);
    expect(name((await statusOf(plain, host)).booted)).toBe("v1");
  });
});
