// SendCommand goes out at most once: a send whose answer was lost is looked for in SSM's list by
// its Comment's nonce, never sent again, and one SSM does not list leaves its hosts unknown, not
// "nothing changed". Against moto's server, behind a front that loses SendCommand's answer (a
// fault moto cannot make).
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { ListCommandsCommand, SSMClient } from "@aws-sdk/client-ssm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SsmDelivery } from "../src/delivery/ssm.js";
import { SsmCommands } from "../src/delivery/ssm-client.js";
import type { FleetHost } from "../src/fleet/fleet.js";
import type { StorePath } from "../src/nix/store-path.js";
import { type MotoProcess, startMoto } from "../support/moto-server.js";

const settings = { documentName: "nixship-activate", region: "us-east-1", commandTimeout: 60 };
const PATH = "/nix/store/0c7j2gdmd5q5b5sl3jfql3qa0y41zlhb-nixos-system-web" as StorePath;

describe("SendCommand, sent at most once", () => {
  let moto: MotoProcess;
  beforeAll(async () => {
    moto = await startMoto();
  });
  afterAll(() => moto?.close());

  /**
   * A front to moto that loses SendCommand's answer: `taken`, after moto took the command (the
   * connection reset); else before passing it on (a 503, which SSM may answer for either).
   */
  async function lossyFront(taken: boolean) {
    const sends: string[] = [];
    const server = createServer((req, res) => {
      void pass(req, res);
    });
    const pass = async (req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const action = String(req.headers["x-amz-target"] ?? "").replace(/^AmazonSSM\./, "");
      if (action === "SendCommand") sends.push(Buffer.concat(chunks).toString());
      if (action === "SendCommand" && !taken) {
        res.writeHead(503, { "content-type": "application/x-amz-json-1.1" });
        res.end(JSON.stringify({ __type: "InternalServerError", message: "try again" }));
        return;
      }
      const headers = Object.fromEntries(
        Object.entries(req.headers).filter(
          ([k]) => !["host", "connection", "content-length", "expect"].includes(k),
        ),
      ) as Record<string, string>;
      const answer = await fetch(`${moto.endpoint}${req.url}`, {
        method: req.method ?? "POST",
        headers,
        body: Buffer.concat(chunks),
      });
      const body = Buffer.from(await answer.arrayBuffer());
      if (action === "SendCommand") {
        req.socket.destroy();
        return;
      }
      res.writeHead(answer.status, { "content-type": answer.headers.get("content-type") ?? "" });
      res.end(body);
    };
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    const client = new SSMClient({
      endpoint: `http://127.0.0.1:${port}`,
      region: "us-east-1",
      credentials: { accessKeyId: "AKIDTEST", secretAccessKey: "test-secret" },
    });
    const close = async () => {
      client.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    };
    return { client, sends, close };
  }

  /** Every command moto holds (asked directly, nothing of ours in between). */
  async function motoCommands() {
    const direct = new SSMClient({
      endpoint: moto.endpoint,
      region: "us-east-1",
      credentials: { accessKeyId: "AKIDTEST", secretAccessKey: "test-secret" },
    });
    try {
      return (await direct.send(new ListCommandsCommand({}))).Commands ?? [];
    } finally {
      direct.destroy();
    }
  }

  it("whose answer was lost after SSM took it is found in SSM's list by its nonce, not sent again", async () => {
    const front = await lossyFront(true);
    try {
      const before = (await motoCommands()).length;
      const ssm = new SsmCommands({ settings, client: front.client, pollInterval: 1 });
      const id = await ssm.send({
        InstanceIds: ["i-0123456789abcdef0"],
        Comment: "nixship rollback",
      });
      expect(front.sends).toHaveLength(1);
      const held = (await motoCommands()).slice(before);
      expect(held.map((c) => c.CommandId)).toEqual([id]);
      expect(held[0]?.Comment).toMatch(/^nixship rollback #[0-9a-f]{16}$/);
    } finally {
      await front.close();
    }
  });

  it("whose answer was lost and that SSM does not list leaves its hosts unknown, not 'nothing changed', and is not sent again", async () => {
    const front = await lossyFront(false);
    try {
      const delivery = new SsmDelivery({
        settings,
        client: front.client,
        pollInterval: 1,
        sleep: async () => {},
      });
      const host = {
        name: "web1",
        tags: [],
        address: "127.0.0.1",
        delivery: "ssm",
        instanceId: "i-0123456789abcdef0",
        targets: undefined,
        system: { kind: "store-path", path: PATH },
      } as FleetHost;
      const request = {
        path: PATH,
        action: "switch" as const,
        substituters: ["s3://cache?region=us-east-1"],
        trustedKeys: ["cache-1:0Ujr1Ehz3TNAD5PjMYqBH4qkTjBqcnGXN0B1GAsHB1I="],
        commandChecks: [],
        httpChecks: [],
        confirmTimeout: 0,
        activationTimeout: 600,
      };
      const outcomes = await delivery.deployWave([{ host, request }], () => {}, {
        index: 0,
        kind: "canary",
        parallel: 1,
        failureBudget: 0,
      });
      expect(front.sends).toHaveLength(1);
      expect(outcomes).toEqual([
        {
          status: "failed",
          phase: "switch",
          message: expect.stringMatching(
            /^SSM may have taken the command "nixship deploy \/nix\/store\/\S+ #[0-9a-f]{16}", whose answer was lost \(SSM: InternalServerError: try again\), and SSM lists no such command 6 times asked: it may be running/,
          ),
          rolledBack: false,
          settling: true,
        },
      ]);
    } finally {
      await front.close();
    }
  });
});
