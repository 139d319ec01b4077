// Collection on a lab with hosts in every mode (gcx1 over ssh, gcx2 over SSM through the
// stand-in that runs the document's real shell on it, gcx3 a pull agent) each deployed web-v1,
// web-v2, then web-v3; an agent of another machine wrote a record naming
// /nix/store/<hash of a path inside web-v3's closure>-x. `cache gc --stored --grace 0` completes (the malformed root
// named with its host), every system a host runs or can go back to verifies, each host rolls
// back in its own mode and serves web-v2, and every system it runs or can go back to then
// verifies again.
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readNarInfo } from "../src/cache/read.js";
import { statusRecord } from "../src/status/status.js";
import { readStatus, writeStatus } from "../src/status/status-store.js";
import { type CliRun, nixship } from "../support/cli.js";
import {
  type AgentLab,
  deployViaAgentArgs,
  labAgents,
  served,
  startAgentLab,
  waitFor,
  withStore,
} from "./support/agent-lab.js";
import { EXAMPLES_DIR } from "./support/example-systems.js";
import { type SsmStandIn, startSsmStandIn } from "./support/ssm-stand-in.js";

const SSH = "gcx1";
const SSM = "gcx2";
const AGENT = "gcx3";

let lab: AgentLab;
let ssm: SsmStandIn;
let bridge: string;
let publicKey: string;

beforeAll(async () => {
  lab = await startAgentLab("gcx", { hosts: 3 });
  // gcx1 over ssh, gcx2 over SSM: their agents stop, and the fleet file says how to reach them.
  await labAgents(lab, "stop", SSH, SSM);
  const doc = JSON.parse(await readFile(lab.fleetFile, "utf8")) as {
    cache: { publicKeys: string[] };
    hosts: Record<string, Record<string, unknown>>;
    ssm?: unknown;
  };
  const { hostKey: _sshKey, ...ssh } = doc.hosts[SSH] as Record<string, unknown>;
  doc.hosts[SSH] = { ...ssh, delivery: "ssh", sshHost: SSH };
  ssm = await startSsmStandIn({ [SSM]: {} }, lab.env);
  doc.hosts[SSM] = { ...doc.hosts[SSM], delivery: "ssm", instanceId: ssm.instances[SSM] };
  doc.ssm = { region: "eu-west-1" };
  await writeFile(lab.fleetFile, JSON.stringify(doc, null, 2));
  publicKey = doc.cache.publicKeys[0] as string;
  const state = JSON.parse(await readFile(join(lab.dir, "lab.json"), "utf8")) as {
    number: number;
  };
  bridge = `10.231.${state.number}.1`;
}, 180_000);
afterAll(async () => {
  await ssm?.close();
  await lab?.down();
});

const env = () => ({ ...lab.env, ...ssm.env });
const run = (args: readonly string[]): Promise<CliRun> => nixship(args, { env: env() });

async function setSystem(system: string): Promise<void> {
  const doc = JSON.parse(await readFile(lab.fleetFile, "utf8")) as {
    hosts: Record<string, { system: string }>;
  };
  for (const h of Object.values(doc.hosts)) h.system = `path:${EXAMPLES_DIR}#${system}`;
  await writeFile(lab.fleetFile, JSON.stringify(doc, null, 2));
}

/** Deploys `system` to each host in its own mode, one after the other. */
async function deployAll(system: string): Promise<void> {
  await setSystem(system);
  for (const host of [SSH, SSM]) {
    const r = await run([
      "deploy",
      "--fleet",
      lab.fleetFile,
      "--key",
      lab.cacheKeyFile,
      "--serve-cache",
      `${bridge}:0`,
      "--on",
      host,
      "--json",
    ]);
    expect(r.code, `${host}: ${r.stderr}`).toBe(0);
  }
  const r = await run(deployViaAgentArgs(lab, "--on", AGENT));
  expect(r.code, `${AGENT}: ${r.stderr}`).toBe(0);
  for (const host of [SSH, SSM, AGENT]) expect(await served(lab, host)).toBe(system);
}

/** Every system a host runs or can go back to, as its record says, by host. */
async function rootedSystems(): Promise<Record<string, { current: string; previous: string }>> {
  return withStore(lab, async (store) => {
    const out: Record<string, { current: string; previous: string }> = {};
    for (const host of [SSH, SSM, AGENT]) {
      const r = await readStatus(store, host);
      expect(r?.current, `${host}: ${JSON.stringify(r)}`).toMatch(/^\/nix\/store\//);
      expect(r?.previous, `${host}: ${JSON.stringify(r)}`).toMatch(/^\/nix\/store\//);
      out[host] = { current: r?.current as string, previous: r?.previous as string };
    }
    return out;
  });
}

async function verifyAll(systems: Record<string, { current: string; previous: string }>) {
  const paths = [...new Set(Object.values(systems).flatMap((s) => [s.current, s.previous]))];
  for (const p of paths) {
    const v = await run([
      "verify",
      "--cache",
      lab.storeUrl,
      "--trusted-key",
      publicKey,
      p,
      "--json",
    ]);
    expect(v.code, `${p}: ${v.stdout}${v.stderr}`).toBe(0);
  }
}

describe("cache gc --stored on a fleet of every mode", () => {
  it("keeps what every host runs and can go back to; each host rolls back in its mode", async () => {
    for (const system of ["web-v1", "web-v2", "web-v3"]) await deployAll(system);
    expect(ssm.sent.filter((c) => c === "activate").length).toBeGreaterThanOrEqual(3);
    const before = await rootedSystems();
    for (const host of [SSH, SSM, AGENT]) {
      expect(before[host]?.current).toMatch(/-example-web-system-v3$/);
      expect(before[host]?.previous).toMatch(/-example-web-system-v2$/);
    }

    // Any agent may write its own record: one names, under another name, the hash of a path
    // that only the systems' closures reach (the mark meets the wrong name first).
    const systems = new Set(Object.values(before).flatMap((s) => [s.current, s.previous]));
    const inside = await withStore(lab, async (store) =>
      (await readNarInfo(store, before[SSH]?.current as string))?.references.find(
        (r) => !systems.has(r),
      ),
    );
    if (inside === undefined) throw new Error("web-v3 references nothing but systems");
    const wrong = `${inside.slice(0, 43)}-x`;
    await withStore(lab, (store) =>
      writeStatus(
        store,
        statusRecord({
          host: "elsewhere1",
          mode: "agent",
          release: null,
          desired: wrong,
          system: { current: wrong, generation: 1 },
          what: { state: "success", phase: null, error: null, rolledBack: null },
          startedAt: new Date().toISOString(),
          updatedAt: new Date().toISOString(),
        }),
      ),
    );

    const gc = await run([
      "cache",
      "gc",
      "--fleet",
      lab.fleetFile,
      "--stored",
      "--grace",
      "0",
      "--json",
    ]);
    expect(gc.code, gc.stderr).toBe(0);
    const report = JSON.parse(gc.stdout) as {
      malformedRoots: { path: string; origins: string[] }[];
      deletedPaths: { storePath: string }[];
      reportKey: string;
    };
    expect(report.malformedRoots).toEqual([
      { path: wrong, describes: inside, origins: ["host elsewhere1"] },
    ]);
    expect(report.reportKey).toMatch(/^gc\/reports\//);
    await verifyAll(before);

    // Each host rolls back in its own mode, to web-v2.
    for (const host of [SSH, SSM]) {
      const r = await run(["rollback", "--fleet", lab.fleetFile, "--on", host, "--json"]);
      expect(r.code, `${host}: ${r.stderr}`).toBe(0);
    }
    expect(ssm.sent).toContain("rollback");
    const back = await run([
      "rollback",
      "--fleet",
      lab.fleetFile,
      "--on",
      AGENT,
      "--release-key",
      lab.releaseKeyFile,
      "--json",
    ]);
    expect(back.code, back.stderr).toBe(0);
    await waitFor(lab, AGENT, (r) => r.current === before[AGENT]?.previous);
    for (const host of [SSH, SSM, AGENT]) expect(await served(lab, host)).toBe("web-v2");
    const after = await rootedSystems();
    for (const host of [SSH, SSM, AGENT]) {
      expect(after[host]?.current).toBe(before[host]?.previous);
    }
    await verifyAll(after);
  }, 900_000);
});
