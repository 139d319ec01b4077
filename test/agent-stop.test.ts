// `lab agents stop` stops an agent as its service unit does (KillMode=mixed): TERM, and the agent
// finishes the activation in progress before it exits; nothing it started outlives it holding
// the host's lock. On a lab of one host with a real agent, during a command check that takes
// several seconds.
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CliRun } from "../support/cli.js";
import {
  type AgentLab,
  agentLog,
  deployViaAgent,
  labAgents,
  record,
  setSystems,
  startAgentLab,
} from "./support/agent-lab.js";

const HOST = "ast1";
/** The check's command: a sleep no other process runs (found by it in /proc). */
const CHECK = "sleep 6.137";
let lab: AgentLab;

beforeAll(async () => {
  lab = await startAgentLab("ast", {
    hosts: 1,
    policy: { canary: 0, health: { commands: [{ run: CHECK, timeout: 30 }] } },
  });
});
afterAll(async () => {
  await lab?.down();
});

/** The network namespace of process `pid` (a lab host's own), or undefined once it is gone. */
function netnsOf(pid: number | string): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/net`);
  } catch {
    return undefined;
  }
}

/**
 * The pids whose command line holds `text`, in network namespace `netns` when given: the lab
 * host's, as another test's hosts may run activations of their own meanwhile.
 */
function running(text: string, netns?: string): number[] {
  return readdirSync("/proc")
    .filter((e) => /^\d+$/.test(e))
    .filter((pid) => {
      try {
        if (!readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ").includes(text)) {
          return false;
        }
        return netns === undefined || netnsOf(pid) === netns;
      } catch {
        return false;
      }
    })
    .map(Number);
}

describe("lab agents stop", () => {
  it("waits for the activation in progress to end, and leaves nothing of it running", async () => {
    await setSystems(lab, "web-v2");
    const deploying: Promise<CliRun> = deployViaAgent(lab);
    const deadline = Date.now() + 60_000;
    while (running(CHECK).length === 0) {
      if (Date.now() > deadline)
        throw new Error(`the check never ran:\n${await agentLog(lab, HOST)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    // The host's namespace, from its check (a command no other process runs).
    const netns = netnsOf(running(CHECK)[0] as number);
    expect(netns).toBeDefined();
    await labAgents(lab, "stop");
    // The agent ended its activation first: no check, no activate.sh of it left.
    expect(running(CHECK)).toEqual([]);
    expect(running("-- activate --path", netns)).toEqual([]);
    expect(await agentLog(lab, HOST)).toMatch(/release \d+ applied/);
    expect(await record(lab, HOST)).toMatchObject({ state: "success" });
    const deployed = await deploying;
    expect(deployed.code, deployed.stderr).toBe(0);
    await labAgents(lab, "start");
  });
});
