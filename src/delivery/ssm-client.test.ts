// SsmCommands against an SSM that pages badly: the invocations' listing is read page by page,
// and a listing that does not move on ends the wait with an error naming the command, where it
// would have polled for ever; and a command SSM never reports ended is waited for no longer
// than its own bounds allow.
import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { SSMClient } from "@aws-sdk/client-ssm";
import { describe, expect, it } from "vitest";
import type { FleetHost } from "../fleet/fleet.js";
import { SsmDelivery } from "./ssm.js";
import { SsmCommands } from "./ssm-client.js";
import { STATUS_REPORT_SLACK, STATUS_TIMEOUT } from "./ssm-parameters.js";

const settings = { documentName: "nixship-activate", region: "us-east-1", commandTimeout: 60 };

/** A client whose ListCommandInvocations answers with `pages(token)`; counts the calls. */
function pagingClient(
  pages: (token: string | undefined) => { CommandInvocations: object[]; NextToken?: string },
) {
  const calls: (string | undefined)[] = [];
  const client = {
    send: async (command: { constructor: { name: string }; input: { NextToken?: string } }) => {
      if (command.constructor.name !== "ListCommandInvocationsCommand")
        throw new Error(`unexpected ${command.constructor.name}`);
      calls.push(command.input.NextToken);
      return pages(command.input.NextToken);
    },
  };
  return { client: client as unknown as SSMClient, calls };
}

const done = (id: string) => ({ InstanceId: id, Status: "Success", StatusDetails: "Success" });

describe("the invocations' listing", () => {
  it("reads every page", async () => {
    const { client, calls } = pagingClient((token) =>
      token === undefined
        ? { CommandInvocations: [done("i-1")], NextToken: "t1" }
        : { CommandInvocations: [done("i-2")] },
    );
    // GetCommandInvocation is refused: each finished host's output reads "(no output: …)".
    const ssm = new SsmCommands({ settings, client, sleep: async () => {} });
    const finished = await ssm.waitFor("cmd-1", ["i-1", "i-2"]);
    expect([...finished.keys()].sort()).toEqual(["i-1", "i-2"]);
    expect(calls).toEqual([undefined, "t1"]);
  });

  it("refuses a page that gives back the token it was asked with", async () => {
    const { client, calls } = pagingClient((token) => ({
      CommandInvocations: [done(`i-${calls.length}`)],
      NextToken: token ?? "again",
    }));
    const ssm = new SsmCommands({ settings, client, sleep: async () => {} });
    await expect(ssm.waitFor("cmd-2", ["i-1"])).rejects.toMatchObject({
      code: "ssm-paging",
      message:
        "SSM's list of the invocations of command cmd-2 does not move on: a page gave back a token the listing was at before",
    });
    expect(calls).toEqual([undefined, "again"]);
  });

  it("refuses tokens that come round again (A, B, A…), and a page past the invocations asked for", async () => {
    const cycling = pagingClient((token) => ({
      CommandInvocations: [done("i-1")],
      NextToken: token === "A" ? "B" : "A",
    }));
    const ssm = new SsmCommands({ settings, client: cycling.client, sleep: async () => {} });
    await expect(ssm.waitFor("cmd-5", ["i-1"])).rejects.toMatchObject({
      code: "ssm-paging",
      message: expect.stringContaining("a page gave back a token the listing was at before"),
    });
    expect(cycling.calls).toEqual([undefined, "A", "B"]);
    // A page of 51 (SSM sends at most MaxResults, 50): refused, not kept.
    const crowded = pagingClient(() => ({
      CommandInvocations: Array.from({ length: 51 }, (_, i) => done(`i-${i}`)),
    }));
    const crowd = new SsmCommands({ settings, client: crowded.client, sleep: async () => {} });
    await expect(crowd.waitFor("cmd-6", ["i-1"])).rejects.toMatchObject({
      code: "ssm-paging",
      message: expect.stringContaining("a page holds 51 invocations, past the 50 asked for"),
    });
  });

  it("keeps of each invocation only what the wait reads, each field clipped", async () => {
    const padded = {
      ...done("i-1"),
      Comment: "x".repeat(1_000_000),
      DocumentName: "y".repeat(1_000),
    };
    const { client } = pagingClient(() => ({ CommandInvocations: [padded] }));
    const seen: object[] = [];
    const ssm = new SsmCommands({ settings, client, sleep: async () => {} });
    await ssm.waitFor("cmd-7", ["i-1"], { onProgress: (invs) => seen.push(...invs) });
    expect(seen).toEqual([{ InstanceId: "i-1", Status: "Success", StatusDetails: "Success" }]);
  });

  it("refuses an empty page that says more follow", async () => {
    let n = 0;
    const { client, calls } = pagingClient(() => ({
      CommandInvocations: [],
      NextToken: `t${++n}`,
    }));
    const ssm = new SsmCommands({ settings, client, sleep: async () => {} });
    await expect(ssm.waitFor("cmd-3", ["i-1"])).rejects.toMatchObject({
      code: "ssm-paging",
      message: expect.stringContaining("an empty page says more follow"),
    });
    expect(calls).toHaveLength(1);
  });

  it("stops after 1,000 pages that each move on", async () => {
    let n = 0;
    const { client, calls } = pagingClient(() => ({
      CommandInvocations: [done(`i-${n}`)],
      NextToken: `t${++n}`,
    }));
    const ssm = new SsmCommands({ settings, client, sleep: async () => {} });
    await expect(ssm.waitFor("cmd-4", ["i-x"])).rejects.toMatchObject({
      code: "ssm-paging",
      message: expect.stringContaining("1000 pages and more follow"),
    });
    expect(calls).toHaveLength(1000);
  });
});

describe("a command SSM never reports ended", () => {
  /** An SSM whose invocations stay InProgress; the clock moves only as the wait sleeps. */
  function stuckSsm(instances = 1) {
    let now = 0;
    const client = {
      send: async (command: { constructor: { name: string } }) => {
        switch (command.constructor.name) {
          case "SendCommandCommand":
            return { Command: { CommandId: "cmd-stuck" } };
          case "ListCommandInvocationsCommand":
            return {
              CommandInvocations: Array.from({ length: instances }, (_, i) => ({
                InstanceId: i === 0 ? "i-0123456789abcdef0" : `i-${String(i).padStart(17, "0")}`,
                Status: "InProgress",
              })),
            };
          case "GetCommandCommand":
            return { Command: { Status: "InProgress", TargetCount: 1 } };
          default:
            throw new Error(`unexpected ${command.constructor.name}`);
        }
      },
    };
    const options = {
      settings: { ...settings, commandTimeout: 900 },
      client: client as unknown as SSMClient,
      pollInterval: 2000,
      sleep: async (ms: number) => {
        now += ms;
      },
      now: () => now,
    };
    return { options, elapsed: () => now };
  }

  it("is waited for within the fleet's bounds: twice commandTimeout, and 300 s for SSM to report", async () => {
    const { options, elapsed } = stuckSsm();
    const finished = await new SsmCommands(options).waitFor("cmd-stuck", ["i-0123456789abcdef0"]);
    expect(finished.get("i-0123456789abcdef0")?.status).toBe("Unfinished");
    expect(elapsed()).toBeGreaterThan((2 * 900 + 300) * 1000);
    expect(elapsed()).toBeLessThanOrEqual((2 * 900 + 300) * 1000 + 51 * 2000);
  });

  it("asking a host's status, within the status command's own bounds, whatever commandTimeout is", async () => {
    const { options, elapsed } = stuckSsm();
    const status = await new SsmDelivery(options).status({
      name: "web1",
      delivery: "ssm",
      instanceId: "i-0123456789abcdef0",
      targets: undefined,
    } as FleetHost);
    expect(status.reachable).toBe(false);
    // Delivered within 60 s, run within 60 s, 30 s for SSM to report it, and the polls' slack.
    expect(elapsed()).toBeGreaterThan((2 * STATUS_TIMEOUT + STATUS_REPORT_SLACK) * 1000);
    expect(elapsed()).toBeLessThanOrEqual(
      (2 * STATUS_TIMEOUT + STATUS_REPORT_SLACK) * 1000 + 51 * 2000,
    );
  });

  it("for a command whose targets match 20 instances run 2 at a time, waits out its 10 rounds", async () => {
    const { options, elapsed } = stuckSsm(20);
    const finished = await new SsmCommands(options).waitFor("cmd-stuck", undefined, {}, undefined, {
      concurrency: 2,
    });
    expect(finished.size).toBe(20);
    // Ten rounds of commandTimeout each, the delivery, and 300 s for SSM to report.
    expect(elapsed()).toBeGreaterThan((11 * 900 + 300) * 1000);
    expect(elapsed()).toBeLessThanOrEqual((11 * 900 + 300) * 1000 + 51 * 2000);
  });
});

describe("an interrupt while SSM does not answer", () => {
  it("ends the wait at once, each host unfinished, through the real SDK against an SSM that never answers", async () => {
    // Accepts each request and answers nothing: the call would last the answer deadline.
    const held: ServerResponse[] = [];
    const server = createServer((_req, res) => {
      held.push(res);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    const client = new SSMClient({
      endpoint: `http://127.0.0.1:${port}`,
      region: "us-east-1",
      credentials: { accessKeyId: "AKIDTEST", secretAccessKey: "test-secret" },
    });
    try {
      const stop = new AbortController();
      setTimeout(() => stop.abort(), 300);
      const started = Date.now();
      const finished = await new SsmCommands({ settings, client }).waitFor(
        "cmd-held",
        ["i-0123456789abcdef0"],
        {},
        stop.signal,
      );
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(held.length).toBeGreaterThan(0);
      expect([...finished.values()]).toEqual([
        expect.objectContaining({ instanceId: "i-0123456789abcdef0", status: "Unfinished" }),
      ]);
    } finally {
      client.destroy();
      for (const res of held) res.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  }, 20_000);
});
