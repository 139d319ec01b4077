// SsmCommands against an SSM that pages badly: the invocations' listing is read page by page,
// and a listing that does not move on ends the wait with an error naming the command, where it
// would have polled for ever.
import type { SSMClient } from "@aws-sdk/client-ssm";
import { describe, expect, it } from "vitest";
import { SsmCommands } from "./ssm-client.js";

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
        "SSM's list of the invocations of command cmd-2 does not move on: a page gave back the token it was asked with",
    });
    expect(calls).toEqual([undefined, "again"]);
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
