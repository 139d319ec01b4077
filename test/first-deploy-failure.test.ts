// Failures that tell the truth (issue 30), on a fresh lab host with no earlier system: a first
// deploy that fails its health check cannot go back, and says so once, without promising a
// rollback; the host is marked failed, so `status` exits 1 naming it, and the next `plan`
// activates the system again rather than calling it up to date. A deploy that succeeds clears
// the mark.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NIXSHIP_BIN, run } from "./support/cli.js";
import {
  deployEvents,
  type LabInfo,
  labDeployArgs,
  servedBy,
  setExampleSystems,
} from "./support/lab-deploy.js";

const LAB = "fd";
const HOST = `${LAB}1`;
let work: string;
let lab: LabInfo;
let fleetFile: string;
const env = () => ({ NIXSHIP_LAB_DIR: join(work, "labs") });
const nixship = (args: readonly string[]) =>
  run(process.execPath, [NIXSHIP_BIN, ...args], { env: env() });

type Outcome = { status: string; phase?: string; message?: string; rolledBack?: boolean };
function outcomeOf(r: { stdout: string }): Outcome | undefined {
  const summary = deployEvents(r.stdout).find((e) => e.type === "summary") as unknown as {
    results: { host: string; outcome: Outcome }[];
  };
  return summary.results.find((h) => h.host === HOST)?.outcome;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-first-deploy-"));
  const up = await nixship(["lab", "up", "1", "--name", LAB, "--json"]);
  expect(up.code, up.stderr).toBe(0);
  lab = JSON.parse(up.stdout) as LabInfo;
  fleetFile = join(lab.dir, "nixship.json");
});

afterAll(async () => {
  await nixship(["lab", "down", "--name", LAB]);
  await rm(work, { recursive: true, force: true });
});

describe("a failed first deploy", () => {
  it("says once where the host stands: no earlier system, the failed one runs, marked failed", async () => {
    await setExampleSystems(fleetFile, { [HOST]: "web-broken" });
    const r = await nixship(labDeployArgs(lab, fleetFile, join(lab.dir, "cache.sec"), "--json"));
    expect(r.code).toBe(1);
    const outcome = outcomeOf(r);
    expect(outcome).toMatchObject({ status: "failed", phase: "health", rolledBack: false });
    expect(outcome?.message).toMatch(
      /got status 500.*no earlier system to go back to: the host runs \/nix\/store\/\S+-example-web-system-broken, marked failed until an activation succeeds/,
    );
    expect(outcome?.message).not.toContain("rolls itself back");
    expect(await servedBy(lab, HOST)).toBe("web-broken");
  });

  it("status exits 1 and names the host failed, with why", async () => {
    const json = await nixship(["status", "--fleet", fleetFile, "--json"]);
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
    const table = await nixship(["status", "--fleet", fleetFile]);
    expect(table.code).toBe(1);
    expect(table.stdout).toMatch(
      new RegExp(
        `^${HOST}\\s+ssh\\s+example-web-system-broken\\s+1\\s+failed\\s+its system failed since \\S+: `,
        "m",
      ),
    );
  });

  it("the next plan activates it again, never 'up to date'", async () => {
    const json = await nixship(["plan", "--fleet", fleetFile, "--json"]);
    expect(json.code, json.stderr).toBe(0);
    const planned = (JSON.parse(json.stdout) as { hosts: Record<string, unknown>[] }).hosts[0];
    expect(planned).toMatchObject({ host: HOST, action: "activate" });
    expect(String(planned?.failedThere)).toContain("no earlier system to go back to");
    const text = await nixship(["plan", "--fleet", fleetFile]);
    expect(text.stdout).toContain("its system failed there, so it is activated again");
    expect(text.stdout).not.toContain("up to date");
  });

  it("a deploy that succeeds clears the mark", async () => {
    await setExampleSystems(fleetFile, { [HOST]: "web-v1" });
    const r = await nixship(labDeployArgs(lab, fleetFile, join(lab.dir, "cache.sec"), "--json"));
    expect(r.code, r.stderr).toBe(0);
    const status = await nixship(["status", "--fleet", fleetFile, "--json"]);
    expect(status.code, status.stdout).toBe(0);
    expect((JSON.parse(status.stdout) as { hosts: object[] }).hosts[0]).not.toHaveProperty(
      "failed",
    );
  });
});
