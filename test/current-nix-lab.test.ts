// A fleet on the current Nix (Debian trixie's 2.26) on both sides: lab hosts started with
// `lab up --nix current`, and a deployer whose own Nix is 2.26 in a /nix of its own. A deploy
// of the example flake, the plan, a canary that fails its health check and rolls back, a manual
// rollback and pruning (activate.sh's realise, profile, check-validity, gc and prune on Nix
// 2.26), then a pull agent on a 2.26 host applying one release.
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { activateScript } from "../src/host/activation.js";
import { checkActivationResult } from "../src/host/activation-result.js";
import { hostClosure } from "../src/host/host-closure.js";
import { type CliRun, nixship, run } from "../support/cli.js";
import { makeCurrentNixRoot, nixshipWithCurrentNix } from "../support/current-nix.js";
import {
  type AgentLab,
  served as agentServed,
  summaryOf as agentSummaryOf,
  deployViaAgentArgs,
  setSystems as setAgentSystems,
  startAgentLab,
  waitFor,
} from "./support/agent-lab.js";
import {
  deployEvents,
  type LabInfo,
  labDeployArgs,
  servedBy,
  setExampleSystems,
} from "./support/lab-deploy.js";

const LAB = "cn";
let work: string;
let nixRoot: string;
let lab: LabInfo;
let fleetFile: string;
let keyFile: string;
const env = () => ({ NIXSHIP_LAB_DIR: join(work, "labs") });

type Outcome = {
  status: string;
  phase?: string;
  message?: string;
  rolledBack?: boolean;
  reason?: string;
  pruned?: { ok: boolean; kept?: number[]; removed?: number[]; gc?: string; deletedPaths?: number };
};

function summaryOf(r: CliRun): Record<string, Outcome> {
  const summary = deployEvents(r).find((e) => e.type === "summary") as
    | { results: { host: string; outcome: Outcome }[] }
    | undefined;
  if (!summary) throw new Error(`no summary event; stderr:\n${r.stderr}\nstdout:\n${r.stdout}`);
  return Object.fromEntries(summary.results.map((x) => [x.host, x.outcome]));
}

/** `nixship deploy` of the lab from a deployer whose Nix is the current one. */
function deploy(...extra: string[]): Promise<CliRun> {
  return nixshipWithCurrentNix(nixRoot, labDeployArgs(lab, fleetFile, keyFile, ...extra), {
    env: env(),
  });
}

async function servedAll(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const h of lab.hosts) out[h.name] = await servedBy(lab, h.name);
  return out;
}

async function generations(): Promise<Record<string, number | undefined>> {
  const r = await nixship(["status", "--fleet", fleetFile, "--json"]);
  const rows = (JSON.parse(r.stdout) as { hosts: { host: string; generation?: number }[] }).hosts;
  return Object.fromEntries(rows.map((h) => [h.host, h.generation]));
}

function onHost(host: string, command: string): Promise<CliRun> {
  return run("ssh", ["-F", join(lab.dir, "ssh_config"), host, command]);
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-current-nix-lab-"));
  nixRoot = await makeCurrentNixRoot();
  const up = await nixship(["lab", "up", "3", "--name", LAB, "--nix", "current", "--json"], {
    env: env(),
  });
  expect(up.code, up.stderr).toBe(0);
  lab = JSON.parse(up.stdout) as LabInfo;
  fleetFile = join(lab.dir, "nixship.json");
  keyFile = join(lab.dir, "cache.sec");
});

afterAll(async () => {
  await nixship(["lab", "down", "--name", LAB], { env: env() });
  await rm(work, { recursive: true, force: true });
  await rm(nixRoot, { recursive: true, force: true });
});

describe("an ssh fleet on Nix 2.26, deployed from Nix 2.26", () => {
  it("the hosts run Nix 2.26 (every command of it), each in a /nix of its own", async () => {
    const r = await onHost("cn1", "nix --version; nix-store --version; nix-env --version");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split("\n")).toEqual([
      "nix (Nix) 2.26.3",
      "nix-store (Nix) 2.26.3",
      "nix-env (Nix) 2.26.3",
    ]);
  });

  it("doctor, run on a Nix 2.26 deployer, shows its Nix and each host's, and passes them", async () => {
    const r = await nixshipWithCurrentNix(
      nixRoot,
      ["doctor", "--fleet", fleetFile, "--key", keyFile, "--json"],
      { env: env() },
    );
    const report = JSON.parse(r.stdout) as {
      checks: { area: string; name: string; status: string; detail: string }[];
    };
    const nixChecks = report.checks.filter((c) => c.name === "nix" || c.area === "nix");
    expect(nixChecks.map((c) => [c.area, c.name, c.status, c.detail])).toEqual([
      ["nix", "nix", "ok", "nix (Nix) 2.26.3"],
      ["nix", "experimental features", "ok", "nix-command flakes"],
      ["nix", "build", "ok", "a trivial derivation builds"],
      // The test's Nix is told "substituters =": nothing to ask.
      ["nix", "substituters", "ok", "none: builds use only the local store"],
      ["host cn1", "nix", "ok", "nix-store (Nix) 2.26.3"],
      ["host cn2", "nix", "ok", "nix-store (Nix) 2.26.3"],
      ["host cn3", "nix", "ok", "nix-store (Nix) 2.26.3"],
    ]);
    expect(r.code, r.stdout).toBe(0);
  });

  it("deploys web-v1 from the example flake: substituted from the cache, signed, generation 1", async () => {
    const r = await deploy("--json");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/bug in nixship/);
    expect(await servedAll()).toEqual({ cn1: "web-v1", cn2: "web-v1", cn3: "web-v1" });
    expect(await generations()).toEqual({ cn1: 1, cn2: 1, cn3: 1 });
    const sigs = await onHost("cn2", "nix path-info --sigs /run/current-system");
    expect(sigs.code, sigs.stderr).toBe(0);
    expect(sigs.stdout).toContain(`nixship-lab-${LAB}-1:`);
    // Built by the deployer's Nix 2.26, in its own store, not the machine's.
    const system = (await onHost("cn2", "readlink /run/current-system")).stdout.trim();
    expect(system).toMatch(/-example-web-system-v1$/);
    await expect(stat(join(nixRoot, "store", basename(system)))).resolves.toBeDefined();
  });

  it("plans web-v2 for cn2: what its Nix 2.26 store lacks, counted by that store", async () => {
    await setExampleSystems(fleetFile, { cn2: "web-v2" });
    const planned = await nixshipWithCurrentNix(
      nixRoot,
      ["plan", "--fleet", fleetFile, "--on", "cn2", "--json"],
      { env: env() },
    );
    expect(planned.code, planned.stderr).toBe(0);
    const [row] = (
      JSON.parse(planned.stdout) as {
        hosts: {
          host: string;
          action: string;
          desired: string;
          transferBasis: string;
          transfer: { paths: number };
        }[];
      }
    ).hosts;
    expect(row).toMatchObject({ host: "cn2", action: "activate", transferBasis: "store" });
    expect(row?.desired).toMatch(/-example-web-system-v2$/);
    expect(row?.transfer.paths).toBeGreaterThan(0);
    const r = await deploy("--on", "cn2", "--json");
    expect(r.code, r.stderr).toBe(0);
    expect(await servedBy(lab, "cn2")).toBe("web-v2");
  });

  it("answers a plan's closure question on Nix 2.26 (activate.sh closure): the host store's own closure", async () => {
    const system = (await onHost("cn2", "readlink -f /run/current-system")).stdout.trim();
    expect(system).toMatch(/-example-web-system-v2$/);
    const asked = await run(
      "ssh",
      ["-F", join(lab.dir, "ssh_config"), "cn2", "sh -s -- closure --path", system],
      {
        input: Buffer.from(activateScript()),
      },
    );
    expect(asked.code, asked.stderr).toBe(0);
    const result = checkActivationResult(
      JSON.parse(asked.stdout.trim().split("\n").at(-1) as string),
    );
    if ("problem" in result) throw new Error(result.problem);
    const closure = hostClosure({ result, failure: "" } as never, system);
    expect(closure.kind).toBe("read");
    const requisites = (await onHost("cn2", `nix-store -qR ${system}`)).stdout
      .trim()
      .split("\n")
      .sort();
    if (closure.kind === "read") {
      expect(closure.nodes.map((n) => n.path).sort()).toEqual(requisites);
      const top = closure.nodes.find((n) => n.path === system);
      expect(top?.narSize).toBeGreaterThan(0);
      expect(top?.references.length).toBeGreaterThan(0);
    }
  });

  it("a canary that fails its health check rolls back, and the other host is never touched", async () => {
    await setExampleSystems(fleetFile, { cn1: "web-broken", cn3: "web-broken" });
    const r = await deploy("--on", "@web", "--max-failures", "0", "--json");
    expect(r.code).toBe(1);
    const outcomes = summaryOf(r);
    expect(outcomes.cn1).toMatchObject({ status: "failed", phase: "health", rolledBack: true });
    expect(outcomes.cn3).toMatchObject({ status: "skipped", reason: "not-started" });
    expect(await servedAll()).toEqual({ cn1: "web-v1", cn2: "web-v2", cn3: "web-v1" });
    const current = await onHost("cn1", "readlink /nix/var/nix/profiles/system");
    expect(current.stdout.trim()).toBe("system-1-link");
    // Nix 2.26's nix-env dropped the failed system's generation: no rollback can take it.
    const links = await onHost("cn1", "ls /nix/var/nix/profiles");
    expect(links.stdout.split("\n").filter((l) => /^system-\d+-link$/.test(l))).toEqual([
      "system-1-link",
    ]);
  });

  it("a manual rollback takes cn2 back to generation 1", async () => {
    const r = await nixship(["rollback", "--fleet", fleetFile, "--on", "cn2"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("cn2: rolled back to generation 1");
    expect(await servedBy(lab, "cn2")).toBe("web-v1");
    expect((await generations()).cn2).toBe(1);
  });

  it("copies the closure over SSH (Nix 2.26's nix copy to Nix 2.26's nix-store --serve) without a cache", async () => {
    const doc = JSON.parse(await readFile(fleetFile, "utf8")) as Record<string, unknown> & {
      hosts: Record<string, { system: string }>;
    };
    delete doc.cache;
    const noCache = join(work, "no-cache.json");
    await writeFile(noCache, JSON.stringify(doc));
    await setExampleSystems(noCache, { cn2: "web-v3" });
    const r = await nixshipWithCurrentNix(
      nixRoot,
      ["deploy", "--fleet", noCache, "--on", "cn2", "--json"],
      { env: env() },
    );
    expect(r.code, r.stderr).toBe(0);
    const phases = deployEvents(r)
      .filter((e) => e.type === "host-phase")
      .map((e) => e.phase);
    expect(phases).toContain("copy");
    expect(phases).not.toContain("realise");
    expect(await servedBy(lab, "cn2")).toBe("web-v3");
  });

  it("--keep-generations 1 prunes cn3's old generations and collects their garbage with Nix 2.26", async () => {
    // Generation 2 runs a system no other test deploys: a process of another lab host that
    // names a path (an activation of it under way) keeps it in this host's store too
    // (docs/development.md).
    for (const system of ["web-pruned-current", "web-v2"]) {
      await setExampleSystems(fleetFile, { cn3: system });
      const step = await deploy("--on", "cn3", "--json");
      expect(step.code, `${system}: ${step.stderr}`).toBe(0);
    }
    // Generation 4 runs, 3 is its rollback target and stays; 1 and 2 go.
    await setExampleSystems(fleetFile, { cn3: "web-v3" });
    const r = await deploy("--on", "cn3", "--keep-generations", "1", "--json");
    expect(r.code, r.stderr).toBe(0);
    const { pruned } = summaryOf(r).cn3 ?? {};
    expect(pruned).toMatchObject({ ok: true, kept: [3, 4], removed: [1, 2], gc: "done" });
    expect(pruned?.deletedPaths).toBeGreaterThan(0);
    const links = await onHost("cn3", "ls /nix/var/nix/profiles");
    expect(links.stdout.split("\n").filter((l) => /^system-\d+-link$/.test(l))).toEqual([
      "system-3-link",
      "system-4-link",
    ]);
    // web-pruned-current was collected: it ran only in generation 2.
    const left = await onHost(
      "cn3",
      "ls /nix/store | grep -c -- '-example-web-system-pruned-current$' || true",
    );
    expect(left.stdout.trim()).toBe("0");
    expect(await servedBy(lab, "cn3")).toBe("web-v3");
  });
});

describe("a pull agent on a Nix 2.26 host", () => {
  let agents: AgentLab;

  beforeAll(async () => {
    agents = await startAgentLab("cna", { hosts: 1, labUpArgs: ["--nix", "current"] });
  });
  afterAll(async () => {
    await agents?.down();
  });

  it("applies one release published from a Nix 2.26 deployer", async () => {
    await setAgentSystems(agents, "web-v2");
    const r = await nixshipWithCurrentNix(nixRoot, deployViaAgentArgs(agents), {
      env: agents.env,
    });
    expect(r.code, r.stderr).toBe(0);
    expect(agentSummaryOf(r).cna1).toMatchObject({ status: "activated" });
    expect(await agentServed(agents, "cna1")).toBe("web-v2");
    const record = await waitFor(agents, "cna1", (s) => s.state === "success");
    expect(record.current).toMatch(/-example-web-system-v2$/);
    const version = await run("ssh", [
      "-F",
      join(agents.dir, "ssh_config"),
      "cna1",
      "nix-store --version",
    ]);
    expect(version.stdout.trim()).toBe("nix-store (Nix) 2.26.3");
  });
});
