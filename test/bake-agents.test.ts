// Bake and canary analysis with agent hosts (lab "bka", real agents), a real Prometheus
// scraping them while the test sends them requests. web-errors-later's canary passes its
// activation checks, fails its analysis in the bake and is named back to web-v1 by a rollback
// release, which its agent applies; no other host changes; the rollout record keeps the values.
// With a bake and no analysis the rollout goes on. A wave of two where one host fails its
// analysis: a rollback release names both back, and no later wave starts.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type AgentLab,
  deployViaAgent,
  served,
  setSystems,
  startAgentLab,
  summaryOf,
} from "./support/agent-lab.js";
import { bake, errorsAtMost, setBakePolicy } from "./support/bake-fleet.js";
import { startPrometheus, type TestPrometheus } from "./support/prometheus.js";
import { type RequestLoad, startRequestLoad } from "./support/request-load.js";
import { rolloutFiles } from "./support/rollout-records.js";

const TAG = "bka";
const HOSTS = [1, 2, 3].map((i) => `${TAG}${i}`);
let lab: AgentLab;
let prometheus: TestPrometheus;
let load: RequestLoad;

beforeAll(async () => {
  lab = await startAgentLab(TAG, {
    hosts: HOSTS.length,
    releases: { offlineTimeout: 30 },
    policy: { canary: 1, parallel: 2 },
    agentConfig: { pollInterval: 1 },
  });
  prometheus = await startPrometheus(lab.hosts);
  load = startRequestLoad(lab.hosts.map((h) => h.address));
  await setBakePolicy(lab.fleetFile, prometheus.url, TAG, undefined);
  await setSystems(lab, "web-v1");
  const first = await deployViaAgent(lab);
  expect(first.code, first.stderr).toBe(0);
}, 240_000);
afterAll(async () => {
  await load?.stop();
  await prometheus?.stop();
  await lab?.down();
});

const servedAll = () => Promise.all(HOSTS.map((h) => served(lab, h)));

describe("agent hosts: a bake with an analysis catches what the activation checks cannot", () => {
  it("names the canary of web-errors-later back by a rollback release, and changes no other host", async () => {
    await setBakePolicy(lab.fleetFile, prometheus.url, TAG, {
      bake: bake(14),
      analysis: [errorsAtMost(0.1)],
    });
    await setSystems(lab, "web-errors-later");
    const r = await deployViaAgent(lab);
    expect(r.code, r.stderr).toBe(1);
    const [canary, ...rest] = HOSTS as [string, ...string[]];
    const summary = summaryOf(r);
    expect(summary[canary]).toMatchObject({
      status: "failed",
      phase: "bake",
      rolledBack: true,
      cause: { kind: "bake", analysis: [{ name: "errors" }] },
    });
    for (const host of rest) {
      expect(summary[host]).toMatchObject({ status: "skipped", reason: "not-started" });
    }
    expect(await servedAll()).toEqual(["web-v1", "web-v1", "web-v1"]);
    const [record] = await rolloutFiles(lab.storeUrl);
    const entry = record?.waves[0]?.hosts[0] as {
      host: string;
      state: string;
      bake: { analysis: { failed?: string; measurements: { value: number | null }[] }[] };
    };
    expect(entry).toMatchObject({ host: canary, state: "rolled-back" });
    expect(entry.bake.analysis[0]?.failed).toMatch(/above the maximum 0\.1/);
    expect(entry.bake.analysis[0]?.measurements.some((m) => (m.value ?? 0) > 0.1)).toBe(true);
  }, 300_000);

  it("without an analysis the rollout goes on", async () => {
    await setBakePolicy(lab.fleetFile, prometheus.url, TAG, { bake: bake(4) });
    await setSystems(lab, "web-errors-later");
    const r = await deployViaAgent(lab);
    expect(r.code, r.stderr).toBe(0);
    expect(await servedAll()).toEqual(["web-errors-later", "web-errors-later", "web-errors-later"]);
  }, 300_000);
});

describe("agent hosts: a failed bake takes its whole wave back", () => {
  it("one host of a wave of two fails its analysis: a rollback release names both back, no later wave starts", async () => {
    const [first, second, third] = HOSTS as [string, string, string];
    // Every host on web-v1 first (an earlier test may leave them on web-errors-later), with no
    // bake: each host of the wave then changes.
    await setBakePolicy(lab.fleetFile, prometheus.url, TAG, undefined);
    await setSystems(lab, "web-v1");
    const settled = await deployViaAgent(lab);
    expect(settled.code, settled.stderr).toBe(0);
    // The query's range (4 s) reaches before the switch: seconds ago these hosts ran
    // web-errors-later (the earlier test), whose errors may still be in it when the bake's first
    // measurements come. As the docs say, a range no longer than the interval × (failureLimit +
    // 1) keeps a previous system's errors from failing the new one: 4 s ≤ 1 s × 5.
    await setBakePolicy(lab.fleetFile, prometheus.url, TAG, {
      canary: 0,
      parallel: 2,
      bake: { seconds: 20, interval: 1 },
      analysis: [{ ...errorsAtMost(0.1), failureLimit: 4 }],
    });
    const before = await servedAll();
    await setSystems(lab, "web-errors-later", [first]);
    await setSystems(lab, "web-v2", [second, third]);
    const r = await deployViaAgent(lab);
    expect(r.code, r.stderr).toBe(1);
    expect(await servedAll()).toEqual(before);
    const summary = summaryOf(r);
    // Every host's outcome in the message: which host failed first, and why.
    const told = JSON.stringify(summary, null, 1);
    expect(summary[first], told).toMatchObject({
      status: "failed",
      phase: "bake",
      rolledBack: true,
      cause: { kind: "bake" },
    });
    expect(summary[second], told).toMatchObject({
      status: "failed",
      phase: "bake",
      rolledBack: true,
      cause: { kind: "wave", host: first },
    });
    expect(summary[third]).toMatchObject({ status: "skipped", reason: "not-started" });
    const [record] = await rolloutFiles(lab.storeUrl);
    expect(record?.waves).toHaveLength(2);
    expect(record?.waves[0]?.hosts.find((h) => h.host === second)).toMatchObject({
      state: "rolled-back",
      waveFailedBy: first,
    });
  }, 300_000);
});
