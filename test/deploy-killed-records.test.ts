// A deploy killed outright (SIGKILL: a CI job's timeout, a lost runner) mid-rollout leaves its
// word on the hosts it was done with: on two ssh lab hosts, v1, then v2 with a canary of one
// host. While host 2's HTTP check runs (a server of this test's, which the deployer asks), the
// deployer is killed (SIGKILL). Host 1's status record, written as soon as the canary was done, says v2
// and names the killed rollout; `status --stored` reads it so.
import { readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CheckServer, checkedPolicy, startCheckServer } from "./support/check-server.js";
import { interruptDeploy } from "./support/interrupt-deploy.js";
import { labDeployArgs, setExampleSystems } from "./support/lab-deploy.js";
import { rolloutFiles, statusRows } from "./support/rollout-records.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

let lab: SshLab;
let check: CheckServer;
const H = (i: number) => `kr${i}`;

beforeAll(async () => {
  lab = await startSshLab("kr", 2);
  check = await startCheckServer(`10.231.${lab.info.number}.1`);
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
    // Host 2's HTTP check is held, so the deployer is in it, or on its way, when it is killed
    // (SIGKILL to its own pid, once it says host 2 is in health; pkill of its command line
    // found no process twice in CI runs under load).
    check.onCheck(H(2), () => new Promise((resolve) => setTimeout(resolve, 5000)));
    const v2 = await interruptDeploy(
      labDeployArgs(lab.info, lab.fleetFile, join(lab.info.dir, "cache.sec"), "--json"),
      { NIXSHIP_LAB_DIR: dirname(lab.info.dir) },
      (e) => e.type === "host-phase" && e.host === H(2) && e.phase === "health",
      "SIGKILL",
    );
    expect(v2.signalledAt).toMatchObject({ host: H(2), phase: "health" });
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
