// A lab deploy over SSM whose SSM and EC2 calls go to moto's server, through the SSM stand-in
// (which runs the document's shell on the lab hosts, since moto runs nothing). The lab hosts are
// EC2 instances in moto, tagged Role=web (smo1, smo2) and Role=db (smo3); the fleet's host `web`
// is the tag target tag:Role=web, and smo3 is given by its instance ID. Until the document is
// registered, SSM refuses the deploy, saying how to register it; registered with CreateDocument
// (what `nixship ssm document` prints), moto holds it; then the deploy sends it to the tag
// target and to smo3, with MaxConcurrency and MaxErrors, and moto's own record of the commands
// (not the stand-in's) says what was sent and which instances the tag resolved to.
import { readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import {
  type Command,
  DescribeDocumentCommand,
  GetCommandInvocationCommand,
  GetDocumentCommand,
  ListCommandInvocationsCommand,
  ListCommandsCommand,
  SSMClient,
} from "@aws-sdk/client-ssm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ssmDocument } from "../src/delivery/ssm-document.js";
import { parseActivationResult } from "../src/host/activation.js";
import { type CliRun, nixship } from "../support/cli.js";
import { labDeployArgs, servedBy, setExampleSystems, summaryOf } from "./support/lab-deploy.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";
import {
  registerDocument,
  type SsmStandIn,
  STAND_IN_REGION,
  startSsmStandIn,
} from "./support/ssm-stand-in.js";

const WEB = ["smo1", "smo2"];
const DB = "smo3";
let lab: SshLab;
let ssm: SsmStandIn;
let env: NodeJS.ProcessEnv;
/** moto, asked directly (nothing of ours in between), and the stand-in, as nixship asks it. */
let moto: SSMClient;
let front: SSMClient;

const cli = (args: readonly string[]): Promise<CliRun> => nixship(args, { env });
const deploy = (...extra: string[]) =>
  cli([...labDeployArgs(lab.info, lab.fleetFile, join(lab.info.dir, "cache.sec")), ...extra]);
const client = (endpoint: string) =>
  new SSMClient({
    region: STAND_IN_REGION,
    endpoint,
    credentials: {
      accessKeyId: String(ssm.env.AWS_ACCESS_KEY_ID),
      secretAccessKey: String(ssm.env.AWS_SECRET_ACCESS_KEY),
    },
  });
/** Every command moto keeps, in the order they were sent. */
const motoCommands = async (): Promise<Command[]> =>
  (await moto.send(new ListCommandsCommand({}))).Commands ?? [];

beforeAll(async () => {
  lab = await startSshLab("smo", 3);
  const labEnv = { NIXSHIP_LAB_DIR: dirname(lab.info.dir) };
  ssm = await startSsmStandIn(
    { smo1: { Role: "web" }, smo2: { Role: "web" }, smo3: { Role: "db" } },
    labEnv,
    { register: false },
  );
  env = { ...labEnv, ...ssm.env };
  moto = client(ssm.moto);
  front = client(String(ssm.env.AWS_ENDPOINT_URL_SSM));
  await setExampleSystems(lab.fleetFile, { smo1: "web-v1", smo2: "web-v1", smo3: "web-v1" });
  const first = await lab.deploy("--json");
  expect(first.code, first.stderr).toBe(0);
  // From now on smo1 and smo2 are the fleet's host `web`, every instance tagged Role=web (its
  // HTTP check reaches smo1, as a load balancer's address would), and smo3 is an instance ID.
  const doc = JSON.parse(await readFile(lab.fleetFile, "utf8")) as {
    hosts: Record<string, Record<string, unknown>>;
    ssm?: unknown;
  };
  const ssmEntry = (name: string) => {
    const { sshHost: _, hostKey: __, ...rest } = doc.hosts[name] as Record<string, unknown>;
    return { ...rest, delivery: "ssm" };
  };
  const web = { ...ssmEntry("smo1"), targets: [{ key: "tag:Role", values: ["web"] }] };
  const db = { ...ssmEntry(DB), instanceId: ssm.instances[DB] };
  doc.hosts = { web, [DB]: db };
  doc.ssm = { region: STAND_IN_REGION, commandTimeout: 300 };
  await writeFile(lab.fleetFile, JSON.stringify(doc, null, 2));
  await setExampleSystems(lab.fleetFile, { web: "web-v2", [DB]: "web-v2" });
}, 300_000);

afterAll(async () => {
  moto?.destroy();
  front?.destroy();
  await ssm?.close();
  await lab?.down();
});

describe("a lab deploy over SSM, its SSM and EC2 calls answered by moto", () => {
  it("until the document is registered, SSM refuses the deploy, and the error says how to register it", async () => {
    const r = await deploy("--json");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("InvalidDocument");
    expect(r.stderr).toContain("aws ssm create-document --document-type Command");
    expect(await motoCommands()).toEqual([]);
    expect(await Promise.all([...WEB, DB].map((h) => servedBy(lab.info, h)))).toEqual([
      "web-v1",
      "web-v1",
      "web-v1",
    ]);
  }, 120_000);

  it("registered with CreateDocument, moto holds the document `nixship ssm document` prints", async () => {
    await registerDocument(String(ssm.env.AWS_ENDPOINT_URL_SSM), "nixship-activate");
    const printed = await nixship(["ssm", "document"]);
    const held = await moto.send(new GetDocumentCommand({ Name: "nixship-activate" }));
    expect(held.Content).toBe(printed.stdout);
    expect(held).toMatchObject({ DocumentType: "Command", DocumentFormat: "JSON" });
    const described = (await moto.send(new DescribeDocumentCommand({ Name: "nixship-activate" })))
      .Document;
    expect(described).toMatchObject({ Status: "Active", SchemaVersion: "2.2" });
    expect(described?.Parameters?.map((p) => [p.Name, p.Type])).toEqual(
      Object.keys(ssmDocument().parameters).map((name) => [name, "String"]),
    );
  });

  it("the deploy sends the document to tag:Role=web and to smo3's ID; moto resolves the tag; each host runs v2", async () => {
    const r = await deploy("--json", "--canary", "0", "--parallel", "2", "--max-failures", "1");
    expect(r.code, r.stderr).toBe(0);
    expect(summaryOf(r)).toMatchObject({
      web: { status: "activated" },
      [DB]: { status: "activated" },
    });
    expect(await Promise.all([...WEB, DB].map((h) => servedBy(lab.info, h)))).toEqual([
      "web-v2",
      "web-v2",
      "web-v2",
    ]);

    const activations = (await motoCommands()).filter(
      (c) => c.Parameters?.Command?.[0] === "activate",
    );
    expect(activations).toHaveLength(2);
    const byTag = activations.find((c) => (c.Targets ?? []).length > 0) as Command;
    const byId = activations.find((c) => (c.Targets ?? []).length === 0) as Command;
    // moto's record of what nixship sent: the document, the tag target, the rate controls.
    expect(byTag).toMatchObject({
      DocumentName: "nixship-activate",
      Targets: [{ Key: "tag:Role", Values: ["web"] }],
      MaxConcurrency: "2",
      MaxErrors: "1",
    });
    expect(byId).toMatchObject({ DocumentName: "nixship-activate", MaxConcurrency: "2" });
    // The instances moto resolved tag:Role=web to: smo1's and smo2's, not smo3's.
    const webIds = WEB.map((h) => ssm.instances[h] as string).sort();
    expect([...(byTag.InstanceIds ?? [])].sort()).toEqual(webIds);
    expect(byId.InstanceIds).toContain(ssm.instances[DB]);

    // The results, read back as nixship reads them: an invocation per resolved instance, each
    // ended Success with activate.sh's JSON on its last line of output.
    const listed = await front.send(
      new ListCommandInvocationsCommand({ CommandId: byTag.CommandId }),
    );
    expect((listed.CommandInvocations ?? []).map((i) => [i.InstanceId, i.Status]).sort()).toEqual(
      webIds.map((id) => [id, "Success"]),
    );
    for (const id of webIds) {
      // moto keeps an invocation of the command for the instance...
      const kept = await moto.send(
        new GetCommandInvocationCommand({ CommandId: byTag.CommandId, InstanceId: id }),
      );
      expect(kept).toMatchObject({ InstanceId: id, DocumentName: "nixship-activate" });
      // ...and the stand-in lays the real run over it.
      const got = await front.send(
        new GetCommandInvocationCommand({ CommandId: byTag.CommandId, InstanceId: id }),
      );
      expect(got).toMatchObject({ Status: "Success", ResponseCode: 0 });
      const result = parseActivationResult(got.StandardOutputContent ?? "", id);
      expect(result).toMatchObject({ ok: true, command: "activate", result: "activated" });
    }
    // The command as nixship's ListCommands sees it: done, on the two instances.
    const seen = (await front.send(new ListCommandsCommand({ CommandId: byTag.CommandId })))
      .Commands?.[0];
    expect(seen).toMatchObject({
      Status: "Success",
      TargetCount: 2,
      CompletedCount: 2,
      ErrorCount: 0,
      Targets: [{ Key: "tag:Role", Values: ["web"] }],
    });
  }, 300_000);
});
