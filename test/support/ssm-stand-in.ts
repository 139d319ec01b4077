// A stand-in for AWS SSM Run Command on the lab: an HTTP front on loopback (nixship finds it
// through AWS_ENDPOINT_URL_SSM) over moto's server; it runs the document's shell on the lab hosts
// itself, since moto runs nothing. Each lab host is an EC2 instance created in moto with its tags.
//
// moto's (every SSM and EC2 call is forwarded to it, and its answer is the base of ours): the
// documents (CreateDocument checks the content parses as JSON or YAML and has a schemaVersion,
// that each parameter has a type, the name and the document type; not the steps, their actions,
// the parameters' allowedPattern nor SSM's 64 KB limit; GetDocument returns it byte for byte), the EC2
// instances and their tags, each command (its ID, DocumentName, Parameters, Targets,
// MaxConcurrency, MaxErrors, TimeoutSeconds, Comment, kept in ListCommands), the instances a
// command's Targets resolve to (tag:KEY filters over moto's EC2), and whether an invocation
// exists (GetCommandInvocation: InvalidCommandId, InvocationDoesNotExist).
//
// The stand-in's, where moto (5.2) says nothing or differs from AWS's documented behaviour:
// - SendCommand: moto takes any document name, parameters and instance IDs. The stand-in first
//   reads the named document from moto (moto's InvalidDocument when there is none), checks the
//   parameters against it (InvalidParameters: an unknown name, a missing value, one failing its
//   allowedPattern, or more than one value), the instance IDs against the lab's instances
//   (InvalidInstanceId), and MaxConcurrency and MaxErrors against the API's patterns
//   (ValidationException); then forwards. Sent by InstanceIds, moto also adds every other EC2
//   instance of the region to the command: the stand-in runs it on the instances named only,
//   and answers InstanceIds as sent (AWS: empty for a command sent by Targets).
// - The runs: moto marks every invocation Success with no output at once. The stand-in runs the
//   shell SSM's agent would make of the document moto holds (each parameter pasted in place of
//   its `{{ Name }}`) on each instance's lab host, as root, at most MaxConcurrency at a time,
//   and overlays the real outcome (Status, StatusDetails, ResponseCode, the first 24,000
//   characters of stdout and 8,000 of stderr) on moto's GetCommandInvocation, and the command's Status
//   and counts on moto's ListCommands (InProgress while an invocation is open; Failed when one
//   failed or timed out, else Success). An invocation waiting its turn is Pending.
// - CancelCommand: moto 5.2 does not implement it. The stand-in checks the command exists
//   (InvalidCommandId) and at most 50 instance IDs (ValidationException); a Pending invocation
//   named (or every one, with none named) ends Cancelled and never runs. AWS's agent kills a
//   running invocation's shell (SIGKILL); the stand-in lets it run to its end, then says
//   Cancelled (`cancelledRunning` counts those asked).
// - ListCommandInvocations: moto 5.2 does not implement it; the stand-in answers it from the
//   command moto resolved and the runs (pages of MaxResults, NextToken), filtered by InstanceId.
// - Not done, as AWS would: MaxErrors is kept but not enforced (every instance runs, however
//   many failed); the document's timeoutSeconds and SSM's reboot (exit 194) are not acted on;
//   no signature is checked and every instance counts as managed by SSM. Neither makes
//   throttling, nor the statuses Delayed or Undeliverable (Cancelled only by CancelCommand):
//   test/ssm-delivery.test.ts scripts those with aws-sdk-client-mock.
// - Silent instances (`silence`: its SSM agent gone, the machine off) never take a command: as
//   AWS documents it, the invocation stays Pending until the command's delivery timeout
//   (TimeoutSeconds), then ends TimedOut with the details "Delivery Timed Out".

import { readFile, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { EC2Client, RunInstancesCommand } from "@aws-sdk/client-ec2";
import { CreateDocumentCommand, GetDocumentCommand, SSMClient } from "@aws-sdk/client-ssm";
import { renderRunCommand, type SsmCommandDocument } from "../../src/delivery/ssm-document.js";
import { nixship } from "../../support/cli.js";
import { startMoto } from "../../support/moto-server.js";
import { CommandRuns } from "./ssm-lab-runs.js";

export interface SsmStandIn {
  /** The environment a nixship process needs to use it (endpoints, region, credentials). */
  readonly env: NodeJS.ProcessEnv;
  /** Each lab host's EC2 instance ID, as moto gave it. */
  readonly instances: Readonly<Record<string, string>>;
  /** moto's own endpoint, to ask it without the stand-in in between. */
  readonly moto: string;
  /** The Command parameter of every SendCommand, in order (activate, status, rollback). */
  readonly sent: string[];
  /** Cancels asked of invocations that were running (nixship cancels only those waiting). */
  readonly cancelledRunning: () => number;
  /** Makes an instance silent (it takes no command from now on), or answering again. */
  readonly silence: (instanceId: string, silent: boolean) => void;
  readonly close: () => Promise<void>;
}

export interface SsmStandInOptions {
  /**
   * Register the document `nixship ssm document` prints under this name, as its help says to
   * (CreateDocument through the stand-in), before the stand-in is handed over; false: leave
   * registering to the test (default "nixship-activate", the fleet file's default).
   */
  readonly register?: string | false;
}

/** The region the instances are created in, and the stand-in's environment names. */
export const STAND_IN_REGION = "eu-west-1";
const CREDENTIALS = {
  accessKeyId: "AKIASTANDIN000000000",
  secretAccessKey: "stand-in-secret",
};
/** Bodies past this are refused: a SendCommand with its parameters is a few kB. */
const BODY_LIMIT = 1024 * 1024;
/** How long one call to moto may take. */
const MOTO_CALL_MS = 30_000;
/** SendCommand's patterns for MaxConcurrency and MaxErrors, as the API documents them. */
const MAX_CONCURRENCY = /^([1-9][0-9]*|[1-9][0-9]%|[1-9]%|100%)$/;
const MAX_ERRORS = /^([1-9][0-9]*|[0]|[1-9][0-9]%|[0-9]%|100%)$/;
/** ListCommandInvocations' MaxResults: 1 to 50, 50 when not given. */
const MAX_RESULTS = 50;

type Input = Record<string, unknown>;
type Json = Record<string, unknown>;

/** moto's answer, passed on as it is. */
class Answer {
  constructor(
    readonly status: number,
    readonly contentType: string,
    readonly body: Buffer,
  ) {}
}

/** A command the stand-in runs: moto's record of it, and the runs on the lab. */
interface Command {
  readonly moto: Json;
  readonly sentIds: readonly string[];
  readonly runs: CommandRuns;
}

/**
 * Starts moto's server and the stand-in in front of it. `hosts` maps each lab host to its EC2
 * tags (a Name tag with the host's name is added); `labEnv` points `nixship lab exec` at the
 * test's labs.
 */
export async function startSsmStandIn(
  hosts: Readonly<Record<string, Readonly<Record<string, string>>>>,
  labEnv: NodeJS.ProcessEnv,
  options: SsmStandInOptions = {},
): Promise<SsmStandIn> {
  // As S3Store does: the SDK's warning that its future releases need Node 22 is not ours to act on.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  const moto = await startMoto();
  const clients = { region: STAND_IN_REGION, endpoint: moto.endpoint, credentials: CREDENTIALS };
  const ec2 = new EC2Client(clients);
  const ssmClients = new Map<string, SSMClient>();
  /** moto keeps each region apart: the stand-in asks it in the region each call was signed for. */
  const ssmIn = (region: string) => {
    const known = ssmClients.get(region) ?? new SSMClient({ ...clients, region });
    ssmClients.set(region, known);
    return known;
  };
  const instances: Record<string, string> = {};
  const hostOf = new Map<string, string>();
  const commands = new Map<string, Command>();
  const sent: string[] = [];
  const silent = new Set<string>();
  let cancelledRunning = 0;
  let server: ReturnType<typeof createServer> | undefined;
  const stop = async () => {
    if (server !== undefined) {
      const s = server;
      await new Promise<void>((resolve) => s.close(() => resolve()));
    }
    await Promise.allSettled([...commands.values()].map((c) => c.runs.settled()));
    ec2.destroy();
    for (const c of ssmClients.values()) c.destroy();
    await moto.close();
  };
  try {
    for (const [host, tags] of Object.entries(hosts)) {
      const made = await ec2.send(
        new RunInstancesCommand({
          ImageId: "ami-0000000000000000a",
          MinCount: 1,
          MaxCount: 1,
          TagSpecifications: [
            {
              ResourceType: "instance",
              Tags: Object.entries({ Name: host, ...tags }).map(([Key, Value]) => ({
                Key,
                Value,
              })),
            },
          ],
        }),
        { abortSignal: AbortSignal.timeout(MOTO_CALL_MS) },
      );
      const id = made.Instances?.[0]?.InstanceId;
      if (id === undefined) throw new Error(`moto made no instance for ${host}`);
      instances[host] = id;
      hostOf.set(id, host);
    }

    const forward = (req: IncomingMessage, body: Buffer) => forwardTo(moto.endpoint, req, body);

    let shells = 0;
    const runShell = (instanceId: string, shell: string) => {
      const host = hostOf.get(instanceId) as string;
      const file = `/tmp/ssm-${instanceId}-${++shells}.sh`;
      return nixship(
        ["lab", "exec", host, "--", "sh", "-c", `cat >${file} && exec sh ${file} </dev/null`],
        { input: Buffer.from(shell), env: labEnv },
      );
    };

    const overlays: Record<string, Overlay> = {
      async SendCommand(input, region, ask) {
        const ids = [...new Set((input.InstanceIds as string[] | undefined) ?? [])];
        const targets = (input.Targets as unknown[] | undefined) ?? [];
        if (ids.length === 0 && targets.length === 0)
          throw fault("ValidationException", "SendCommand needs InstanceIds or Targets");
        const maxConcurrency = String(input.MaxConcurrency ?? "50");
        const maxErrors = String(input.MaxErrors ?? "0");
        if (!MAX_CONCURRENCY.test(maxConcurrency))
          throw fault("ValidationException", `MaxConcurrency ${maxConcurrency} fails its pattern`);
        if (!MAX_ERRORS.test(maxErrors))
          throw fault("ValidationException", `MaxErrors ${maxErrors} fails its pattern`);
        const unknown = ids.filter((i) => !hostOf.has(i));
        if (unknown.length > 0)
          throw fault("InvalidInstanceId", `not instances of the lab: ${unknown.join(", ")}`);
        const document = await documentOf(ssmIn(region), input);
        const parameters = parameterValues(input.Parameters);
        let shell: string;
        try {
          shell = renderRunCommand(document, parameters);
        } catch (err) {
          throw fault("InvalidParameters", err instanceof Error ? err.message : String(err));
        }
        const answer = await ask();
        if (answer.status !== 200) return answer;
        const command = (parse(answer.body).Command ?? {}) as Json;
        const resolved = (command.InstanceIds as string[] | undefined) ?? [];
        const runOn = targets.length > 0 ? resolved.filter((i) => hostOf.has(i)) : ids;
        const runs = new CommandRuns(runOn, {
          shell,
          maxConcurrency,
          timeoutSeconds: Number(input.TimeoutSeconds ?? 3600),
          silent: (i) => silent.has(i),
          run: runShell,
        });
        commands.set(String(command.CommandId), { moto: command, sentIds: ids, runs });
        sent.push(parameters.Command ?? "activate");
        return {
          Command: {
            ...command,
            InstanceIds: ids,
            Status: "Pending",
            StatusDetails: "Pending",
            TargetCount: runOn.length,
            CompletedCount: 0,
            ErrorCount: 0,
            DeliveryTimedOutCount: 0,
          },
        };
      },
      async ListCommands(_input, _region, ask) {
        const answer = await ask();
        if (answer.status !== 200) return answer;
        const listed = parse(answer.body);
        const list = (listed.Commands as Json[] | undefined) ?? [];
        return { ...listed, Commands: list.map((c) => commandNow(c, commands)) };
      },
      async CancelCommand(input) {
        const c = commands.get(String(input.CommandId ?? ""));
        if (c === undefined) throw fault("InvalidCommandId", "no such command");
        const ids = input.InstanceIds as string[] | undefined;
        if (ids !== undefined && ids.length > 50)
          throw fault("ValidationException", "InstanceIds holds more than 50 members");
        cancelledRunning += c.runs
          .now()
          .filter(
            (i) => i.status === "InProgress" && (ids === undefined || ids.includes(i.instanceId)),
          ).length;
        c.runs.cancel(ids);
        return {};
      },
      async ListCommandInvocations(input) {
        const c = commands.get(String(input.CommandId ?? ""));
        const all = (c?.runs.now() ?? []).filter(
          (i) => input.InstanceId === undefined || i.instanceId === input.InstanceId,
        );
        const size = Math.min(MAX_RESULTS, Math.max(1, Number(input.MaxResults ?? MAX_RESULTS)));
        const start = Number(input.NextToken ?? 0);
        const next = start + size < all.length ? String(start + size) : undefined;
        return {
          CommandInvocations: all.slice(start, start + size).map((i) => ({
            CommandId: c?.moto.CommandId,
            InstanceId: i.instanceId,
            InstanceName: "",
            Comment: c?.moto.Comment ?? "",
            DocumentName: c?.moto.DocumentName,
            DocumentVersion: "$DEFAULT",
            RequestedDateTime: c?.moto.RequestedDateTime,
            Status: i.status,
            StatusDetails: details(i.status),
          })),
          ...(next === undefined ? {} : { NextToken: next }),
        };
      },
      async GetCommandInvocation(input, _region, ask) {
        const answer = await ask();
        if (answer.status !== 200) return answer;
        const c = commands.get(String(input.CommandId ?? ""));
        const inv = c?.runs.now().find((i) => i.instanceId === input.InstanceId);
        // moto made an invocation for instances the command was never sent to.
        if (c === undefined || inv === undefined)
          throw fault("InvocationDoesNotExist", "no such invocation");
        return {
          ...parse(answer.body),
          Status: inv.status,
          StatusDetails: details(inv.status),
          ResponseCode: inv.code,
          StandardOutputContent: inv.stdout,
          StandardErrorContent: inv.stderr,
        };
      },
    };

    server = createServer((req, res) => {
      void answer(req, res, overlays, forward);
    });
    const listening = server;
    await new Promise<void>((resolve) => listening.listen(0, "127.0.0.1", resolve));
    const { port } = listening.address() as AddressInfo;
    const endpoint = `http://127.0.0.1:${port}`;
    const env = {
      AWS_ENDPOINT_URL_SSM: endpoint,
      AWS_ENDPOINT_URL_EC2: endpoint,
      AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
      AWS_REGION: STAND_IN_REGION,
      AWS_EC2_METADATA_DISABLED: "true",
    };
    const register = options.register ?? "nixship-activate";
    if (register !== false) await registerDocument(endpoint, register);
    return {
      env,
      instances,
      moto: moto.endpoint,
      sent,
      cancelledRunning: () => cancelledRunning,
      silence: (instanceId, on) => {
        if (on) silent.add(instanceId);
        else silent.delete(instanceId);
      },
      close: stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * Registers the document `nixship ssm document` prints under `name`, through the SSM endpoint
 * at `endpoint` (as `aws ssm create-document --document-type Command --document-format JSON`).
 */
export async function registerDocument(endpoint: string, name: string): Promise<void> {
  const printed = await nixship(["ssm", "document"]);
  if (printed.code !== 0) throw new Error(`nixship ssm document failed: ${printed.stderr}`);
  const client = new SSMClient({ region: STAND_IN_REGION, endpoint, credentials: CREDENTIALS });
  try {
    await client.send(
      new CreateDocumentCommand({
        Name: name,
        Content: printed.stdout,
        DocumentType: "Command",
        DocumentFormat: "JSON",
      }),
      { abortSignal: AbortSignal.timeout(MOTO_CALL_MS) },
    );
  } finally {
    client.destroy();
  }
}

type Overlay = (input: Input, region: string, ask: () => Promise<Answer>) => Promise<Json | Answer>;

/** The document SendCommand names, as moto holds it (moto's error when it has none). */
async function documentOf(client: SSMClient, input: Input): Promise<SsmCommandDocument> {
  try {
    const got = await client.send(
      new GetDocumentCommand({
        Name: String(input.DocumentName ?? ""),
        ...(input.DocumentVersion ? { DocumentVersion: String(input.DocumentVersion) } : {}),
      }),
      { abortSignal: AbortSignal.timeout(MOTO_CALL_MS) },
    );
    return JSON.parse(got.Content ?? "") as SsmCommandDocument;
  } catch (err) {
    const name = (err as { name?: string }).name;
    if (name === "InvalidDocument" || name === "InvalidDocumentVersion")
      throw fault(name, (err as Error).message);
    throw err;
  }
}

/** SendCommand's Parameters as one value each (a String parameter takes exactly one). */
function parameterValues(given: unknown): Record<string, string> {
  const values: Record<string, string> = {};
  for (const [name, list] of Object.entries((given ?? {}) as Record<string, unknown>)) {
    if (!Array.isArray(list) || list.length !== 1 || typeof list[0] !== "string")
      throw fault("InvalidParameters", `parameter ${name} must have exactly one value`);
    values[name] = list[0];
  }
  return values;
}

/** moto's record of a command with the stand-in's status and counts over it. */
function commandNow(command: Json, commands: ReadonlyMap<string, Command>): Json {
  const c = commands.get(String(command.CommandId));
  if (c === undefined) return command;
  const all = c.runs.now();
  const count = (...statuses: string[]) => all.filter((i) => statuses.includes(i.status)).length;
  const status = c.runs.status();
  return {
    ...command,
    InstanceIds: c.sentIds,
    Status: status,
    StatusDetails: status,
    TargetCount: all.length,
    CompletedCount: count("Success", "Failed", "TimedOut"),
    ErrorCount: count("Failed", "TimedOut"),
    DeliveryTimedOutCount: count("TimedOut"),
  };
}

function details(status: string): string {
  return status === "TimedOut" ? "Delivery Timed Out" : status;
}

class SsmFault extends Error {
  constructor(
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}

function fault(type: string, message: string): SsmFault {
  return new SsmFault(type, message);
}

function parse(body: Buffer): Json {
  return JSON.parse(body.toString("utf8")) as Json;
}

/** The region a request was signed for (its credential scope), else the stand-in's. */
function regionOf(req: IncomingMessage): string {
  const scope = /Credential=[^/]+\/\d{8}\/([^/]+)\//.exec(String(req.headers.authorization ?? ""));
  return scope?.[1] ?? STAND_IN_REGION;
}

/** The request, as it came, to moto; its answer as moto gave it. */
async function forwardTo(endpoint: string, req: IncomingMessage, body: Buffer): Promise<Answer> {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || ["host", "connection", "content-length"].includes(name)) continue;
    headers.set(name, Array.isArray(value) ? value.join(", ") : value);
  }
  const got = await fetch(`${endpoint}${req.url ?? "/"}`, {
    method: req.method ?? "POST",
    headers,
    ...(req.method === "GET" || req.method === "HEAD" ? {} : { body: new Uint8Array(body) }),
    signal: AbortSignal.timeout(MOTO_CALL_MS),
  });
  return new Answer(
    got.status,
    got.headers.get("content-type") ?? "application/octet-stream",
    Buffer.from(await got.arrayBuffer()),
  );
}

async function answer(
  req: IncomingMessage,
  res: ServerResponse,
  overlays: Record<string, Overlay>,
  forward: (req: IncomingMessage, body: Buffer) => Promise<Answer>,
): Promise<void> {
  const send = (a: Answer) => {
    res.writeHead(a.status, { "content-type": a.contentType });
    res.end(a.body);
  };
  const reply = (status: number, body: unknown) =>
    send(new Answer(status, "application/x-amz-json-1.1", Buffer.from(JSON.stringify(body))));
  try {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of req) {
      size += (c as Buffer).length;
      if (size > BODY_LIMIT) throw fault("ValidationException", "body too large");
      chunks.push(c as Buffer);
    }
    const body = Buffer.concat(chunks);
    const target = String(req.headers["x-amz-target"] ?? "");
    const overlay = target.startsWith("AmazonSSM.") ? overlays[target.slice(10)] : undefined;
    if (overlay === undefined) {
      send(await forward(req, body));
      return;
    }
    const text = body.toString("utf8");
    const input = text === "" ? {} : (JSON.parse(text) as Input);
    const out = await overlay(input, regionOf(req), () => forward(req, body));
    if (out instanceof Answer) send(out);
    else reply(200, out);
  } catch (err) {
    if (err instanceof SsmFault) reply(400, { __type: err.type, message: err.message });
    else reply(500, { __type: "InternalServerError", message: String(err) });
  }
}

/**
 * Makes `hosts` of a lab's fleet file instances of `standIn` (their ssh settings dropped), with
 * the fleet's `ssm` settings `settings`; `edit` changes the document further before it is
 * written. Resolves with the fleet's cache URL.
 */
export async function makeSsmHosts(
  fleetFile: string,
  standIn: Pick<SsmStandIn, "instances">,
  hosts: readonly string[],
  settings: Record<string, unknown>,
  edit: (doc: Record<string, unknown>) => void = () => {},
): Promise<string> {
  const doc = JSON.parse(await readFile(fleetFile, "utf8")) as {
    hosts: Record<string, Record<string, unknown>>;
    cache: { url: string };
    ssm?: unknown;
  };
  for (const h of hosts) {
    const { sshHost: _, hostKey: __, ...rest } = doc.hosts[h] as Record<string, unknown>;
    doc.hosts[h] = { ...rest, delivery: "ssm", instanceId: standIn.instances[h] };
  }
  doc.ssm = settings;
  edit(doc);
  await writeFile(fleetFile, JSON.stringify(doc, null, 2));
  return doc.cache.url;
}
