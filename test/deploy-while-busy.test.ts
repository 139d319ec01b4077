// A deploy started while another is in its health checks on a lab host: the host runs the
// other deploy's system, unconfirmed, and may yet go back. `status` shows it applying (not
// drifting), the plan never calls it up to date, and the second deploy refuses to start,
// naming the host and the rollout at work there, and changes nothing. Once the first deploy ends, the second finds it up to date.
import { readFile, writeFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CheckServer, checkedPolicy, startCheckServer } from "./support/check-server.js";
import { setExampleSystems } from "./support/lab-deploy.js";
import { statusRows } from "./support/rollout-records.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

let lab: SshLab;
let check: CheckServer;
const HOST = "mb1";

beforeAll(async () => {
  lab = await startSshLab("mb", 1);
  check = await startCheckServer(`10.231.${lab.info.number}.1`);
}, 120_000);
afterAll(async () => {
  check?.close();
  await lab?.down();
});

describe("a deploy while another deploy is in its checks", () => {
  it("is refused, and the host is applying, not drifting, until the first deploy ends", async () => {
    await setExampleSystems(lab.fleetFile, { [HOST]: "web-v1" });
    const v1 = await lab.deploy("--json");
    expect(v1.code, v1.stderr).toBe(0);
    const doc = JSON.parse(await readFile(lab.fleetFile, "utf8")) as Record<string, unknown>;
    // The check and the host's confirmation window outlast the hold below (the default 30 s
    // window rolled the host back by itself while this test's own commands ran on a loaded
    // machine).
    doc.policy = checkedPolicy(doc.policy, check, {
      confirmTimeout: 420,
      health: { http: [{ url: check.url, timeout: 360 }] },
    });
    await writeFile(lab.fleetFile, JSON.stringify(doc, null, 2));
    await setExampleSystems(lab.fleetFile, { [HOST]: "web-v2" });

    // The first deploy's check of the host is held until the test lets it go.
    let inChecks!: () => void;
    const reached = new Promise<void>((resolve) => {
      inChecks = resolve;
    });
    let letGo!: () => void;
    const held = new Promise<void>((resolve) => {
      letGo = resolve;
    });
    check.onCheck(HOST, async () => {
      inChecks();
      await Promise.race([held, new Promise((resolve) => setTimeout(resolve, 300_000))]);
    });
    const first = lab.deploy("--json");
    await reached;

    // It runs v2, which its record (written when the deploy ends) does not name yet.
    const live = await statusRows(lab.nixship, lab.fleetFile);
    const row = live.rows.get(HOST) as unknown as Record<string, unknown>;
    expect(row.current).toMatch(/-v2$/);
    expect(row).not.toHaveProperty("drift");
    expect(row.hostState).toBe("applying");
    const table = await lab.nixship(["status", "--fleet", lab.fleetFile]);
    expect(table.stdout).toMatch(
      new RegExp(`^${HOST}\\s+ssh\\s+\\S+-v2\\s+\\d+\\s+applying\\s`, "m"),
    );

    const plan = await lab.nixship(["plan", "--fleet", lab.fleetFile, "--json"]);
    expect(plan.code, plan.stderr).toBe(0);
    const planned = (
      JSON.parse(plan.stdout) as { hosts: { host: string; action: string; busy?: string }[] }
    ).hosts[0];
    expect(planned).toMatchObject({ host: HOST, action: "activate" });
    // It names the rollout at work there and who started it: the operator to ask.
    expect(planned?.busy).toMatch(
      /^an activation awaits its deploy's confirmation \(that deploy is in its checks\): rollout ([0-9a-f]{12}) by \S+@\S+, started \d{4}-\d\d-\d\dT/,
    );
    const holder = /rollout ([0-9a-f]{12})/.exec(planned?.busy ?? "")?.[1];

    const second = await lab.deploy();
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(
      new RegExp(
        `another deploy is mid-flight on a host, so none is up to date yet and nothing was changed: ${HOST}: an activation awaits its deploy's confirmation`,
      ),
    );
    expect(second.stderr).toMatch(/hint: wait for that deploy to end/);

    letGo();
    const firstRun = await first;
    expect(firstRun.code, `${firstRun.stderr}${firstRun.stdout}`).toBe(0);
    expect(firstRun.stdout).toContain(`"rollout":"${holder}"`);
    const after = await lab.deploy("--json");
    expect(after.code, after.stderr).toBe(0);
    expect(after.stdout).toContain('"reason":"up-to-date"');
  }, 500_000);
});
