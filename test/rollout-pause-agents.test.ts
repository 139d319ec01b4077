// A pause after the canary with agent hosts (lab "pag", real agents): `rollout abort` from
// another process stops the rollout, and the deploy's rollback of it (a rollback release)
// puts the canary back on its system; the other host never changes.
import { readFile, writeFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nixship } from "../support/cli.js";
import {
  type AgentLab,
  deployViaAgent,
  deployViaAgentArgs,
  served,
  setSystems,
  startAgentLab,
} from "./support/agent-lab.js";
import { deployPausing } from "./support/paused-deploy.js";
import { rolloutFiles, undoPlanOf } from "./support/rollout-records.js";

const HOSTS = ["pag1", "pag2"];
let lab: AgentLab;

beforeAll(async () => {
  lab = await startAgentLab("pag", {
    hosts: HOSTS.length,
    releases: { offlineTimeout: 60 },
    policy: { canary: 1, parallel: 1 },
    agentConfig: { pollInterval: 1, heartbeatEvery: 10 },
  });
  await setSystems(lab, "web-v1");
  const first = await deployViaAgent(lab);
  expect(first.code, first.stderr).toBe(0);
}, 300_000);
afterAll(async () => {
  await lab?.down();
});

const servedAll = () => Promise.all(HOSTS.map((h) => served(lab, h)));

describe("agent hosts: abort at the pause after the canary", () => {
  it("rolls the canary back by a rollback release, and the other host never changes", async () => {
    const doc = JSON.parse(await readFile(lab.fleetFile, "utf8")) as {
      policy: Record<string, unknown>;
    };
    doc.policy = { ...doc.policy, pauseAfter: "canary", pauseTimeout: 600 };
    await writeFile(lab.fleetFile, JSON.stringify(doc, null, 2));
    await setSystems(lab, "web-v2");
    let atPause: string[] = [];
    let aborted: { code: number; stderr: string } | undefined;
    const r = await deployPausing(deployViaAgentArgs(lab), async (paused) => {
      atPause = await servedAll();
      aborted = await nixship([
        "rollout",
        "abort",
        paused.rollout as string,
        "--store",
        lab.storeUrl,
      ]);
    });
    const id = r.paused.rollout as string;
    expect(atPause).toEqual(["web-v2", "web-v1"]);
    expect(aborted?.code, aborted?.stderr).toBe(0);
    expect(r.code, r.stderr).toBe(1);
    expect(undoPlanOf(r.stdout).steps.map((s) => [s.host, s.kind])).toEqual([
      ["pag1", "back"],
      ["pag2", "stays"],
    ]);
    expect(await servedAll()).toEqual(["web-v1", "web-v1"]);
    const records = await rolloutFiles(lab.storeUrl);
    expect(records.find((f) => f.id === id)).toMatchObject({
      state: "aborted",
      pauses: [{ afterWave: 1, answer: { action: "abort" } }],
    });
    expect(records.find((f) => f.undoes === id)?.state).toBe("succeeded");
  });
});
