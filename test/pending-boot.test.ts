// A boot left pending: a deploy with a reboot killed once its host went
// down leaves the host on its new system, unconfirmed. The next deploy must judge that boot
// (its checks, then confirm-boot or abort-boot) instead of calling the host up to date, which
// left a counted boot unconfirmed until the boot loader fell back two reboots later.
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { dirname } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NIXSHIP_BIN } from "../support/cli.js";
import {
  deployEvents,
  labDeployArgs,
  servedAfterBoot,
  setExampleSystems,
  summaryOf,
} from "./support/lab-deploy.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

let lab: SshLab;

interface HostRow {
  readonly current?: string;
  readonly booted?: string;
  readonly generation?: number;
  readonly boot?: {
    readonly assessment: string | null;
    readonly pending: { readonly token: string; readonly path: string | null } | null;
  };
}

const name = (path: string | undefined) => path?.replace(/^.*-example-web-system-/, "") ?? "-";

async function statusOf(host: string): Promise<{ code: number; row: HostRow }> {
  const r = await lab.nixship(["status", "--fleet", lab.fleetFile, "--on", host, "--json"]);
  const row = (JSON.parse(r.stdout) as { hosts: HostRow[] }).hosts[0];
  if (row === undefined) throw new Error(`no status for ${host}: ${r.stderr}`);
  return { code: r.code, row };
}

/**
 * `deploy --reboot auto` of `system` to `host`, killed (SIGKILL, with its ssh children) as soon
 * as the host begins its reboot; then waits, bounded, until the host is back on that system.
 */
async function killedAfterReboot(host: string, system: string): Promise<void> {
  await setExampleSystems(lab.fleetFile, { [host]: system });
  const args = labDeployArgs(lab.info, lab.fleetFile, `${lab.info.dir}/cache.sec`, "--on", host);
  const child = spawn(process.execPath, [NIXSHIP_BIN, ...args, "--json", "--reboot", "auto"], {
    env: { ...process.env, NIXSHIP_LAB_DIR: dirname(lab.info.dir) },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let out = "";
  let err = "";
  child.stderr.on("data", (d: Buffer) => {
    err += d.toString();
  });
  const killed = await new Promise<boolean>((resolve) => {
    const deadline = setTimeout(() => resolve(false), 240_000);
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      const rebooting = deployEvents(out.slice(0, out.lastIndexOf("\n") + 1)).some(
        (e) => e.type === "host-phase" && e.host === host && e.phase === "reboot",
      );
      if (rebooting) {
        clearTimeout(deadline);
        process.kill(-(child.pid as number), "SIGKILL");
        resolve(true);
      }
    });
    child.on("exit", () => {
      clearTimeout(deadline);
      resolve(false);
    });
  });
  expect(killed, `the deploy never reached its reboot:\n${err}`).toBe(true);
  // Back up on the new system, unconfirmed (a lab host reboots in well under a second).
  for (let i = 0; i < 60; i++) {
    await sleep(1000);
    const { row } = await statusOf(host).catch(() => ({ row: {} as HostRow }));
    if (row.booted !== undefined && name(row.booted) === name(row.boot?.pending?.path ?? "")) {
      return;
    }
  }
  throw new Error(`${host} did not come back on ${system} within 60 s`);
}

beforeAll(async () => {
  lab = await startSshLab("pbt", 2, { bootCounting: 2 });
  // Every host runs web-v1 from a boot.
  await setExampleSystems(lab.fleetFile, { pbt1: "web-v1", pbt2: "web-v1" });
  const r = await lab.deploy("--json");
  expect(r.code, r.stderr).toBe(0);
  for (const host of ["pbt1", "pbt2"]) {
    // Without --name: the lab that has the host.
    const rebooted = await lab.nixship(["lab", "reboot", host]);
    expect(rebooted.code, rebooted.stderr).toBe(0);
  }
}, 300_000);

afterAll(async () => {
  await lab?.down();
});

describe("a lab host's boots", () => {
  it("each have a kernel boot id of their own, as a machine's do, even two in one second", async () => {
    const bootId = async () => {
      const r = await lab.nixship([
        "lab",
        "exec",
        "pbt2",
        "--",
        "cat",
        "/proc/sys/kernel/random/boot_id",
      ]);
      expect(r.code, r.stderr).toBe(0);
      return r.stdout.trim();
    };
    const ids = [await bootId()];
    for (let i = 0; i < 2; i++) {
      const rebooted = await lab.nixship(["lab", "reboot", "pbt2", "--name", lab.name]);
      expect(rebooted.code, rebooted.stderr).toBe(0);
      ids.push(await bootId());
    }
    const machine = (await readFile("/proc/sys/kernel/random/boot_id", "utf8")).trim();
    for (const id of ids)
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(new Set([...ids, machine]).size).toBe(4);
  });
});

describe("a boot left pending by a killed deploy", () => {
  it("is shown by plan and status, and the next deploy confirms it before anything else", async () => {
    const host = "pbt1";
    await killedAfterReboot(host, "web-v4");
    const left = await statusOf(host);
    expect(name(left.row.current)).toBe("v4");
    expect(left.row.boot?.assessment).toBe("indeterminate");
    // status: not in step while the boot waits for its verdict.
    expect(left.code).toBe(1);
    const text = await lab.nixship(["status", "--fleet", lab.fleetFile, "--on", host]);
    expect(text.stdout).toMatch(/reboot into \S*web-system-v4 unconfirmed/);

    // plan: not up to date; the boot is judged first.
    const planned = await lab.nixship(["plan", "--fleet", lab.fleetFile, "--on", host, "--json"]);
    expect(planned.code, planned.stderr).toBe(0);
    const hostPlan = (JSON.parse(planned.stdout) as { hosts: Record<string, unknown>[] }).hosts[0];
    expect(hostPlan).toMatchObject({ action: "activate", pendingBoot: { decision: "judge" } });
    const planText = await lab.nixship(["plan", "--fleet", lab.fleetFile, "--on", host]);
    expect(planText.stdout).toMatch(/judge boot/);
    expect(planText.stdout).toMatch(/unconfirmed: judged first/);

    // The next deploy (no --reboot) judges the boot: its checks pass, confirm-boot keeps it.
    const r = await lab.deploy("--on", host, "--json");
    expect(r.code, r.stderr).toBe(0);
    expect(summaryOf(r)[host]).toMatchObject({ status: "activated" });
    const phases = deployEvents(r)
      .filter((e) => e.type === "host-phase" && e.host === host)
      .map((e) => e.phase);
    expect(phases).toContain("confirm");
    const after = await statusOf(host);
    expect(after.code).toBe(0);
    expect(after.row.boot?.pending).toBeNull();
    expect(after.row.boot?.assessment).toBe("good");

    // Confirmed for good: two ordinary reboots later the host still boots web-v4 (a boot left
    // indeterminate spends a try each time, and the boot loader then falls back to web-v1).
    for (let i = 0; i < 2; i++) {
      const rebooted = await lab.nixship(["lab", "reboot", host, "--name", lab.name]);
      expect(rebooted.code, rebooted.stderr).toBe(0);
    }
    expect(name((await statusOf(host)).row.booted)).toBe("v4");
    expect(await servedAfterBoot(lab.info, host)).toBe("web-v4");
  }, 300_000);

  it("a pending boot whose checks fail is rolled back, and the host reboots into the previous", async () => {
    const host = "pbt2";
    await killedAfterReboot(host, "web-v4-broken");
    const r = await lab.deploy("--on", host, "--json");
    expect(r.code).toBe(1);
    const outcome = summaryOf(r)[host];
    expect(outcome, JSON.stringify(outcome)).toMatchObject({
      status: "failed",
      phase: "health",
      rolledBack: true,
    });
    expect(String(outcome?.message)).toMatch(/status 500.*rebooted into the previous system/);
    const after = await statusOf(host);
    expect(name(after.row.booted)).toBe("v1");
    expect(name(after.row.current)).toBe("v1");
    expect(after.row.boot?.pending).toBeNull();
    expect(await servedAfterBoot(lab.info, host)).toBe("web-v1");
    // The store's record says so too: the host runs v1, not the v4-broken it booted, and the
    // deploy's summary said the same.
    const stored = await lab.nixship([
      "status",
      "--fleet",
      lab.fleetFile,
      "--on",
      host,
      "--stored",
      "--json",
    ]);
    const row = (JSON.parse(stored.stdout) as { hosts: HostRow[] }).hosts[0];
    expect(name(row?.current), stored.stdout).toBe("v1");
    expect(outcome?.runs, JSON.stringify(outcome)).toMatch(/-example-web-system-v1$/);
  }, 300_000);
});
