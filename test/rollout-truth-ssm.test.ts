// The rollout as the unit of truth with ssm hosts (three lab hosts reached through the SSM
// stand-in, which runs the document's shell on them): v1, then v2, then v3 with
// --skip-unreachable while instance 3 never answers (its SSM agent gone: the command's delivery
// times out, as AWS documents). Host 3 is behind in `status` and the dashboard until a deploy
// reaches it; a fleet rollback undoes the v3 rollout alone, and `rollback --rollout` of the v2
// rollout puts all three on v1.
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CliRun, nixship } from "../support/cli.js";
import { dashboardHost } from "./support/dashboard-api.js";
import { labDeployArgs, servedBy, setExampleSystems, summaryOf } from "./support/lab-deploy.js";
import { rolloutFiles, statusRows, undoPlanOf } from "./support/rollout-records.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";
import { makeSsmHosts, type SsmStandIn, startSsmStandIn } from "./support/ssm-stand-in.js";

const HOSTS = ["rts1", "rts2", "rts3"];
let lab: SshLab;
let ssm: SsmStandIn;
let env: NodeJS.ProcessEnv;
let cacheUrl: string;

const cli = (args: readonly string[]): Promise<CliRun> => nixship(args, { env });
const key = () => join(lab.info.dir, "cache.sec");
const serve = () => `10.231.${lab.info.number}.1:0`;

async function deploy(system: string, ...extra: string[]): Promise<CliRun> {
  await setExampleSystems(lab.fleetFile, Object.fromEntries(HOSTS.map((h) => [h, system])));
  return await cli([...labDeployArgs(lab.info, lab.fleetFile, key()), "--json", ...extra]);
}

const rollback = (...extra: string[]) =>
  cli([
    "rollback",
    "--fleet",
    lab.fleetFile,
    "--key",
    key(),
    "--serve-cache",
    serve(),
    "--json",
    ...extra,
  ]);

const served = () => Promise.all(HOSTS.map((h) => servedBy(lab.info, h)));

beforeAll(async () => {
  lab = await startSshLab("rts", 3);
  const labEnv = { NIXSHIP_LAB_DIR: dirname(lab.info.dir) };
  ssm = await startSsmStandIn(Object.fromEntries(HOSTS.map((h) => [h, {}])), labEnv);
  env = { ...labEnv, ...ssm.env };
  await setExampleSystems(lab.fleetFile, Object.fromEntries(HOSTS.map((h) => [h, "web-v1"])));
  const first = await lab.deploy("--json");
  expect(first.code, first.stderr).toBe(0);
  // Every host is an SSM instance from now on.
  // The shortest delivery timeout SSM takes: a silent instance costs the survey 30 s.
  cacheUrl = await makeSsmHosts(lab.fleetFile, ssm, HOSTS, {
    region: "eu-west-1",
    commandTimeout: 30,
  });
}, 300_000);

afterAll(async () => {
  await ssm?.close();
  await lab?.down();
});

const status = (...extra: string[]) => statusRows(cli, lab.fleetFile, ...extra);

describe("ssm hosts: a host a rollout skipped is behind; rollback undoes a rollout, never more", () => {
  let v2Rollout: string;
  let v3Rollout: string;

  it("v2, then v3 while instance 3 never answers: the rollout is partial, host 3 unreachable", async () => {
    const v2 = await deploy("web-v2");
    expect(v2.code, v2.stderr).toBe(0);
    v2Rollout = (await rolloutFiles(cacheUrl))[0]?.id as string;
    const silent = ssm.instances.rts3 as string;
    ssm.silence(silent, true);
    let v3: CliRun;
    try {
      v3 = await deploy("web-v3", "--skip-unreachable");
    } finally {
      ssm.silence(silent, false);
    }
    expect(v3.code, v3.stderr).toBe(0);
    expect(summaryOf(v3).rts3).toMatchObject({ status: "skipped", reason: "unreachable" });
    const record = (await rolloutFiles(cacheUrl))[0];
    v3Rollout = record?.id as string;
    expect(v3Rollout).not.toBe(v2Rollout);
    expect(record?.state).toBe("partial");
    expect(record?.skipped).toEqual([
      expect.objectContaining({
        host: "rts3",
        state: "unreachable",
        message: expect.stringContaining("Delivery Timed Out"),
      }),
    ]);
    expect(await served()).toEqual(["web-v3", "web-v3", "web-v2"]);
  }, 300_000);

  it("status and the dashboard call host 3 behind, naming the rollout that skipped it", async () => {
    const { code, rows } = await status();
    expect(code).toBe(1);
    expect(rows.get("rts3")).toMatchObject({
      inStep: false,
      behindRollout: { rollout: v3Rollout, why: expect.stringMatching(/^skipped as unreachable/) },
    });
    expect(rows.get("rts1")?.inStep).toBe(true);
    expect(await dashboardHost(lab.fleetFile, "rts3")).toMatchObject({
      behindRollout: { rollout: v3Rollout },
    });
  });

  it("a fleet rollback undoes the v3 rollout alone; rollback --rollout of v2 puts all on v1", async () => {
    const back = await rollback();
    expect(back.code, back.stderr).toBe(0);
    const undo = undoPlanOf(back.stdout);
    expect(undo.rollout).toBe(v3Rollout);
    expect(undo.steps.map((s) => [s.host, s.kind])).toEqual([
      ["rts1", "back"],
      ["rts2", "back"],
      ["rts3", "stays"],
    ]);
    expect(await served()).toEqual(["web-v2", "web-v2", "web-v2"]);
    expect((await status()).code).toBe(0);
    const again = await rollback("--rollout", v2Rollout);
    expect(again.code, again.stderr).toBe(0);
    expect(await served()).toEqual(["web-v1", "web-v1", "web-v1"]);
    expect((await status()).code).toBe(0);
  }, 300_000);
});
