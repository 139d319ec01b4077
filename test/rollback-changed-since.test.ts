// A rollback of a rollout undoes that rollout, never more, even when another deploy lands
// while it runs: on two ssh lab hosts, v1 then v2 (the rollout undone). The rollback sends both
// back to v1, the canary first; while the canary's HTTP check runs (a server of this test's,
// which the deployer asks), another deploy moves host 2 to v3. When host 2's wave comes, its
// host refuses under its lock (it runs v3, not the v2 the rollout left): it keeps v3, and the
// rollback names it refused, changed since. `--force` then sends it back all the same.
import { copyFile, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CheckServer, checkedPolicy, startCheckServer } from "./support/check-server.js";
import { labDeployArgs, servedBy, setExampleSystems, summaryOf } from "./support/lab-deploy.js";
import { rolloutFiles, statusRows, undoPlanOf } from "./support/rollout-records.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

let lab: SshLab;
let check: CheckServer;
const H = (i: number) => `rc${i}`;

beforeAll(async () => {
  lab = await startSshLab("rc", 2);
  check = await startCheckServer(`10.231.${lab.info.number}.1`);
}, 120_000);
afterAll(async () => {
  check?.close();
  await lab?.down();
});

const served = async () => await Promise.all([1, 2].map((i) => servedBy(lab.info, H(i))));

function rollback(...extra: string[]) {
  return lab.nixship([
    "rollback",
    "--fleet",
    lab.fleetFile,
    "--key",
    join(lab.info.dir, "cache.sec"),
    "--serve-cache",
    `10.231.${lab.info.number}.1:0`,
    "--json",
    ...extra,
  ]);
}

/** The fleet's policy: a canary of one host, then one host a wave, each checked over HTTP. */
async function checkEveryHost(fleetFile: string): Promise<void> {
  const doc = JSON.parse(await readFile(fleetFile, "utf8")) as Record<string, unknown>;
  doc.policy = checkedPolicy(doc.policy, check, { parallel: 1 });
  await writeFile(fleetFile, JSON.stringify(doc, null, 2));
}

describe("a rollback of a rollout leaves a host another deploy moved while it ran", () => {
  let v2Rollout: string;

  it("v1, then v2 on both hosts", async () => {
    for (const v of ["web-v1", "web-v2"]) {
      await setExampleSystems(lab.fleetFile, { [H(1)]: v, [H(2)]: v });
      const r = await lab.deploy("--json");
      expect(r.code, r.stderr).toBe(0);
    }
    const rows = (await statusRows(lab.nixship, lab.fleetFile, "--stored")).rows;
    v2Rollout = rows.get(H(2))?.origin?.ref as string;
    expect(v2Rollout).toMatch(/^[0-9a-f]{12}$/);
    expect(await served()).toEqual(["web-v2", "web-v2"]);
  });

  it("the rollback sends host 1 back; host 2, moved to v3 meanwhile, refuses and keeps v3", async () => {
    // Another operator's fleet file: host 2 on v3, no checks of this test's.
    const other = join(lab.info.dir, "other.json");
    await copyFile(lab.fleetFile, other);
    await setExampleSystems(other, { [H(2)]: "web-v3" });
    await checkEveryHost(lab.fleetFile);
    let landed: { code: number; stderr: string } | undefined;
    check.onCheck(H(1), async () => {
      landed = await lab.nixship(
        labDeployArgs(lab.info, other, join(lab.info.dir, "cache.sec"), "--on", H(2), "--json"),
      );
    });
    const back = await rollback();
    expect(landed?.code, landed?.stderr).toBe(0);
    expect(back.code, back.stderr).toBe(1);
    const plan = undoPlanOf(back.stdout);
    expect(plan.rollout).toBe(v2Rollout);
    // Planned before the other deploy landed: both were to go back.
    expect(plan.steps.map((s) => [s.host, s.kind])).toEqual([
      [H(1), "back"],
      [H(2), "back"],
    ]);
    expect(check.asked[0]).toBe(H(1));
    expect(await served()).toEqual(["web-v1", "web-v3"]);
    const outcomes = summaryOf(back);
    expect(outcomes[H(1)]).toMatchObject({ status: "activated" });
    expect(outcomes[H(2)]).toMatchObject({
      status: "skipped",
      reason: "refused",
      message: expect.stringMatching(
        /^it runs \/nix\/store\/\S+-v3, not \/nix\/store\/\S+-v2, .*changed since/,
      ),
    });
    // The rollback's own record names host 2 refused; its status record says v3.
    const rows = (await statusRows(lab.nixship, lab.fleetFile, "--stored")).rows;
    const own = rows.get(H(1))?.origin?.ref as string;
    const fleet = JSON.parse(await readFile(lab.fleetFile, "utf8")) as { cache: { url: string } };
    const record = (await rolloutFiles(fleet.cache.url)).find((r) => r.id === own);
    expect(record).toMatchObject({ undoes: v2Rollout });
    const hosts = record?.waves.flatMap((w) => w.hosts) ?? [];
    expect(hosts.find((h) => h.host === H(2))).toMatchObject({
      state: "refused",
      message: expect.stringContaining("changed since"),
    });
    expect(rows.get(H(2))?.origin?.ref).not.toBe(own);
  });

  it("--force sends host 2 back all the same", async () => {
    const back = await rollback("--rollout", v2Rollout, "--force");
    expect(back.code, back.stderr).toBe(0);
    expect(await served()).toEqual(["web-v1", "web-v1"]);
  });
});
