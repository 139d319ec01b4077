// What passed on each host, on a lab of three hosts with real agents
// (`lab up --agents`): after web-broken fails on the canary, no release names it for any host
// again, `rollback` walks back through confirmed systems, the channel is explicit, and
// `rollback --to` takes a release, a store path and a generation.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CliRun } from "../support/cli.js";
import { nixship } from "../support/cli.js";
import {
  type AgentLab,
  allReleases,
  CHANNEL,
  deployViaAgent,
  record,
  served,
  setSystems,
  startAgentLab,
  summaryOf,
  waitFor,
} from "./support/agent-lab.js";

const HOSTS = ["ah1", "ah2", "ah3"];
let lab: AgentLab;

beforeAll(async () => {
  lab = await startAgentLab("ah", {
    hosts: HOSTS.length,
    releases: { offlineTimeout: 90 },
    policy: { canary: 1, parallel: 3, confirmTimeout: 30 },
  });
});

afterAll(async () => {
  await lab?.down();
});

const servedAll = () => Promise.all(HOSTS.map((h) => served(lab, h)));

/** Samples what each host serves every 0.5 s until stopped (at most `seconds`). */
function sampleServed(seconds: number): { stop: () => Promise<string[][]> } {
  const samples: string[][] = [];
  let stopped = false;
  const done = (async () => {
    const deadline = Date.now() + seconds * 1000;
    while (!stopped && Date.now() < deadline) {
      samples.push(await servedAll());
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await done;
      return samples;
    },
  };
}

/** `rollback --on *`: every host back one step (its last confirmed system), as --on means. */
/** `rollback` of every host, or of those `extra`'s own --on selects (a flag is given once). */
function rollback(...extra: string[]): Promise<CliRun> {
  return nixship([
    "rollback",
    "--fleet",
    lab.fleetFile,
    ...(extra.includes("--on") ? [] : ["--on", "*"]),
    "--release-key",
    lab.releaseKeyFile,
    "--json",
    ...extra,
  ]);
}

function rolledTo(r: CliRun): Record<string, { status: string; path?: string; message?: string }> {
  const rows = (JSON.parse(r.stdout) as { hosts: { host: string; status: string }[] }).hosts;
  return Object.fromEntries(rows.map((x) => [x.host, x]));
}

describe("what passed on each host", () => {
  let broken: string;
  let failedSeq: number;
  const paths = new Map<string, string>();
  let sampling: ReturnType<typeof sampleServed> | undefined;

  it("v1, v2, then web-broken caught by the canary: the rollback release names v2", async () => {
    await setSystems(lab, "web-v1");
    const first = await deployViaAgent(lab);
    expect(first.code, first.stderr).toBe(0);
    paths.set("web-v1", (await record(lab, "ah1"))?.current ?? "");
    await setSystems(lab, "web-v2");
    const second = await deployViaAgent(lab);
    expect(second.code, second.stderr).toBe(0);
    paths.set("web-v2", (await record(lab, "ah1"))?.current ?? "");
    await setSystems(lab, "web-broken");
    const r = await deployViaAgent(lab, "--canary", "1");
    expect(r.code).toBe(1);
    expect(summaryOf(r).ah1).toMatchObject({ status: "failed", rolledBack: true });
    const releases = await allReleases(lab);
    const failed = releases.filter((x) => x.kind === "deploy").at(-1);
    broken = failed?.hosts.ah1?.path ?? "";
    failedSeq = failed?.seq ?? 0;
    expect(broken).toMatch(/-example-web-system-broken$/);
    // The deploy ended once ah1 had applied the rollback release, and said so.
    expect(String(summaryOf(r).ah1?.message)).toMatch(/it applied rollback release \d+ \(it runs /);
    expect(await record(lab, "ah1")).toMatchObject({
      state: "success",
      current: paths.get("web-v2"),
      seq: releases.at(-1)?.seq,
    });
    expect(releases.at(-1)).toMatchObject({
      kind: "rollback",
      hosts: {
        ah1: { path: paths.get("web-v2") },
        ah2: { path: paths.get("web-v2") },
        ah3: { path: paths.get("web-v2") },
      },
    });
    expect(await servedAll()).toEqual(["web-v2", "web-v2", "web-v2"]);
    // The fleet file still names web-broken: the plan says the deploy refuses it for ah1 (no
    // release names it there again without --allow-failed), as the deploy then does.
    const planned = await nixship(["plan", "--fleet", lab.fleetFile, "--json"]);
    expect(planned.code, planned.stderr).toBe(0);
    const hosts = (
      JSON.parse(planned.stdout) as { hosts: { host: string; refusedFailed?: string }[] }
    ).hosts;
    const why = `ah1: ${broken} failed on ah1 in release ${failedSeq}`;
    expect(hosts.find((h) => h.host === "ah1")?.refusedFailed).toBe(why);
    const text = await nixship(["plan", "--fleet", lab.fleetFile]);
    expect(text.stdout).toContain(
      `refused: ${why}; the deploy names it again only with --allow-failed`,
    );
    const refused = await deployViaAgent(lab);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(why);
  });

  it("rollback twice: to v1, then nothing confirmed before it (never back to broken or v2)", async () => {
    // From here on, through the next test, no host serves web-broken at any sample.
    sampling = sampleServed(600);
    const once = await rollback();
    expect(once.code, once.stderr).toBe(0);
    expect(rolledTo(once)).toMatchObject({
      ah1: { status: "rolled-back", path: paths.get("web-v1") },
      ah2: { status: "rolled-back", path: paths.get("web-v1") },
      ah3: { status: "rolled-back", path: paths.get("web-v1") },
    });
    expect(await servedAll()).toEqual(["web-v1", "web-v1", "web-v1"]);
    const count = (await allReleases(lab)).length;
    const twice = await rollback();
    expect(twice.code).toBe(1);
    expect(rolledTo(twice).ah1?.message).toMatch(/no system was confirmed healthy on ah1 before/);
    expect((await allReleases(lab)).length).toBe(count);
    expect(await servedAll()).toEqual(["web-v1", "web-v1", "web-v1"]);
  });

  it("release publish of v2, then a deploy to ah2 only: no host switches to broken again", async () => {
    await setSystems(lab, "web-v2");
    const publish = await nixship([
      "release",
      "publish",
      "--fleet",
      lab.fleetFile,
      "--key",
      lab.cacheKeyFile,
      "--release-key",
      lab.releaseKeyFile,
      "--json",
    ]);
    expect(publish.code, publish.stderr).toBe(0);
    expect(JSON.parse(publish.stdout)).toMatchObject({
      channel: CHANNEL,
      seq: expect.any(Number),
      digest: expect.stringMatching(/^sha256-/),
    });
    for (const host of HOSTS) {
      const deadline = Date.now() + 60_000;
      while ((await served(lab, host)) !== "web-v2") {
        if (Date.now() > deadline) throw new Error(`${host} never served web-v2`);
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
    // Serving v2 comes before the agent's record says so: the deploy plans from the records,
    // so it must see v2 there (else ah2 looks like it still runs v1, and is skipped).
    for (const host of HOSTS) {
      await waitFor(
        lab,
        host,
        (r) => r.state === "success" && (r.current ?? "").endsWith("-example-web-system-v2"),
      );
    }
    await setSystems(lab, "web-v1", ["ah2"]);
    const onAh2 = await deployViaAgent(lab, "--on", "ah2");
    expect(onAh2.code, onAh2.stderr).toBe(0);
    const samples = (await sampling?.stop()) ?? [];
    expect(samples.length).toBeGreaterThan(2);
    expect(samples.flat()).not.toContain("web-broken");
    // Every host ends on a system that passed.
    expect(await servedAll()).toEqual(["web-v2", "web-v1", "web-v2"]);
    // No release after the failure names broken for any host.
    const later = (await allReleases(lab)).filter((r) => r.seq > failedSeq);
    expect(later.length).toBeGreaterThanOrEqual(4);
    for (const release of later) {
      for (const [host, entry] of Object.entries(release.hosts)) {
        expect(entry.path, `release ${release.seq} names broken for ${host}`).not.toBe(broken);
      }
    }
  });

  it("rollback --to release:N, --to /nix/store/…, --to generation:N", async () => {
    const releases = await allReleases(lab);
    const v1Release = releases.find((r) => r.hosts.ah1?.path === paths.get("web-v1"));
    if (v1Release === undefined) throw new Error("no release names web-v1 for ah1");
    const byRelease = await rollback("--on", "ah1", "--to", `release:${v1Release.seq}`);
    expect(byRelease.code, byRelease.stderr).toBe(0);
    expect(await served(lab, "ah1")).toBe("web-v1");
    const v1Generation = (await record(lab, "ah1"))?.generation;

    const byPath = await rollback("--on", "ah1", "--to", paths.get("web-v2") ?? "");
    expect(byPath.code, byPath.stderr).toBe(0);
    expect(await served(lab, "ah1")).toBe("web-v2");

    const byGeneration = await rollback("--on", "ah1", "--to", `generation:${v1Generation}`);
    expect(byGeneration.code, byGeneration.stderr).toBe(0);
    expect(rolledTo(byGeneration).ah1).toMatchObject({ path: paths.get("web-v1") });
    expect(await served(lab, "ah1")).toBe("web-v1");

    // A system that failed on the host is refused without --allow-failed.
    const toBroken = await rollback("--on", "ah1", "--to", broken);
    expect(toBroken.code).toBe(1);
    expect(rolledTo(toBroken).ah1?.message).toContain(`${broken} failed on ah1`);
    expect(await served(lab, "ah1")).toBe("web-v1");
  });
});
