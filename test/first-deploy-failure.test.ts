// Failures that tell the truth, on a fresh lab host with no earlier system: a first
// deploy that fails its health check cannot go back, and says so once, without promising a
// rollback; the host is marked failed, so `status` exits 1 naming it, and the next `plan`
// activates the system again rather than calling it up to date. A deploy that succeeds clears
// the mark.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { servedBy, setExampleSystems, summaryOf } from "./support/lab-deploy.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

const HOST = "fd1";
let lab: SshLab;
const nixship = (args: readonly string[]) => lab.nixship(args);

beforeAll(async () => {
  lab = await startSshLab("fd", 1);
});

afterAll(async () => {
  await lab?.down();
});

describe("a failed first deploy", () => {
  it("says once where the host stands: no earlier system, the failed one runs, marked failed", async () => {
    await setExampleSystems(lab.fleetFile, { [HOST]: "web-broken" });
    const r = await lab.deploy("--json");
    expect(r.code).toBe(1);
    const outcome = summaryOf(r)[HOST] as { message?: string } | undefined;
    expect(outcome).toMatchObject({ status: "failed", phase: "health", rolledBack: false });
    expect(outcome?.message).toMatch(
      /got status 500.*no earlier system to go back to: the host runs \/nix\/store\/\S+-example-web-system-broken, marked failed until an activation succeeds/,
    );
    expect(outcome?.message).not.toContain("rolls itself back");
    expect(await servedBy(lab.info, HOST)).toBe("web-broken");
  });

  it("status exits 1 and names the host failed, with why", async () => {
    const json = await nixship(["status", "--fleet", lab.fleetFile, "--json"]);
    expect(json.code).toBe(1);
    const row = (
      JSON.parse(json.stdout) as {
        hosts: {
          host: string;
          inStep: boolean;
          current: string;
          failed?: { path: string; reason: string };
        }[];
      }
    ).hosts[0];
    expect(row).toMatchObject({ host: HOST, inStep: false });
    expect(row?.failed?.path).toBe(row?.current);
    expect(row?.failed?.reason).toContain("no earlier system to go back to");
    const table = await nixship(["status", "--fleet", lab.fleetFile]);
    expect(table.code).toBe(1);
    expect(table.stdout).toMatch(
      new RegExp(
        `^${HOST}\\s+ssh\\s+example-web-system-broken\\s+1\\s+failed\\s+its system failed since \\S+: `,
        "m",
      ),
    );
  });

  it("the next plan activates it again, never 'up to date'", async () => {
    const json = await nixship(["plan", "--fleet", lab.fleetFile, "--json"]);
    expect(json.code, json.stderr).toBe(0);
    const planned = (JSON.parse(json.stdout) as { hosts: Record<string, unknown>[] }).hosts[0];
    expect(planned).toMatchObject({ host: HOST, action: "activate" });
    expect(String(planned?.failedThere)).toContain("no earlier system to go back to");
    const text = await nixship(["plan", "--fleet", lab.fleetFile]);
    expect(text.stdout).toContain("its system failed there, so it is activated again");
    expect(text.stdout).not.toContain("up to date");
  });

  it("a deploy that succeeds clears the mark", async () => {
    await setExampleSystems(lab.fleetFile, { [HOST]: "web-v1" });
    const r = await lab.deploy("--json");
    expect(r.code, r.stderr).toBe(0);
    const status = await nixship(["status", "--fleet", lab.fleetFile, "--json"]);
    expect(status.code, status.stdout).toBe(0);
    expect((JSON.parse(status.stdout) as { hosts: object[] }).hosts[0]).not.toHaveProperty(
      "failed",
    );
  });
});
