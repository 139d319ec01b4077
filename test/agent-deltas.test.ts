// Deltas for agent hosts, on a lab host whose real agent follows a channel in the
// lab's directory store: after a rebuild of its system (every store path new, the same names),
// `nixship deploy --via agent` publishes the deltas and names the delta tool in the host's
// entry; the agent hands it to nixship-activate, which fetches most paths by delta through the
// agent's cache proxy (counted at the cache: the proxy's reads of delta/ against nar/ objects),
// the host runs the new system and its store verifies it, and the host's status record and the
// deploy's outcome carry the delta report. The delta tool is a stand-in store path holding
// Debian's zstd.

import { spawn } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HOST_VIEW } from "../src/lab/lab-agents.js";
import { nixship, run } from "../support/cli.js";
import {
  type AgentLab,
  agentLog,
  agentPid,
  channelRelease,
  deployViaAgent,
  deployViaAgentArgs,
  record,
  startAgentLab,
  summaryOf,
  waitFor,
} from "./support/agent-lab.js";
import { buildDeltaTool, rebuildFleet } from "./support/delta-fleet.js";
import type { FreshSystems } from "./support/fresh-systems.js";
import { deployEvents } from "./support/lab-deploy.js";

// Each build has store paths of its own (system.nix's nonce) with the same names: a rebuild.
// Its libraries are large enough for a delta to be worth it; its toplevel, etc and kernel not.
const SYSTEM = 'name = "web-v1"; version = "v1"; libraries = { a = 48; b = 48; c = 48; d = 48; };';

interface DeltaOutcome {
  readonly paths: number;
  readonly bytes: number;
  readonly narBytes: number;
  readonly wholePaths: number;
  readonly wholeNarBytes: number;
  readonly failed: number;
}

let lab: AgentLab;
/** The lab's one host. */
let host: string;
let tool: string;
let work: string;
const flakes: FreshSystems[] = [];

/** A new build of SYSTEM, the lab's host pointed at it, and the fleet naming the delta tool. */
async function rebuild(): Promise<void> {
  flakes.push(await rebuildFleet(lab.fleetFile, [host], tool, SYSTEM));
}

function onHost(command: string) {
  return run("ssh", ["-F", join(lab.dir, "ssh_config"), host, command]);
}

/**
 * Runs `during` while strace follows the host's agent (its cache proxy serves the host's Nix
 * from the lab's directory cache, which the agent sees at HOST_VIEW/cache), and counts the
 * cache objects it opened: the NARs of whole paths (nar/) and the deltas' (delta/).
 */
async function countingCacheReads<T>(
  during: () => Promise<T>,
): Promise<{ result: T; nar: number; delta: number }> {
  // One file per thread (-ff): the proxy's opens run on several threads at once, and one file
  // keeps each call on one line.
  const dir = await mkdtemp(join(work, "strace-"));
  const pid = await agentPid(lab, host);
  const tracer = spawn(
    "strace",
    ["-ff", "-qq", "-e", "trace=open,openat", "-o", join(dir, "t"), "-p", String(pid)],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let said = "";
  tracer.stderr.on("data", (chunk: Buffer) => {
    said = `${said}${chunk}`.slice(-4000);
  });
  const exited = new Promise<void>((resolve) => tracer.once("exit", () => resolve()));
  const stop = async () => {
    tracer.kill("SIGINT");
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 10_000))]);
  };
  try {
    // strace says nothing once attached: wait until the agent names it as its tracer.
    const deadline = Date.now() + 10_000;
    for (;;) {
      const status = await readFile(`/proc/${pid}/status`, "utf8");
      if (new RegExp(`^TracerPid:\\s+${tracer.pid}$`, "m").test(status)) break;
      if (Date.now() > deadline || tracer.exitCode !== null) {
        throw new Error(`strace did not attach to the agent (${pid}): ${said}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const result = await during();
    await stop();
    return { result, ...(await countOpens(dir)) };
  } finally {
    await stop();
  }
}

/** The cache objects opened (successfully), by folder, in what strace wrote to `dir`. */
async function countOpens(dir: string): Promise<{ nar: number; delta: number }> {
  const lines: string[] = [];
  for (const file of await readdir(dir)) {
    lines.push(...(await readFile(join(dir, file), "utf8")).split("\n"));
  }
  const count = (folder: string) =>
    lines.filter((line) => line.includes(`"${HOST_VIEW}/cache/${folder}/`) && / = \d+$/.test(line))
      .length;
  return { nar: count("nar"), delta: count("delta") };
}

/** Starts the suite's lab: one host, its agent polling every 2 s. */
async function startLab(name: string, labUpArgs: readonly string[] = []): Promise<void> {
  lab = await startAgentLab(name, {
    hosts: 1,
    releases: { offlineTimeout: 240 },
    policy: { canary: 0, parallel: 1, confirmTimeout: 30 },
    agentConfig: { pollInterval: 2, heartbeatEvery: 1, activationTimeout: 600 },
    labUpArgs,
  });
  host = lab.hosts[0]?.name as string;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-agent-deltas-"));
  // A stand-in for nixpkgs' zstd: a store path whose bin/zstd is Debian's.
  tool = await buildDeltaTool();
}, 300_000);

afterAll(async () => {
  for (const flake of flakes) await flake.remove();
  if (work) await rm(work, { recursive: true, force: true });
});

/** What a failed deploy said: its last events, its stderr, and the end of the agent's log. */
async function whyFailed(r: { stdout: string; stderr: string }): Promise<string> {
  return `${r.stdout.slice(-3000)}\n${r.stderr}\n${(await agentLog(lab, host)).slice(-4000)}`;
}

/**
 * The host runs a build of SYSTEM (every path whole), then a rebuild deployed by the agent:
 * most paths come by delta (counted at the cache), the host runs the rebuild and its store
 * verifies it, and the deploy's outcome and the host's record carry the report.
 */
async function updateAcrossRebuild(): Promise<void> {
  await rebuild();
  const first = await deployViaAgent(lab);
  expect(first.code, await whyFailed(first)).toBe(0);
  // A fresh host has nothing to be a base: no pair, every path whole.
  expect(deployEvents(first).filter((e) => e.type === "deltas-start")).toEqual([]);

  await rebuild();
  const { result: r, nar, delta } = await countingCacheReads(() => deployViaAgent(lab));
  expect(r.code, await whyFailed(r)).toBe(0);
  const events = deployEvents(r);
  const [done] = events.filter((e) => e.type === "deltas-done") as unknown as {
    published: number;
    failed: number;
  }[];
  expect(done).toMatchObject({ failed: 0 });
  expect(done?.published).toBeGreaterThan(0);

  // The release named the tool in the host's entry.
  const { release } = await channelRelease(lab);
  expect(release.hosts[host]?.deltaTool).toBe(tool);

  // The deploy's outcome carries the host's report: most paths came by delta, none failed.
  const outcome = summaryOf(r)[host] as { status: string; delta?: DeltaOutcome };
  expect(outcome.status).toBe("activated");
  const report = outcome.delta as DeltaOutcome;
  expect(report, JSON.stringify(outcome)).toBeDefined();
  expect(report.paths).toBeGreaterThan(report.wholePaths);
  expect(report.failed).toBe(0);
  expect(report.bytes).toBeLessThan(report.narBytes);
  // Counted at the cache: those paths came as deltas, the others' NARs whole (the tool came
  // with the first deploy).
  expect({ delta, nar }).toEqual({ delta: report.paths, nar: report.wholePaths });

  // The host's status record keeps the same report.
  const rec = await record(lab, host);
  expect(rec).toMatchObject({ state: "success", mode: "agent", seq: release.seq });
  expect(rec?.delta).toEqual(report);

  // The host runs the new system, and its store verifies every path of it.
  const current = (await onHost("readlink /run/current-system")).stdout.trim();
  expect(current).toBe(rec?.desired);
  expect(current).toMatch(/-example-web-system-v1$/);
  const verify = await onHost(
    `nix-store --verify-path $(nix-store -qR ${current}) && echo verified`,
  );
  expect(verify.stdout.trim(), verify.stderr).toBe("verified");
}

describe("deltas for an agent host (Nix 2.8)", () => {
  beforeAll(() => startLab("adl"), 300_000);
  afterAll(() => lab?.down());

  it("an agent host updated across a rebuild gets most paths by delta, runs the new system, its store verifies it, and its record and the deploy's outcome carry the report", async () => {
    await updateAcrossRebuild();
  }, 600_000);

  it("sums up what came by delta to the agent host in the human summary", async () => {
    await rebuild();
    const r = await nixship(deployViaAgentArgs(lab).filter((a) => a !== "--json"));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(
      /^deltas: \d+ paths? by delta \(.* fetched for .* of NARs\), \d+ paths? whole/m,
    );
  }, 600_000);

  it("release publish --no-delta names no tool: the agent fetches every path whole", async () => {
    await rebuild();
    const r = await nixship([
      "release",
      "publish",
      "--fleet",
      lab.fleetFile,
      "--key",
      lab.cacheKeyFile,
      "--release-key",
      lab.releaseKeyFile,
      "--no-delta",
      "--json",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const { seq } = JSON.parse(r.stdout) as { seq: number };
    const { release } = await channelRelease(lab);
    expect(release.seq).toBe(seq);
    expect(release.hosts[host]).toEqual({ path: release.hosts[host]?.path });
    const rec = await waitFor(lab, host, (x) => x.seq === seq && x.state !== "applying", 240);
    expect(rec.state, rec.error ?? "").toBe("success");
    expect(rec.delta).toBeUndefined();
  }, 600_000);
});

describe("deltas for an agent host (Nix 2.26)", () => {
  beforeAll(() => startLab("adlc", ["--nix", "current"]), 300_000);
  afterAll(() => lab?.down());

  it("the host runs Nix 2.26, and gets most paths of a rebuild by delta", async () => {
    expect((await onHost("nix-store --version")).stdout.trim()).toBe("nix-store (Nix) 2.26.3");
    await updateAcrossRebuild();
  }, 600_000);
});
