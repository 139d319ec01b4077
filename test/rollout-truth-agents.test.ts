// The rollout as the unit of truth with agent hosts (lab "rta", real agents): v1, then v2,
// then v3 while host 3's agent is stopped (the survey finds it offline). Host 3 is behind in
// status and the dashboard until a deploy reaches it, also once its agent, back, confirms the
// entry the rollout's own release carried for it; a fleet rollback undoes the v3 rollout alone, and
// `rollback --rollout` of the v2 rollout puts all three on v1.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nixship } from "../support/cli.js";
import {
  type AgentLab,
  agentLog,
  channelRelease,
  deployViaAgent,
  labAgents,
  served,
  setSystems,
  startAgentLab,
  summaryOf,
  waitFor,
} from "./support/agent-lab.js";
import { dashboardHost } from "./support/dashboard-api.js";
import { buildExampleSystems } from "./support/example-systems.js";
import { rolloutFiles, statusRows, undoPlanOf } from "./support/rollout-records.js";

const HOSTS = ["rta1", "rta2", "rta3"];
let lab: AgentLab;

beforeAll(async () => {
  lab = await startAgentLab("rta", {
    hosts: HOSTS.length,
    releases: { offlineTimeout: 20 },
    policy: { canary: 0, parallel: 3 },
    agentConfig: { pollInterval: 1, heartbeatEvery: 10 },
  });
}, 180_000);
afterAll(async () => {
  await lab?.down();
});

const servedAll = () => Promise.all(HOSTS.map((h) => served(lab, h)));

const status = (...extra: string[]) => statusRows(nixship, lab.fleetFile, ...extra);

function rollback(...extra: string[]) {
  return nixship([
    "rollback",
    "--fleet",
    lab.fleetFile,
    "--key",
    lab.cacheKeyFile,
    "--release-key",
    lab.releaseKeyFile,
    "--json",
    ...extra,
  ]);
}

/** Waits (at most 60 s) until status calls the host's agent offline. */
async function offline(host: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const r = await nixship(["status", "--fleet", lab.fleetFile, "--on", host, "--json"]);
    const row = (JSON.parse(r.stdout) as { hosts: { liveness?: string }[] }).hosts[0];
    if (row?.liveness === "offline") return;
    if (Date.now() > deadline)
      throw new Error(`${host}'s agent never counted offline: ${r.stdout}`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

const newestRollout = async () => (await rolloutFiles(lab.storeUrl))[0];

describe("agent hosts: a host a rollout missed is behind; rollback undoes a rollout, never more", () => {
  let v2Rollout: string;
  let v3Rollout: string;

  it("v1, v2, then v3 while host 3's agent is stopped: the rollout names host 3 failed, its agent offline", async () => {
    for (const system of ["web-v1", "web-v2"]) {
      await setSystems(lab, system);
      const r = await deployViaAgent(lab);
      expect(r.code, r.stderr).toBe(0);
    }
    v2Rollout = (await newestRollout())?.id as string;
    await labAgents(lab, "stop", "rta3");
    // Until its heartbeats age past twice their period (10 polls of 1 s: some seconds).
    await offline("rta3");
    await setSystems(lab, "web-v3");
    const v3 = await deployViaAgent(lab, "--max-failures", "1");
    const record = await newestRollout();
    v3Rollout = record?.id as string;
    expect(v3Rollout).not.toBe(v2Rollout);
    // The survey finds its agent offline: as a host that does not answer, it fails at once (one
    // failure allowed), no release names v3 for it, and the record says why.
    expect(v3.code, v3.stdout.slice(-3000)).toBe(1);
    expect(summaryOf(v3).rta3).toMatchObject({ status: "failed", phase: "connect" });
    expect(record?.state).toBe("failed");
    expect(record?.skipped).toContainEqual(
      expect.objectContaining({
        host: "rta3",
        state: "unreachable",
        message: expect.stringContaining("rta3's agent is offline"),
      }),
    );
    expect((await channelRelease(lab)).release.hosts.rta3?.path).not.toContain("web-system-v3");
    expect(await servedAll()).toEqual(["web-v3", "web-v3", "web-v2"]);
  });

  it("status and the dashboard call host 3 behind, naming the rollout that missed it", async () => {
    const { code, rows } = await status();
    expect(code).toBe(1);
    expect(rows.get("rta3")).toMatchObject({
      inStep: false,
      behindRollout: { rollout: v3Rollout },
    });
    expect(await dashboardHost(lab.fleetFile, "rta3")).toMatchObject({
      inStep: false,
      behindRollout: { rollout: v3Rollout },
    });
  });

  it("host 3's agent, back, confirms the entry the rollout's own release left it on: still behind", async () => {
    await labAgents(lab, "start", "rta3");
    // The rollout's last release names v2 for host 3 (its failure sent its entry back): the
    // agent reports success on it, newer than the rollout, but no newer word on what it asked.
    const { seq } = (await channelRelease(lab)).release;
    expect((await newestRollout())?.releases).toMatchObject({
      seqs: expect.arrayContaining([seq]),
    });
    await waitFor(lab, "rta3", (r) => r.state === "success" && r.seq === seq, 90);
    const { code, rows } = await status();
    expect(code).toBe(1);
    expect(rows.get("rta3")).toMatchObject({
      inStep: false,
      hostState: "behind",
      behindRollout: { rollout: v3Rollout },
    });
    expect(await dashboardHost(lab.fleetFile, "rta3")).toMatchObject({
      hostState: "behind",
      behindRollout: { rollout: v3Rollout },
    });
  });

  it("a fleet rollback undoes the v3 rollout alone, host 3 left on v2 (its agent back)", async () => {
    const back = await rollback();
    expect(back.code, back.stderr + back.stdout.slice(-3000)).toBe(0);
    const undo = undoPlanOf(back.stdout);
    expect(undo.rollout).toBe(v3Rollout);
    expect(undo.steps.map((s) => [s.host, s.kind])).toEqual([
      ["rta1", "back"],
      ["rta2", "back"],
      ["rta3", "stays"],
    ]);
    // Host 3's agent, running again, applies the release the rollback left on the channel: it
    // names v2 for it, where it is.
    const { seq } = (await channelRelease(lab)).release;
    await waitFor(lab, "rta3", (r) => r.state === "success" && r.seq === seq, 90);
    expect(await servedAll()).toEqual(["web-v2", "web-v2", "web-v2"]);
    const { code } = await status();
    expect(code).toBe(0);
  });

  it("rollback --rollout of the v2 rollout puts all three on v1", async () => {
    const back = await rollback("--rollout", v2Rollout);
    expect(back.code, back.stderr + back.stdout.slice(-3000)).toBe(0);
    expect(await servedAll()).toEqual(["web-v1", "web-v1", "web-v1"]);
  });

  it("a host switched by hand since a rollout: its rollback refuses the host and its release leaves it there", async () => {
    await setSystems(lab, "web-v2");
    const deployed = await deployViaAgent(lab);
    expect(deployed.code, deployed.stderr).toBe(0);
    const v2Again = (await newestRollout())?.id as string;
    // Someone switches host 1 by hand (as nixos-rebuild would) to v3, which it ran before.
    const v3 = (await buildExampleSystems())["web-v3"];
    const hand = await nixship(
      [
        ...["lab", "exec", "--name", lab.name, "rta1", "--", "sh", "-c"],
        `nix-env -p /nix/var/nix/profiles/system --set ${v3} && ${v3}/bin/switch-to-configuration switch`,
      ],
      { env: lab.env },
    );
    expect(hand.code, hand.stderr).toBe(0);
    // Its agent's heartbeat writes what it runs now into its record.
    await waitFor(lab, "rta1", (r) => r.current === v3, 60);
    const back = await rollback("--rollout", v2Again);
    expect(back.code).toBe(1);
    expect(undoPlanOf(back.stdout).steps.map((s) => [s.host, s.kind])).toEqual([
      ["rta1", "refused"],
      ["rta2", "back"],
      ["rta3", "back"],
    ]);
    expect(back.stderr).toContain(
      `rta1: runs ${v3}, not its channel entry ${(await buildExampleSystems())["web-v2"]} (changed since, and left as it is): the release names no entry for it`,
    );
    // The rollback's release names no entry for host 1: its agent leaves it on v3.
    const { release } = await channelRelease(lab);
    expect(release.hosts.rta1).toBeUndefined();
    await waitFor(lab, "rta2", (r) => r.state === "success" && r.seq === release.seq, 60);
    // Host 1's agent acts on the release (it names no entry for it) and changes nothing.
    const said = `release ${release.seq} has no entry for this host`;
    for (let tries = 0; !(await agentLog(lab, "rta1")).includes(said); tries++) {
      if (tries > 120) throw new Error(`rta1's agent never said '${said}'`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    expect(await servedAll()).toEqual(["web-v3", "web-v1", "web-v1"]);
  });

  it("a host a rollout skipped (its agent paused) stays behind it through another rollout's release that carries its old entry", async () => {
    await labAgents(lab, "pause", "rta3");
    const paused = async () => (await status("--on", "rta3")).rows.get("rta3")?.liveness;
    for (let tries = 0; (await paused()) !== "paused"; tries++) {
      if (tries > 60) throw new Error("rta3's agent never read as paused");
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    const r = await deployViaAgent(lab, "--on", "rta2,rta3", "--skip-unreachable");
    expect(r.code, r.stderr).toBe(0);
    const skipped = (await newestRollout())?.id as string;
    await labAgents(lab, "resume", "rta3");
    // Another deploy, of host 2 alone: its release names host 3 with the entry it had (v1).
    await setSystems(lab, "web-v3", ["rta2"]);
    const other = await deployViaAgent(lab, "--on", "rta2");
    expect(other.code, other.stderr).toBe(0);
    const { seq } = (await channelRelease(lab)).release;
    await waitFor(lab, "rta3", (rec) => rec.state === "success" && rec.seq === seq, 60);
    expect(await servedAll()).toEqual(["web-v3", "web-v3", "web-v1"]);
    const { code, rows } = await status();
    expect(code).toBe(1);
    expect(rows.get("rta3")).toMatchObject({
      hostState: "behind",
      behindRollout: { rollout: skipped, why: expect.stringMatching(/^skipped as unreachable/) },
    });
  });
});
