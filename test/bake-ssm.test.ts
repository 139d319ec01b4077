// Bake and canary analysis with ssm hosts: three lab hosts reached through the SSM stand-in (it
// runs the document's shell on them), a real Prometheus scraping them while the test sends them
// requests. web-errors-later's canary passes its activation checks, fails its analysis in the
// bake and is rolled back through SSM to web-v1; no other host changes; the rollout record keeps
// the values. With a bake and no analysis the rollout goes on. A command check that starts
// failing mid-bake on one host of a wave of two (run on it through SSM's `check`) takes the
// whole wave back and starts no later wave. `rollout abort` of a rollout paused after its canary
// rolls the canary back through SSM.
import { readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CliRun, nixship } from "../support/cli.js";
import { bake, errorsAtMost, setBakePolicy } from "./support/bake-fleet.js";
import {
  deployEvents,
  labDeployArgs,
  servedBy,
  setExampleSystems,
  summaryOf,
} from "./support/lab-deploy.js";
import { deployActing, deployPausing } from "./support/paused-deploy.js";
import { startPrometheus, type TestPrometheus } from "./support/prometheus.js";
import { type RequestLoad, startRequestLoad } from "./support/request-load.js";
import { rolloutFiles } from "./support/rollout-records.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";
import { makeSsmHosts, type SsmStandIn, startSsmStandIn } from "./support/ssm-stand-in.js";

const TAG = "bkm";
const HOSTS = [1, 2, 3].map((i) => `${TAG}${i}`);
let lab: SshLab;
let ssm: SsmStandIn;
let env: NodeJS.ProcessEnv;
let cacheUrl: string;
let prometheus: TestPrometheus;
let load: RequestLoad;

const cli = (args: readonly string[]): Promise<CliRun> => nixship(args, { env });

async function deploy(system: string): Promise<CliRun> {
  await setExampleSystems(lab.fleetFile, Object.fromEntries(HOSTS.map((h) => [h, system])));
  return await cli([
    ...labDeployArgs(lab.info, lab.fleetFile, join(lab.info.dir, "cache.sec")),
    "--json",
  ]);
}

const served = () => Promise.all(HOSTS.map((h) => servedBy(lab.info, h)));

beforeAll(async () => {
  lab = await startSshLab(TAG, 3);
  const labEnv = { NIXSHIP_LAB_DIR: dirname(lab.info.dir) };
  ssm = await startSsmStandIn(Object.fromEntries(HOSTS.map((h) => [h, {}])), labEnv);
  env = { ...labEnv, ...ssm.env };
  prometheus = await startPrometheus(lab.info.hosts);
  load = startRequestLoad(lab.info.hosts.map((h) => h.address));
  await setExampleSystems(lab.fleetFile, Object.fromEntries(HOSTS.map((h) => [h, "web-v1"])));
  const first = await lab.deploy("--json");
  expect(first.code, first.stderr).toBe(0);
  // Every host is an SSM instance from now on.
  cacheUrl = await makeSsmHosts(lab.fleetFile, ssm, HOSTS, {
    region: "eu-west-1",
    commandTimeout: 30,
  });
}, 300_000);

afterAll(async () => {
  await load?.stop();
  await prometheus?.stop();
  await ssm?.close();
  await lab?.down();
});

describe("ssm hosts: a bake with an analysis catches what the activation checks cannot", () => {
  it("rolls the canary of web-errors-later back through SSM, and changes no other host", async () => {
    await setBakePolicy(lab.fleetFile, prometheus.url, TAG, {
      bake: bake(14),
      analysis: [errorsAtMost(0.1)],
    });
    const r = await deploy("web-errors-later");
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
    expect(await served()).toEqual(["web-v1", "web-v1", "web-v1"]);
    const [record] = await rolloutFiles(cacheUrl);
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
    const r = await deploy("web-errors-later");
    expect(r.code, r.stderr).toBe(0);
    expect(await served()).toEqual(["web-errors-later", "web-errors-later", "web-errors-later"]);
  }, 300_000);
});

const deployArgs = () => [
  ...labDeployArgs(lab.info, lab.fleetFile, join(lab.info.dir, "cache.sec")),
  "--json",
];

describe("ssm hosts: a failed bake takes its whole wave back", () => {
  it("a command check that starts failing mid-bake on one host: both hosts of its wave go back through SSM", async () => {
    const [first, second, third] = HOSTS as [string, string, string];
    const mark = "/nix/var/nixship-bake-test-fail";
    const outside = join(lab.info.dir, "hosts", second, mark);
    await setBakePolicy(lab.fleetFile, prometheus.url, TAG, {
      canary: 0,
      parallel: 2,
      bake: { seconds: 20, interval: 1 },
      health: { commands: [{ run: `test ! -e ${mark}`, timeout: 2 }] },
    });
    const before = await served();
    await setExampleSystems(lab.fleetFile, Object.fromEntries(HOSTS.map((h) => [h, "web-v3"])));
    try {
      const r = await deployActing(
        deployArgs(),
        (e) => e.type === "bake-start",
        () => writeFile(outside, ""),
        env,
      );
      expect(r.code, r.stderr).toBe(1);
      expect(await served()).toEqual(before);
      const summary = summaryOf(r);
      expect(summary[second]).toMatchObject({
        status: "failed",
        phase: "bake",
        rolledBack: true,
        cause: { kind: "bake", check: { run: `test ! -e ${mark}` } },
      });
      expect(summary[first]).toMatchObject({
        status: "failed",
        phase: "bake",
        rolledBack: true,
        cause: { kind: "wave", host: second },
      });
      expect(summary[third]).toMatchObject({ status: "skipped", reason: "not-started" });
      expect(deployEvents(r).filter((e) => e.type === "wave-start")).toHaveLength(1);
      const [record] = await rolloutFiles(cacheUrl);
      const entry = record?.waves[0]?.hosts.find((h) => h.host === first);
      expect(entry).toMatchObject({ state: "rolled-back", waveFailedBy: second });
    } finally {
      await rm(outside, { force: true });
    }
  }, 300_000);
});

describe("ssm hosts: a pause after the canary", () => {
  it("rollout abort rolls the canary back through SSM, and no other host changes", async () => {
    await setBakePolicy(lab.fleetFile, prometheus.url, TAG, undefined);
    const doc = JSON.parse(await readFile(lab.fleetFile, "utf8")) as Record<string, unknown>;
    const policy = doc.policy as Record<string, unknown> | undefined;
    doc.policy = { ...policy, canary: 1, parallel: 2, pauseAfter: "canary", pauseTimeout: 600 };
    await writeFile(lab.fleetFile, JSON.stringify(doc, null, 2));
    try {
      const before = await served();
      await setExampleSystems(lab.fleetFile, Object.fromEntries(HOSTS.map((h) => [h, "web-v2"])));
      let whilePaused: string[] = [];
      let aborted: CliRun | undefined;
      const r = await deployPausing(
        deployArgs(),
        async (paused) => {
          whilePaused = await served();
          aborted = await cli([
            "rollout",
            "abort",
            paused.rollout as string,
            "--fleet",
            lab.fleetFile,
          ]);
        },
        env,
      );
      const id = r.paused.rollout as string;
      expect(whilePaused).toEqual(["web-v2", ...before.slice(1)]);
      expect(aborted?.code, aborted?.stderr).toBe(0);
      expect(aborted?.stdout).toContain(`rollout ${id} aborted after wave 1`);
      expect(r.code, r.stderr).toBe(1);
      expect(await served()).toEqual(before);
      // One summary, carrying the rollback.
      const summaries = deployEvents(r).filter((e) => e.type === "summary");
      expect(summaries).toHaveLength(1);
      expect(summaries[0]?.rollback).toMatchObject({ ok: true });
      const records = await rolloutFiles(cacheUrl);
      expect(records.find((f) => f.id === id)).toMatchObject({ state: "aborted" });
      expect(records.find((f) => f.undoes === id)?.state).toBe("succeeded");
    } finally {
      const now = JSON.parse(await readFile(lab.fleetFile, "utf8")) as Record<string, unknown>;
      now.policy = policy;
      await writeFile(lab.fleetFile, JSON.stringify(now, null, 2));
    }
  }, 300_000);
});
