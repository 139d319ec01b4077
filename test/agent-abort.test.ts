// Aborts that abort in agent mode, on a lab of two hosts with real pull agents:
// - a host whose agent is paused is named by the plan and not deployed (nothing is published
//   for it, where a release once named the new system and another took it back, and it was
//   waited for), and once resumed it does not apply the system of that deploy;
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
  it("a paused host is named by the plan and not deployed, and after resuming does not apply that deploy's system", async () => {
    await labAgents(lab, "pause", "ab2");
    await untilPaused("ab2");
    await setSystems(lab, "web-v2");
    const v1 = (await waitFor(lab, "ab2", (rec) => rec.state === "success")).current;
    const before = (await channelRelease(lab)).release.seq;
    const plan = await nixship(["plan", "--fleet", lab.fleetFile], { env: lab.env });
    expect(plan.stdout).toMatch(/ab2's agent is paused \(its heartbeat \d+s ago says so\)/);
    // As a host that does not answer: the deploy stops before it starts, nothing published…
    const r = await deployViaAgent(lab, "--canary", "0");
    expect(r.code).toBe(1);
    const refused = summaryOf(r);
    expect(refused.ab1).toMatchObject({ status: "skipped", reason: "not-started" });
    expect(refused.ab2).toMatchObject({ status: "failed", phase: "connect", rolledBack: false });
    expect(String(refused.ab2?.message)).toMatch(/^ab2's agent is paused/);
    expect((await channelRelease(lab)).release.seq).toBe(before);
    // …or, with --skip-unreachable, goes on with the others.
    const skipping = await deployViaAgent(lab, "--canary", "0", "--skip-unreachable");
    expect(skipping.code, skipping.stderr).toBe(0);
    const outcomes = summaryOf(skipping);
    expect(outcomes.ab1).toMatchObject({ status: "activated" });
    expect(outcomes.ab2).toMatchObject({ status: "skipped", reason: "unreachable" });
    // Said once, not nested in a rollback's words.
    expect(String(outcomes.ab2?.message).match(/is paused/g)).toHaveLength(1);
    // One release, for ab1; the channel never named web-v2 for ab2.
    const { release } = await channelRelease(lab);
    expect(release.seq).toBe(before + 1);
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
