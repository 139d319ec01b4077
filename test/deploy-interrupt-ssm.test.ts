// An interrupt while an SSM host's activation runs: the deployer cannot stop its SSM command, so
// it waits for it (within its grace) and then sends the host back, as the interrupt line says,
// through SSM's `rollback`; the records say so and the host serves its old system. A host of tag
// targets whose instances run one at a time (MaxConcurrency 1): the interrupt starts no new one
// (its command is cancelled where SSM has not started it), and the one that switched goes back.
import { dirname, join } from "node:path";
import { ListCommandInvocationsCommand, ListCommandsCommand, SSMClient } from "@aws-sdk/client-ssm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { interruptDeploy } from "./support/interrupt-deploy.js";
import { labDeployArgs, servedBy, setExampleSystems, summaryOf } from "./support/lab-deploy.js";
import { rolloutFiles, statusRows } from "./support/rollout-records.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";
import {
  makeSsmHosts,
  type SsmStandIn,
  STAND_IN_REGION,
  startSsmStandIn,
} from "./support/ssm-stand-in.js";

const HOST = "dim1";
/** The fleet's host `web`: the instances tagged Role=web, the lab's dim2 and dim3. */
const WEB = ["dim2", "dim3"];
let lab: SshLab;
let ssm: SsmStandIn;
let env: NodeJS.ProcessEnv;
let cacheUrl: string;

beforeAll(async () => {
  lab = await startSshLab("dim", 3);
  const labEnv = { NIXSHIP_LAB_DIR: dirname(lab.info.dir) };
  ssm = await startSsmStandIn({ [HOST]: {}, dim2: { Role: "web" }, dim3: { Role: "web" } }, labEnv);
  env = { ...labEnv, ...ssm.env };
  await setExampleSystems(lab.fleetFile, { [HOST]: "web-v1", dim2: "web-v1", dim3: "web-v1" });
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
      // dim2 and dim3 are the one host `web`: every instance tagged Role=web.
      const hosts = doc.hosts as Record<string, Record<string, unknown>>;
      const { sshHost: _, hostKey: __, ...rest } = hosts.dim2 as Record<string, unknown>;
      delete hosts.dim2;
      delete hosts.dim3;
      hosts.web = { ...rest, delivery: "ssm", targets: [{ key: "tag:Role", values: ["web"] }] };
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
      [
        ...labDeployArgs(lab.info, lab.fleetFile, join(lab.info.dir, "cache.sec")),
        ...["--on", HOST, "--json"],
      ],
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

describe("SIGINT while a host of tag targets activates one instance at a time", () => {
  it("cancels the command where SSM has not started it, and sends back the instance that switched", async () => {
    await setExampleSystems(lab.fleetFile, { web: "web-v2" });
    const r = await interruptDeploy(
      [
        ...labDeployArgs(lab.info, lab.fleetFile, join(lab.info.dir, "cache.sec")),
        ...["--on", "web", "--json"],
      ],
      env,
      (e) => e.type === "host-phase" && e.host === "web" && e.phase === "switch",
    );
    expect(r.code, r.stderr).toBe(130);
    const web = summaryOf(r).web;
    expect(web).toMatchObject({ status: "failed", rolledBack: true });
    expect((web as { message: string }).message).toMatch(
      /not started: interrupted \(SIGINT\) cancelled its SSM command before SSM started it; nothing changed.*the 1 that switched went back/,
    );
    expect(await Promise.all(WEB.map((h) => servedBy(lab.info, h)))).toEqual(["web-v1", "web-v1"]);

    // SSM's own account of the activation: one instance ran it, the other never started.
    const records = await rolloutFiles(cacheUrl);
    const record = records.find((f) => f.waves.some((w) => w.hosts.some((h) => h.host === "web")));
    expect(record?.state).toBe("interrupted");
    const client = new SSMClient({
      region: STAND_IN_REGION,
      endpoint: String(ssm.env.AWS_ENDPOINT_URL_SSM),
      credentials: {
        accessKeyId: String(ssm.env.AWS_ACCESS_KEY_ID),
        secretAccessKey: String(ssm.env.AWS_SECRET_ACCESS_KEY),
      },
    });
    try {
      const commandId = (await activationCommands(client)).at(-1);
      const listed = await client.send(new ListCommandInvocationsCommand({ CommandId: commandId }));
      expect((listed.CommandInvocations ?? []).map((i) => i.Status).sort()).toEqual([
        "Cancelled",
        "Success",
      ]);
    } finally {
      client.destroy();
    }
    // Nothing was cancelled while it ran (SSM's agent would have killed it mid-way).
    expect(ssm.cancelledRunning()).toBe(0);
  }, 300_000);
});

/** The IDs of the activations sent to the tag target, oldest first. */
async function activationCommands(client: SSMClient): Promise<string[]> {
  const listed = (await client.send(new ListCommandsCommand({}))).Commands ?? [];
  return listed
    .filter((c) => c.Parameters?.Command?.[0] === "activate" && (c.Targets ?? []).length > 0)
    .sort((a, b) => Number(a.RequestedDateTime) - Number(b.RequestedDateTime))
    .map((c) => c.CommandId as string);
}
