// Aborts that abort in agent mode, on a lab of two hosts with real pull agents:
// - a host whose agent is paused is reported at once (not waited for until offlineTimeout,
//   set here far past the test's own timeout), and once resumed it does not apply the system
//   of the deploy that reported it;
// - SIGINT while a host's agent has not yet taken the release (its agent is stopped) ends the
//   deploy with exit 130 and a release that names for that host what the channel named
//   before: started again, the agent applies that, never the aborted system.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nixship } from "../support/cli.js";
import {
  type AgentLab,
  channelRelease,
  deployViaAgent,
  deployViaAgentArgs,
  labAgents,
  served,
  setSystems,
  startAgentLab,
  summaryOf,
  waitFor,
} from "./support/agent-lab.js";
import { interruptDeploy } from "./support/interrupt-deploy.js";

const POLL = 1;
let lab: AgentLab;

/** The store path the channel's current release names for `host`. */
async function channelPath(host: string): Promise<string | undefined> {
  return (await channelRelease(lab)).release.hosts[host]?.path;
}

/** Waits (bounded) until `nixship status` says the host's agent is paused. */
async function untilPaused(host: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const r = await nixship(["status", "--fleet", lab.fleetFile, "--on", host, "--json"], {
      env: lab.env,
    });
    const row = (JSON.parse(r.stdout) as { hosts: { liveness?: string }[] }).hosts[0];
    if (row?.liveness === "paused") return;
    if (Date.now() > deadline) throw new Error(`${host} never read as paused: ${r.stdout}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

beforeAll(async () => {
  lab = await startAgentLab("ab", {
    hosts: 2,
    releases: { offlineTimeout: 900 },
    agentConfig: { pollInterval: POLL, heartbeatEvery: 10 },
  });
  await setSystems(lab, "web-v1");
  const first = await deployViaAgent(lab);
  expect(first.code, first.stderr).toBe(0);
});

afterAll(async () => {
  await lab?.down();
});

describe("aborts in agent mode", () => {
  it("a paused host is reported at once, and after resuming does not apply that deploy's system", async () => {
    await labAgents(lab, "pause", "ab2");
    await untilPaused("ab2");
    await setSystems(lab, "web-v2");
    const r = await deployViaAgent(lab, "--canary", "0");
    expect(r.code).toBe(1);
    const outcomes = summaryOf(r);
    expect(outcomes.ab1).toMatchObject({ status: "activated" });
    expect(outcomes.ab2).toMatchObject({ status: "failed", phase: "waiting" });
    expect(String(outcomes.ab2?.message)).toMatch(/^ab2's agent is paused/);
    const v1 = (await waitFor(lab, "ab2", (rec) => rec.state === "success")).current;
    // The channel no longer names web-v2 for it: the failed host's entry went back.
    expect(await channelPath("ab2")).toBe(v1);
    await labAgents(lab, "resume", "ab2");
    const { seq } = (await channelRelease(lab)).release;
    const after = await waitFor(lab, "ab2", (rec) => rec.seq === seq && rec.state !== "applying");
    expect(after).toMatchObject({ state: "success", current: v1 });
    expect(await served(lab, "ab2")).toBe("web-v1");
  });

  it("SIGINT before a host's agent took the release withdraws it: exit 130, and the agent never applies it", async () => {
    const before = await channelPath("ab2");
    await labAgents(lab, "stop", "ab2");
    await setSystems(lab, "web-v3", ["ab2"]);
    const r = await interruptDeploy(
      deployViaAgentArgs(lab, "--on", "ab2"),
      lab.env,
      (e) => e.type === "host-phase" && e.host === "ab2" && e.phase === "waiting",
    );
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toContain("withdrawing the release for 1 host not done (ab2)");
    const outcome = summaryOf(r).ab2;
    expect(outcome).toMatchObject({ status: "failed", phase: "waiting" });
    expect(String(outcome?.message)).toMatch(
      new RegExp(
        `^interrupted \\(SIGINT\\) before its agent took release \\d+; release \\d+ withdraws release \\d+ for it: its agent goes back to what the channel named before \\(${before}\\)`,
      ),
    );
    const withdrawal = (await channelRelease(lab)).release;
    expect(withdrawal).toMatchObject({ kind: "rollback" });
    expect(withdrawal.hosts.ab2?.path).toBe(before);
    await labAgents(lab, "start", "ab2");
    const after = await waitFor(
      lab,
      "ab2",
      (rec) => rec.seq === withdrawal.seq && rec.state !== "applying",
    );
    expect(after).toMatchObject({ state: "success", current: before });
    expect(await served(lab, "ab2")).toBe("web-v1");
  });
});
