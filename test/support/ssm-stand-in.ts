// A stand-in for AWS SSM Run Command on the lab: an HTTP server on loopback that speaks SSM's
// JSON protocol to the real AWS SDK (nixship finds it through AWS_ENDPOINT_URL_SSM) for the four
// calls the ssm delivery makes (SendCommand, ListCommands, ListCommandInvocations,
// GetCommandInvocation), and runs the nixship document's real shell (renderRunCommand, what
// SSM's agent runs) on the lab host each instance ID stands for, as root. No signature is
// checked; everything else is as the delivery meets it on AWS. An instance made silent (its
// SSM agent gone, the machine off) never takes a command: as AWS documents it, the invocation
// stays Pending until the command's delivery timeout (TimeoutSeconds), then ends TimedOut with
// the details "Delivery Timed Out".
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { renderRunCommand, ssmDocument } from "../../src/delivery/ssm-document.js";
import { nixship } from "../../support/cli.js";

interface Invocation {
  readonly instanceId: string;
  status: "Pending" | "InProgress" | "Success" | "Failed" | "TimedOut";
  /** A silent instance's invocation: when its delivery times out (ms since the epoch). */
  deliveryDeadline?: number;
  code: number;
  stdout: string;
  stderr: string;
}

interface Command {
  readonly id: string;
  readonly command: string;
  readonly invocations: Invocation[];
}

export interface SsmStandIn {
  /** The environment a nixship process needs to use it (endpoint, region, credentials). */
  readonly env: NodeJS.ProcessEnv;
  /** The Command parameter of every SendCommand, in order (activate, status, rollback). */
  readonly sent: string[];
  /** Makes an instance silent (it takes no command from now on), or answering again. */
  readonly silence: (instanceId: string, silent: boolean) => void;
  readonly close: () => Promise<void>;
}

/** Bodies past this are refused: a SendCommand with its parameters is a few kB. */
const BODY_LIMIT = 1024 * 1024;
/** SSM keeps the first 24,000 characters of an invocation's stdout. */
const STDOUT_LIMIT = 24_000;

/**
 * Starts the stand-in. `instances` maps each instance ID to the lab host it stands for;
 * `labEnv` points `nixship lab exec` at the test's labs.
 */
export async function startSsmStandIn(
  instances: Readonly<Record<string, string>>,
  labEnv: NodeJS.ProcessEnv,
): Promise<SsmStandIn> {
  const commands = new Map<string, Command>();
  const sent: string[] = [];
  const silent = new Set<string>();
  /** An invocation as it stands now: a silent one's delivery times out at its deadline. */
  const now = (inv: Invocation): Invocation => {
    if (inv.deliveryDeadline !== undefined && Date.now() >= inv.deliveryDeadline) {
      inv.status = "TimedOut";
      inv.deliveryDeadline = undefined;
    }
    return inv;
  };
  const details = (inv: Invocation): string =>
    inv.status === "TimedOut" ? "Delivery Timed Out" : inv.status;
  const running = new Set<Promise<void>>();

  const run = (id: string, shell: string, inv: Invocation) => {
    const host = instances[inv.instanceId] as string;
    const file = `/tmp/ssm-${id}.sh`;
    const done = nixship(
      ["lab", "exec", host, "--", "sh", "-c", `cat >${file} && exec sh ${file} </dev/null`],
      { input: Buffer.from(shell), env: labEnv },
    ).then((r) => {
      inv.code = r.code;
      inv.stdout = r.stdout.slice(-STDOUT_LIMIT);
      inv.stderr = r.stderr.slice(-STDOUT_LIMIT);
      inv.status = r.code === 0 ? "Success" : "Failed";
    });
    running.add(done);
    void done.finally(() => running.delete(done));
  };

  const calls: Record<string, (input: Record<string, unknown>) => unknown> = {
    SendCommand(input) {
      const ids = (input.InstanceIds as string[] | undefined) ?? [];
      const unknown = ids.filter((i) => instances[i] === undefined);
      if (ids.length === 0 || unknown.length > 0)
        throw fault("InvalidInstanceId", `unknown instances: ${unknown.join(", ") || "(none)"}`);
      const parameters = Object.fromEntries(
        Object.entries((input.Parameters ?? {}) as Record<string, string[]>).map(([k, v]) => [
          k,
          v.join(""),
        ]),
      );
      const shell = renderRunCommand(ssmDocument(), parameters);
      const timeout = Number(input.TimeoutSeconds ?? 3600);
      const id = randomUUID();
      const command: Command = {
        id,
        command: parameters.Command ?? "activate",
        invocations: ids.map(
          (instanceId): Invocation => ({
            instanceId,
            status: silent.has(instanceId) ? "Pending" : "InProgress",
            ...(silent.has(instanceId) ? { deliveryDeadline: Date.now() + timeout * 1000 } : {}),
            code: -1,
            stdout: "",
            stderr: "",
          }),
        ),
      };
      commands.set(id, command);
      sent.push(command.command);
      for (const inv of command.invocations) if (inv.status === "InProgress") run(id, shell, inv);
      return { Command: { CommandId: id, Status: "Pending", TargetCount: ids.length } };
    },
    ListCommands(input) {
      const c = commands.get(input.CommandId as string);
      if (c === undefined) return { Commands: [] };
      for (const i of c.invocations) now(i);
      const open = c.invocations.some((i) => i.status === "InProgress" || i.status === "Pending");
      const failed = c.invocations.some((i) => i.status === "Failed");
      return {
        Commands: [
          {
            CommandId: c.id,
            Status: open ? "InProgress" : failed ? "Failed" : "Success",
            TargetCount: c.invocations.length,
            CompletedCount: c.invocations.filter((i) => i.status !== "InProgress").length,
          },
        ],
      };
    },
    ListCommandInvocations(input) {
      const c = commands.get(input.CommandId as string);
      return {
        CommandInvocations: (c?.invocations ?? []).map(now).map((i) => ({
          CommandId: c?.id,
          InstanceId: i.instanceId,
          Status: i.status,
          StatusDetails: details(i),
        })),
      };
    },
    GetCommandInvocation(input) {
      const c = commands.get(input.CommandId as string);
      const found = c?.invocations.find((x) => x.instanceId === input.InstanceId);
      if (c === undefined || found === undefined)
        throw fault("InvocationDoesNotExist", "no such invocation");
      const i = now(found);
      return {
        CommandId: c.id,
        InstanceId: i.instanceId,
        Status: i.status,
        StatusDetails: details(i),
        ResponseCode: i.code,
        StandardOutputContent: i.stdout,
        StandardErrorContent: i.stderr,
      };
    },
  };

  const server = createServer((req, res) => {
    void answer(req, res, calls);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    env: {
      AWS_ENDPOINT_URL_SSM: `http://127.0.0.1:${port}`,
      AWS_ACCESS_KEY_ID: "AKIASTANDIN000000000",
      AWS_SECRET_ACCESS_KEY: "stand-in-secret",
      AWS_REGION: "eu-west-1",
      AWS_EC2_METADATA_DISABLED: "true",
    },
    sent,
    silence: (instanceId, on) => {
      if (on) silent.add(instanceId);
      else silent.delete(instanceId);
    },
    close: async () => {
      await Promise.allSettled([...running]);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
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

async function answer(
  req: IncomingMessage,
  res: ServerResponse,
  calls: Record<string, (input: Record<string, unknown>) => unknown>,
): Promise<void> {
  const reply = (status: number, body: unknown) => {
    res.writeHead(status, { "content-type": "application/x-amz-json-1.1" });
    res.end(JSON.stringify(body));
  };
  try {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of req) {
      size += (c as Buffer).length;
      if (size > BODY_LIMIT) throw fault("ValidationException", "body too large");
      chunks.push(c as Buffer);
    }
    const target = String(req.headers["x-amz-target"] ?? "");
    const call = calls[target.replace(/^AmazonSSM\./, "")];
    if (call === undefined) throw fault("UnknownOperationException", `no ${target}`);
    const text = Buffer.concat(chunks).toString("utf8");
    reply(200, call(text === "" ? {} : (JSON.parse(text) as Record<string, unknown>)));
  } catch (err) {
    if (err instanceof SsmFault) reply(400, { __type: err.type, message: err.message });
    else reply(500, { __type: "InternalServerError", message: String(err) });
  }
}
