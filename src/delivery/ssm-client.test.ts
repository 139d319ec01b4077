// SsmCommands against an SSM that pages badly: the invocations' listing is read page by page,
// and a listing that does not move on ends the wait with an error naming the command, where it
// would have polled for ever; a command SSM never reports ended is waited for no longer than
// its own bounds allow; an output read that fails or lags is read again, never taken for an
// empty output (test/ssm-send-once.test.ts: SendCommand goes out once, against moto).
import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { SSMClient } from "@aws-sdk/client-ssm";
import { describe, expect, it } from "vitest";
import type { FleetHost } from "../fleet/fleet.js";
import { SsmDelivery } from "./ssm.js";
import { SsmCommands } from "./ssm-client.js";
import { instanceOutcome } from "./ssm-outcomes.js";
import { STATUS_REPORT_SLACK, STATUS_TIMEOUT } from "./ssm-parameters.js";

const settings = { documentName: "nixship-activate", region: "us-east-1", commandTimeout: 60 };

/**
 * A client whose ListCommandInvocations answers with `pages(token)` (its calls counted), and
 * whose GetCommandInvocation answers that the invocation succeeded, printing nothing.
 */
function pagingClient(
  pages: (token: string | undefined) => { CommandInvocations: object[]; NextToken?: string },
) {
  const calls: (string | undefined)[] = [];
  const client = {
    send: async (command: {
      constructor: { name: string };
      input: { NextToken?: string; CommandId?: string; InstanceId?: string };
    }) => {
      if (command.constructor.name === "GetCommandInvocationCommand") {
        const { CommandId, InstanceId } = command.input;
        return { CommandId, InstanceId, Status: "Success", StatusDetails: "Success" };
      }
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

/**
 * A client that answers each call by its command's name (`SendCommand`, …) with `answers`:
 * a value, or an error thrown; counts the calls by name.
 */
function scriptedClient(
  answers: Record<string, (input: Record<string, unknown>, call: number) => unknown>,
) {
  const calls = new Map<string, number>();
  const client = {
    send: async (command: { constructor: { name: string }; input: Record<string, unknown> }) => {
      const name = command.constructor.name.replace(/Command$/, "");
      const n = (calls.get(name) ?? 0) + 1;
      calls.set(name, n);
      const answer = answers[name];
      if (answer === undefined) throw new Error(`unexpected ${name}`);
      const value = await answer(command.input, n);
      if (value instanceof Error) throw value;
      return value;
    },
  };
  return { client: client as unknown as SSMClient, calls };
}

/** A clock that moves only as the wait sleeps. */
function fakeClock() {
  let now = 0;
  return {
    sleep: async (ms: number) => {
      now += ms;
    },
    now: () => now,
  };
}

const awsError = (name: string, message = name) => Object.assign(new Error(message), { name });
const ACTIVATED = JSON.stringify({
  ok: true,
  command: "activate",
  result: "activated",
  path: "/nix/store/0c7j2gdmd5q5b5sl3jfql3qa0y41zlhb-nixos-system-web",
  action: "switch",
  previous: null,
  previousGeneration: null,
  generation: 5,
});

describe("an invocation's output", () => {
  const ended = () => ({ CommandInvocations: [done("i-1")] });
  const output = (input: Record<string, unknown>) => ({
    CommandId: input.CommandId,
    InstanceId: input.InstanceId,
    Status: "Success",
    StatusDetails: "Success",
    StandardOutputContent: `${ACTIVATED}\n`,
    ResponseCode: 0,
  });

  it("is read again at the next poll when its read failed, not taken as empty", async () => {
    const { client, calls } = scriptedClient({
      ListCommandInvocations: ended,
      GetCommandInvocation: (input, n) =>
        n === 1 ? awsError("InvocationDoesNotExist") : output(input),
    });
    const finished = await new SsmCommands({ settings, client, ...fakeClock() }).waitFor("cmd-1", [
      "i-1",
    ]);
    expect(calls.get("GetCommandInvocation")).toBe(2);
    expect(finished.get("i-1")).toMatchObject({ stdout: `${ACTIVATED}\n`, responseCode: 0 });
    expect(finished.get("i-1")).not.toHaveProperty("unread");
  });

  it("is not taken from an answer that says the invocation still runs, nor from another command's or instance's", async () => {
    const { client, calls } = scriptedClient({
      ListCommandInvocations: ended,
      GetCommandInvocation: (input, n) =>
        n === 1
          ? { ...output(input), Status: "InProgress", StatusDetails: "InProgress" }
          : n === 2
            ? { ...output(input), CommandId: "cmd-other" }
            : n === 3
              ? { ...output(input), InstanceId: "i-other" }
              : output(input),
    });
    const finished = await new SsmCommands({ settings, client, ...fakeClock() }).waitFor("cmd-1", [
      "i-1",
    ]);
    expect(calls.get("GetCommandInvocation")).toBe(4);
    expect(finished.get("i-1")).toMatchObject({ stdout: `${ACTIVATED}\n` });
  });

  it("never read by the deadline: the host may have switched, which is not known (not 'nothing changed')", async () => {
    const clock = fakeClock();
    const { client } = scriptedClient({
      ListCommandInvocations: ended,
      GetCommandInvocation: () => awsError("ThrottlingException", "Rate exceeded"),
    });
    const ssm = new SsmCommands({ settings, client, throttleDelay: 1, ...clock });
    const inv = (await ssm.waitFor("cmd-1", ["i-1"])).get("i-1");
    expect(inv).toMatchObject({ status: "Success", unread: expect.stringContaining("Throttling") });
    // Read again at each poll, until the command's own bounds ran out.
    expect(clock.now()).toBeGreaterThan((2 * 60 + 300) * 1000);
    expect(instanceOutcome(inv as never, settings, { maxErrorsReached: false }).outcome).toEqual({
      status: "failed",
      phase: "switch",
      message: expect.stringMatching(
        /^i-1: SSM reported Success, but its output could not be read: .*Throttling.*: whether it switched is not known/,
      ),
      rolledBack: false,
      settling: true,
    });
  });

  it("is read a few at a time, however many invocations end at once", async () => {
    const ids = Array.from({ length: 40 }, (_, i) => `i-${i}`);
    let running = 0;
    let most = 0;
    const { client } = scriptedClient({
      ListCommandInvocations: () => ({ CommandInvocations: ids.map(done) }),
      GetCommandInvocation: async (input) => {
        most = Math.max(most, ++running);
        await new Promise((resolve) => setTimeout(resolve, 5));
        running--;
        return output(input);
      },
    });
    const finished = await new SsmCommands({ settings, client, ...fakeClock() }).waitFor(
      "cmd-1",
      ids,
    );
    expect(finished.size).toBe(40);
    expect(most).toBeLessThanOrEqual(8);
  });
});

describe("a listing that names what the command is not", () => {
  it("instances it was not sent to neither stretch the wait nor count as its own", async () => {
    const clock = fakeClock();
    const mine = "i-0123456789abcdef0";
    const { client } = scriptedClient({
      ListCommandInvocations: () => ({
        CommandInvocations: [
          { InstanceId: mine, Status: "InProgress" },
          ...Array.from({ length: 30 }, (_, i) => ({
            InstanceId: `i-${String(i + 1).padStart(17, "0")}`,
            Status: "InProgress",
          })),
        ],
      }),
    });
    const ssm = new SsmCommands({
      settings: { ...settings, commandTimeout: 900 },
      client,
      pollInterval: 2000,
      ...clock,
    });
    const finished = await ssm.waitFor("cmd-1", [mine], {}, undefined, { concurrency: 1 });
    expect([...finished.keys()]).toEqual([mine]);
    expect(clock.now()).toBeLessThanOrEqual((2 * 900 + 300) * 1000 + 51 * 2000);
  });

  it("another command's status is not taken for this one's end", async () => {
    const clock = fakeClock();
    const { client } = scriptedClient({
      ListCommandInvocations: () => ({ CommandInvocations: [done("i-1")] }),
      GetCommandInvocation: (input) => ({ ...input, Status: "Success", ResponseCode: 0 }),
      ListCommands: () => ({ Commands: [{ CommandId: "cmd-other", Status: "Success" }] }),
    });
    const finished = await new SsmCommands({ settings, client, ...clock }).waitFor("cmd-1", [
      "i-1",
      "i-2",
    ]);
    // Not "Terminated" (not started: nothing changed): the command was never seen to end.
    expect(finished.get("i-2")?.status).toBe("Unfinished");
  });
});

describe("cancelling a command where it has not started", () => {
  /** A command of 60 waiting instances, one running and one done; CancelCommand's asks kept. */
  function cancelClient(failCancelAfter = Number.POSITIVE_INFINITY) {
    const asked: string[][] = [];
    const waiting = Array.from({ length: 60 }, (_, i) => ({
      InstanceId: `i-w${i}`,
      Status: i % 2 === 0 ? "Pending" : "Delayed",
    }));
    const client = {
      send: async (command: {
        constructor: { name: string };
        input: { NextToken?: string; InstanceIds?: string[] };
      }) => {
        if (command.constructor.name === "ListCommandInvocationsCommand") {
          const all = [{ InstanceId: "i-run", Status: "InProgress" }, done("i-done"), ...waiting];
          const start = Number(command.input.NextToken ?? 0);
          const next = start + 50 < all.length ? String(start + 50) : undefined;
          return { CommandInvocations: all.slice(start, start + 50), NextToken: next };
        }
        if (command.constructor.name !== "CancelCommandCommand")
          throw new Error(`unexpected ${command.constructor.name}`);
        if (asked.length >= failCancelAfter) {
          throw Object.assign(new Error("not allowed"), { name: "AccessDeniedException" });
        }
        asked.push(command.input.InstanceIds ?? []);
        return {};
      },
    };
    return { client: client as unknown as SSMClient, asked };
  }

  it("cancels every instance listed Pending or Delayed, 50 at a time, never one that runs", async () => {
    const { client, asked } = cancelClient();
    const told: string[] = [];
    const ssm = new SsmCommands({ settings, client, sleep: async () => {} });
    const r = await ssm.cancelNotStarted("cmd-1", (ids) => told.push(...ids));
    const waiting = Array.from({ length: 60 }, (_, i) => `i-w${i}`);
    expect(r).toEqual({ cancelled: waiting });
    expect(asked.map((ids) => ids.length)).toEqual([50, 10]);
    expect(asked.flat()).toEqual(waiting);
    expect(told).toEqual(waiting);
  });

  it("says why when SSM refuses, with what it cancelled before", async () => {
    const { client } = cancelClient(1);
    const ssm = new SsmCommands({ settings, client, sleep: async () => {} });
    const r = await ssm.cancelNotStarted("cmd-1");
    expect(r.cancelled).toHaveLength(50);
    expect(r.why).toMatch(/not allowed/);
  });
});
