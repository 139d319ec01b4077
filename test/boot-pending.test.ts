// A boot set for later (`deploy --action boot`: the profile and boot loader on the new system,
// the host still on the old one) is a boot left pending, in ssh and ssm modes alike: the plan
// names the host and what the next deploy does with it, never "up to date"; the next deploy
// says first what becomes of it. Not rebooted: the host does not run the desired system, so it
// switches to it. Rebooted into it: the boot is judged as a reboot's (the checks, then
// confirm-boot). The ssm host is a lab host reached through the SSM stand-in, which runs the
// document's real shell.
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CliRun, nixship } from "../support/cli.js";
import {
  type DeployEventLine,
  deployEvents,
  labDeployArgs,
  servedAfterBoot,
  servedBy,
  setExampleSystems,
  summaryOf,
} from "./support/lab-deploy.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";
import { makeSsmHosts, type SsmStandIn, startSsmStandIn } from "./support/ssm-stand-in.js";

const SSH_HOST = "bpd1";
const SSM_HOST = "bpd2";

let lab: SshLab;
let ssm: SsmStandIn;
let env: NodeJS.ProcessEnv;

interface PlannedHost {
  readonly action: string;
  readonly current?: string;
  readonly pendingBoot?: Record<string, unknown>;
}

const name = (path: string | undefined) => path?.replace(/^.*-example-web-system-/, "") ?? "-";

function cli(args: readonly string[]): Promise<CliRun> {
  return nixship(args, { env });
}

function deploy(host: string, ...extra: string[]): Promise<CliRun> {
  const key = join(lab.info.dir, "cache.sec");
  return cli([...labDeployArgs(lab.info, lab.fleetFile, key), "--on", host, "--json", ...extra]);
}

async function planOf(host: string): Promise<{ json: PlannedHost; text: string }> {
  const json = await cli(["plan", "--fleet", lab.fleetFile, "--on", host, "--json"]);
  expect(json.code, json.stderr).toBe(0);
  const text = await cli(["plan", "--fleet", lab.fleetFile, "--on", host]);
  expect(text.code, text.stderr).toBe(0);
  const planned = (JSON.parse(json.stdout) as { hosts: PlannedHost[] }).hosts[0];
  if (planned === undefined) throw new Error(`no plan for ${host}: ${json.stderr}`);
  return { json: planned, text: text.stdout };
}

/** The host's events of a deploy, in order, after its wave started. */
function hostEvents(r: CliRun, host: string): DeployEventLine[] {
  return deployEvents(r).filter(
    (e) => (e.type === "host-log" || e.type === "host-phase") && e.host === host,
  );
}

/** `deploy --action boot` of `system`, which leaves the host on what it runs. */
async function setToBoot(host: string, system: string): Promise<void> {
  await setExampleSystems(lab.fleetFile, { [host]: system });
  const r = await deploy(host, "--action", "boot");
  expect(r.code, r.stderr).toBe(0);
  expect(summaryOf(r)[host]).toMatchObject({ status: "activated" });
  // Status calls it what docs/reboots.md says: a boot nobody judged, not a host behind.
  const status = await cli(["status", "--fleet", lab.fleetFile, "--on", host, "--json"]);
  expect(status.code).toBe(1);
  const row = (JSON.parse(status.stdout) as { hosts: Record<string, unknown>[] }).hosts[0];
  expect(row, status.stdout).toMatchObject({ hostState: "unconfirmed", inStep: false });
  expect(row).not.toHaveProperty("behind");
  const table = await cli(["status", "--fleet", lab.fleetFile, "--on", host]);
  expect(table.stdout).toMatch(/unconfirmed .*reboot into \S*web-system-v\d unconfirmed since/);
  expect(table.stdout).not.toContain("not what it runs");
}

beforeAll(async () => {
  lab = await startSshLab("bpd", 2);
  const labEnv = { NIXSHIP_LAB_DIR: dirname(lab.info.dir) };
  ssm = await startSsmStandIn({ [SSM_HOST]: {} }, labEnv);
  env = { ...labEnv, ...ssm.env };
  await setExampleSystems(lab.fleetFile, { [SSH_HOST]: "web-v1", [SSM_HOST]: "web-v1" });
  const first = await lab.deploy("--json");
  expect(first.code, first.stderr).toBe(0);
  // The second host is an SSM instance from now on.
  await makeSsmHosts(lab.fleetFile, ssm, [SSM_HOST], { region: "eu-west-1" });
}, 300_000);

afterAll(async () => {
  await ssm?.close();
  await lab?.down();
});

describe.each([
  ["ssh", SSH_HOST],
  ["ssm", SSM_HOST],
])("a boot set for later over %s", (mode, host) => {
  it("not rebooted: the plan names it, and the next deploy says so first, then switches", async () => {
    await setToBoot(host, "web-v2");
    expect(await servedBy(lab.info, host)).toBe("web-v1");

    const planned = await planOf(host);
    expect(planned.json).toMatchObject({
      action: "activate",
      pendingBoot: { decision: "replace", reason: "not-rebooted", rebooted: false, booted: false },
    });
    expect(name(planned.json.current)).toBe("v1");
    expect(name(planned.json.pendingBoot?.path as string)).toBe("v2");
    expect(planned.text).toMatch(
      /boots \S*web-system-v2 next \(set [^)]*\), not rebooted yet: this activation replaces it/,
    );

    const r = await deploy(host);
    expect(r.code, r.stderr).toBe(0);
    const first = hostEvents(r, host)[0];
    expect(first, `${mode}: ${JSON.stringify(hostEvents(r, host))}`).toMatchObject({
      type: "host-log",
    });
    expect(String(first?.line)).toMatch(
      /web-system-v2\) that an earlier deploy set is pending, but the host has not rebooted since: it runs \S*web-system-v1; this activation replaces it/,
    );
    expect(summaryOf(r)[host]).toMatchObject({ status: "activated" });
    expect(await servedBy(lab.info, host)).toBe("web-v2");
    // Nothing is left pending: the host is up to date.
    expect((await planOf(host)).json).not.toHaveProperty("pendingBoot");
    expect((await planOf(host)).json).toMatchObject({ action: "skip" });
  }, 300_000);

  it("rebooted into it: never up to date, and the next deploy judges the boot first", async () => {
    await setToBoot(host, "web-v3");
    const rebooted = await lab.nixship(["lab", "reboot", host, "--name", lab.name]);
    expect(rebooted.code, rebooted.stderr).toBe(0);
    expect(await servedAfterBoot(lab.info, host)).toBe("web-v3");

    const planned = await planOf(host);
    expect(planned.json).toMatchObject({
      action: "activate",
      pendingBoot: { decision: "judge", booted: true, rebooted: true },
    });
    expect(planned.text).toMatch(/judge boot/);
    expect(planned.text).toMatch(/unconfirmed: judged first/);

    const r = await deploy(host);
    expect(r.code, r.stderr).toBe(0);
    const events = hostEvents(r, host);
    expect(String(events[0]?.line)).toMatch(
      /^judging first the boot into generation \d+ \(\S*web-system-v3\) that an earlier deploy left pending/,
    );
    const phases = events.filter((e) => e.type === "host-phase").map((e) => e.phase);
    expect(phases).toContain("confirm");
    expect(phases).not.toContain("switch");
    expect(summaryOf(r)[host]).toMatchObject({ status: "activated" });
    expect(await servedBy(lab.info, host)).toBe("web-v3");
    // Judged: nothing is left pending, and the host is up to date.
    const after = (await planOf(host)).json;
    expect(after).not.toHaveProperty("pendingBoot");
    expect(after).toMatchObject({ action: "skip" });
  }, 300_000);
});
