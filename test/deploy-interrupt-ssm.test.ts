// An interrupt while an SSM host's activation runs: the deployer cannot stop its SSM command, so
// it waits for it (within its grace) and then sends the host back, as the interrupt line says,
// through SSM's `rollback`; the records say so and the host serves its old system.
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { interruptDeploy } from "./support/interrupt-deploy.js";
import { labDeployArgs, servedBy, setExampleSystems, summaryOf } from "./support/lab-deploy.js";
import { rolloutFiles, statusRows } from "./support/rollout-records.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";
import { makeSsmHosts, type SsmStandIn, startSsmStandIn } from "./support/ssm-stand-in.js";

const HOST = "dim1";
let lab: SshLab;
let ssm: SsmStandIn;
let env: NodeJS.ProcessEnv;
let cacheUrl: string;

beforeAll(async () => {
  lab = await startSshLab("dim", 1);
  const labEnv = { NIXSHIP_LAB_DIR: dirname(lab.info.dir) };
  ssm = await startSsmStandIn({ [HOST]: {} }, labEnv);
  env = { ...labEnv, ...ssm.env };
  await setExampleSystems(lab.fleetFile, { [HOST]: "web-v1" });
  const first = await lab.deploy("--json");
  expect(first.code, first.stderr).toBe(0);
  // The host is an SSM instance from now on, whose activation checks for 8 s.
  cacheUrl = await makeSsmHosts(
    lab.fleetFile,
    ssm,
    [HOST],
    { region: "eu-west-1", commandTimeout: 120 },
    (doc) => {
      (doc.policy as { health: unknown }).health = {
        http: [],
        commands: [{ run: "sleep 8", timeout: 20 }],
      };
    },
  );
}, 300_000);

afterAll(async () => {
  await ssm?.close();
  await lab?.down();
});

describe("SIGINT while an SSM host activates", () => {
  it("waits for its command, then sends it back: exit 130, rolled back, and the records say so", async () => {
    await setExampleSystems(lab.fleetFile, { [HOST]: "web-v2" });
    const r = await interruptDeploy(
      [...labDeployArgs(lab.info, lab.fleetFile, join(lab.info.dir, "cache.sec")), "--json"],
      env,
      (e) => e.type === "host-phase" && e.host === HOST && e.phase === "switch",
    );
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toContain(`aborting 1 host in flight (${HOST}), rolling it back`);
    expect(summaryOf(r)[HOST]).toMatchObject({
      status: "failed",
      message: "interrupted (SIGINT)",
      rolledBack: true,
    });
    expect(await servedBy(lab.info, HOST)).toBe("web-v1");
    const [record] = await rolloutFiles(cacheUrl);
    expect(record?.state).toBe("interrupted");
    expect(record?.waves.flatMap((w) => w.hosts)).toEqual([
      expect.objectContaining({ host: HOST, state: "rolled-back" }),
    ]);
    const rows = (await statusRows(lab.nixship, lab.fleetFile, "--stored")).rows;
    expect(rows.get(HOST)).toMatchObject({ state: "failed", rolledBack: true });
    expect((rows.get(HOST) as { current?: string }).current).toMatch(/-v1$/);
  }, 300_000);
});
