// Deltas with nothing to set up, on a lab of real hosts: from a fleet file that says nothing
// of deltas, hosts whose system has a zstd (as a NixOS system does) get a rebuild's paths by
// delta, applied with that zstd; and a host installed with a system the cache never had (a
// copy from the deployer, as an installer does it) gets deltas against it, their bases read
// from the deployer's store.
import { access, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hashPartOf } from "../src/cache/read.js";
import { run } from "../support/cli.js";
import { buildDeltaTool } from "./support/delta-fleet.js";
import { deployOutlastingDeltas } from "./support/deltas-hold.js";
import { type FreshSystems, ownSystems } from "./support/fresh-systems.js";
import { type DeployEventLine, deployEvents, summaryOf } from "./support/lab-deploy.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

const HOSTS = ["dfd1", "dfd2"];
const INSTALLED = "dfd3";
// Libraries large enough for a delta to pay, and a zstd in sw/bin: each build's store paths
// are its own (system.nix's nonce), with the same names: a rebuild.
const SYSTEM =
  'name = "web-v1"; version = "v1"; libraries = { a = 48; b = 48; c = 48; d = 48; }; zstd = "1.5.4";';

let lab: SshLab;
const flakes: FreshSystems[] = [];

interface FleetDoc {
  cache?: { url: string };
  hosts: Record<string, { system: string }>;
  deltas?: unknown;
}

async function readFleet(file: string): Promise<FleetDoc> {
  return JSON.parse(await readFile(file, "utf8")) as FleetDoc;
}

/** A new build of SYSTEM, and `hosts` of `fleetFile` pointed at it. */
async function rebuild(fleetFile: string, hosts: readonly string[]): Promise<void> {
  const flake = await ownSystems({ web: SYSTEM });
  flakes.push(flake);
  const doc = await readFleet(fleetFile);
  for (const host of hosts)
    (doc.hosts[host] as { system: string }).system = `path:${flake.dir}#web`;
  await writeFile(fleetFile, JSON.stringify(doc, null, 2));
}

function onHost(host: string, command: string) {
  return run("ssh", ["-F", `${lab.info.dir}/ssh_config`, host, command]);
}

const ofType = (events: DeployEventLine[], type: string): unknown[] =>
  events.filter((e) => e.type === type);

interface DeltaOutcome {
  status: string;
  delta?: { paths: number; wholePaths: number; failed: number; bytes: number; narBytes: number };
}

/** The host ran its new system, got most paths by delta, and its store verifies every path. */
async function expectByDelta(outcome: DeltaOutcome, host: string): Promise<void> {
  expect(outcome.status, host).toBe("activated");
  expect(outcome.delta?.paths, `${host}: ${JSON.stringify(outcome)}`).toBeGreaterThan(
    outcome.delta?.wholePaths ?? 0,
  );
  expect(outcome.delta?.failed, host).toBe(0);
  expect(outcome.delta?.bytes ?? 0, host).toBeLessThan(outcome.delta?.narBytes ?? 0);
  const current = (await onHost(host, "readlink /run/current-system")).stdout.trim();
  const verify = await onHost(
    host,
    `nix-store --verify-path $(nix-store -qR ${current}) && echo verified`,
  );
  expect(verify.stdout.trim(), verify.stderr).toBe("verified");
}

beforeAll(async () => {
  lab = await startSshLab("dfd", HOSTS.length + 1);
}, 300_000);

afterAll(async () => {
  await lab?.down();
  for (const flake of flakes) await flake.remove();
});

describe("deltas by default", () => {
  it("gives hosts a rebuild's paths by delta from a fleet file that says nothing of deltas", async () => {
    expect((await readFleet(lab.fleetFile)).deltas).toBeUndefined();
    await rebuild(lab.fleetFile, HOSTS);
    const first = await lab.deploy("--json", "--on", HOSTS.join(","));
    expect(first.code, first.stderr).toBe(0);

    await rebuild(lab.fleetFile, HOSTS);
    // The plan says, before any pair is computed, what it expects them to save.
    const plan = await lab.plan("--on", HOSTS.join(","));
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toMatch(
      /^ {2}dfd1, dfd2: \d+ paths, 0 by delta: .* without; once computed, about .* with deltas, [\d.]+× less \(an estimate\)$/m,
    );
    // One host a wave: the deltas are computed while the canary deploys (it fetches whole, as
    // a host whose deltas are not published when its wave starts does), the next uses them.
    const [canary, next] = HOSTS as [string, string];
    const r = await deployOutlastingDeltas(lab, HOSTS, "--on", HOSTS.join(","), "--parallel", "1");
    expect(r.code, r.stderr).toBe(0);
    const events = deployEvents(r);
    const [start] = ofType(events, "deltas-start") as { pairs: number; hosts: number }[];
    expect(start).toMatchObject({ hosts: 2 });
    expect(ofType(events, "deltas-done")).toMatchObject([{ failed: 0 }]);
    const outcomes = summaryOf(r);
    expect(outcomes[canary]?.status).toBe("activated");
    await expectByDelta(outcomes[next] as unknown as DeltaOutcome, next);
  }, 600_000);

  it("gives deltas to a host installed with a system the cache never had, from the deployer's store", async () => {
    // The host is installed by a copy from the deployer: a fleet without a cache.
    const doc = await readFleet(lab.fleetFile);
    const cacheDir = new URL(doc.cache?.url as string).pathname;
    await rebuild(lab.fleetFile, [INSTALLED]);
    const { cache: _, hosts, ...uncached } = await readFleet(lab.fleetFile);
    const installFleet = join(lab.info.dir, "install.json");
    await writeFile(
      installFleet,
      JSON.stringify({ ...uncached, hosts: { [INSTALLED]: hosts[INSTALLED] } }, null, 2),
    );
    const install = await lab.nixship(["deploy", "--fleet", installFleet, "--json"]);
    expect(install.code, install.stderr).toBe(0);
    const running = (await onHost(INSTALLED, "readlink /run/current-system")).stdout.trim();
    expect(running).toMatch(/-example-web-system-v1$/);
    const cached = async (path: string) =>
      access(join(cacheDir, `${hashPartOf(path)}.narinfo`)).then(
        () => true,
        () => false,
      );
    expect(await cached(running)).toBe(false);

    // The tool named, so that only where the bases come from is new here.
    const tool = await buildDeltaTool();
    const fleet = await readFleet(lab.fleetFile);
    await writeFile(lab.fleetFile, JSON.stringify({ ...fleet, deltas: { tool } }, null, 2));
    // A canary first (a host the cache knows), so that the installed host's wave starts once the
    // deltas computed meanwhile are published.
    const [canary] = HOSTS as [string];
    await rebuild(lab.fleetFile, [canary, INSTALLED]);
    const r = await deployOutlastingDeltas(
      lab,
      [canary, INSTALLED],
      "--on",
      `${canary},${INSTALLED}`,
      "--parallel",
      "1",
    );
    expect(r.code, r.stderr).toBe(0);
    const [done] = ofType(deployEvents(r), "deltas-done") as {
      published: number;
      failed: number;
    }[];
    expect(done?.published).toBeGreaterThan(0);
    expect(done?.failed).toBe(0);
    await expectByDelta(summaryOf(r)[INSTALLED] as unknown as DeltaOutcome, INSTALLED);
    // What it ran is still not in the cache: the bases came from the deployer's store.
    expect(await cached(running)).toBe(false);
  }, 600_000);
});
