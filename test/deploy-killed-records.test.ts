// A deploy killed outright (SIGKILL: a CI job's timeout, a lost runner) mid-rollout leaves its
// word on the hosts it was done with: on two ssh lab hosts, v1, then v2 with a canary of one
// host. While host 2's HTTP check runs (a server of this test's, which the deployer asks), the
// deployer is killed. Host 1's status record, written as soon as the canary was done, says v2
// and names the killed rollout; `status --stored` reads it so.
import { readFile, writeFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "../support/cli.js";
import { type CheckServer, checkedPolicy, startCheckServer } from "./support/check-server.js";
import { setExampleSystems } from "./support/lab-deploy.js";
import { rolloutFiles, statusRows } from "./support/rollout-records.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

let lab: SshLab;
let check: CheckServer;
const H = (i: number) => `kr${i}`;

beforeAll(async () => {
  lab = await startSshLab("kr", 2);
  check = await startCheckServer();
}, 120_000);
afterAll(async () => {
  check?.close();
  await lab?.down();
});

describe("a deploy killed mid-rollout", () => {
  it("leaves the status record of the host its canary wave was done with", async () => {
    await setExampleSystems(lab.fleetFile, { [H(1)]: "web-v1", [H(2)]: "web-v1" });
    const v1 = await lab.deploy("--json");
    expect(v1.code, v1.stderr).toBe(0);
    const doc = JSON.parse(await readFile(lab.fleetFile, "utf8")) as Record<string, unknown>;
    doc.policy = checkedPolicy(doc.policy, check);
    await writeFile(lab.fleetFile, JSON.stringify(doc, null, 2));
    await setExampleSystems(lab.fleetFile, { [H(1)]: "web-v2", [H(2)]: "web-v2" });
    let killed = false;
    check.onCheck(H(2), async () => {
      // The deployer's command line names this lab's fleet file, and nothing else does.
      // (Asked again, briefly, when pkill finds no such process: it did once, in a CI run under
      // load, while the deployer waited on this very check.)
      for (let i = 0; i < 10 && !killed; i++) {
        const k = await run("pkill", ["-KILL", "-f", `deploy --fleet ${lab.fleetFile}`]);
        killed = k.code === 0;
        if (!killed) await new Promise((r) => setTimeout(r, 100));
      }
    });
    const v2 = await lab.deploy("--json");
    expect(killed, `${v2.stderr}\n${v2.stdout.slice(-3000)}`).toBe(true);
    expect(v2.code).not.toBe(0);
    const fleet = JSON.parse(await readFile(lab.fleetFile, "utf8")) as { cache: { url: string } };
    const running = (await rolloutFiles(fleet.cache.url)).find((r) => r.state === "running");
    expect(running, "the killed deploy's rollout record").toBeDefined();
    const rows = (await statusRows(lab.nixship, lab.fleetFile, "--stored")).rows;
    const row = rows.get(H(1)) as unknown as {
      current: string;
      origin: { ref: string | null };
    };
    expect(row.current).toMatch(/-v2$/);
    expect(row.origin.ref).toBe(running?.id);
  });
});
