// Interrupts and unreachable hosts, end to end on a lab of three hosts with the
// real Nix and sshd: SIGINT to `nixship deploy --json` during a wave ends with exit 130, the
// summary, and every host on a consistent system (the one it ran, or the new one confirmed);
// a host whose sshd is gone counts towards --max-failures, or is listed under
// --skip-unreachable.
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nixship, run } from "../support/cli.js";
import { interruptDeploy } from "./support/interrupt-deploy.js";
import { deployEvents, labDeployArgs, servedBy, setExampleSystems } from "./support/lab-deploy.js";
import { rolloutFiles } from "./support/rollout-records.js";

const LAB = "di";
let work: string;
let labsDir: string;
let lab: { number: number; dir: string; hosts: { name: string; address: string }[] };
let fleetFile: string;
let keyFile: string;
const env = () => ({ NIXSHIP_LAB_DIR: labsDir });

type FleetDoc = {
  hosts: Record<string, { system: string }>;
  policy: {
    health: { http: unknown[]; commands?: unknown[] };
    bake?: { seconds: number; interval: number };
  };
  [k: string]: unknown;
};

async function editFleet(edit: (doc: FleetDoc) => void): Promise<void> {
  const doc = JSON.parse(await readFile(fleetFile, "utf8")) as FleetDoc;
  edit(doc);
  await writeFile(fleetFile, JSON.stringify(doc, null, 2));
}

async function setSystems(systems: Record<string, string>): Promise<void> {
  await setExampleSystems(fleetFile, systems);
}

function deployArgs(...extra: string[]): string[] {
  return labDeployArgs(lab, fleetFile, keyFile, ...extra);
}

/** The name the host's web service answers with (its system's name), or "(nothing)". */
function served(host: string): Promise<string> {
  return servedBy(lab, host);
}

interface StatusRow {
  host: string;
  reachable: boolean;
  current?: string;
  profile?: string;
  generation?: number;
}
async function status(): Promise<Map<string, StatusRow>> {
  const r = await nixship(["status", "--fleet", fleetFile, "--json"]);
  const rows = (JSON.parse(r.stdout) as { hosts: StatusRow[] }).hosts;
  return new Map(rows.map((row) => [row.host, row]));
}

type Event = { type: string; [k: string]: unknown };
interface Outcome {
  status: string;
  phase?: string;
  message?: string;
  rolledBack?: boolean;
  reason?: string;
}
interface Summary {
  ok: boolean;
  results: { host: string; desired: string; outcome: Outcome }[];
}
interface Plan {
  hosts: { host: string; current?: string; desired: string; action: string }[];
}

function events(stdout: string): Event[] {
  return deployEvents(stdout);
}

/** What the deploy told of HOST, event by event: for the message of a failed expectation. */
function hostLog(list: readonly Event[], host: string): string {
  return list
    .filter((e) => e.host === host)
    .map((e) => JSON.stringify(e))
    .join("\n");
}

function only<T>(list: readonly Event[], type: string): T {
  const found = list.filter((e) => e.type === type);
  if (found.length !== 1) throw new Error(`expected one ${type} event, got ${found.length}`);
  return found[0] as T;
}

/** A system's name (what its service answers with), read from the deployer's store. */
async function systemName(path: string): Promise<string> {
  return (await readFile(join(path, "nixos-version"), "utf8")).trim();
}

/**
 * Every host runs, boots next and serves either the system it ran before the deploy or, if
 * the deploy says it was activated, its new one: nothing in between.
 */
async function expectConsistent(plan: Plan, summary: Summary): Promise<void> {
  const rows = await status();
  for (const p of plan.hosts) {
    const outcome = summary.results.find((r) => r.host === p.host)?.outcome;
    const expected = outcome?.status === "activated" ? p.desired : p.current;
    if (expected === undefined) throw new Error(`${p.host}: ran nothing before the deploy`);
    const row = rows.get(p.host);
    expect(row, p.host).toMatchObject({ reachable: true, current: expected, profile: expected });
    expect(await served(p.host), p.host).toBe(await systemName(expected));
  }
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-deploy-interrupt-"));
  labsDir = join(work, "labs");
  const up = await nixship(["lab", "up", "3", "--name", LAB, "--json"], { env: env() });
  expect(up.code, up.stderr).toBe(0);
  lab = JSON.parse(up.stdout) as typeof lab;
  fleetFile = join(lab.dir, "nixship.json");
  keyFile = join(lab.dir, "cache.sec");
  // Every host runs web-v1 to start with.
  await setSystems({ di1: "web-v1", di2: "web-v1", di3: "web-v1" });
  const first = await nixship(deployArgs());
  expect(first.code, first.stderr).toBe(0);
});

afterAll(async () => {
  if (labsDir !== undefined) await nixship(["lab", "down", "--name", LAB], { env: env() });
  if (work !== undefined) await rm(work, { recursive: true, force: true });
});

describe("deploy, interrupted", () => {
  it("SIGINT during a wave: exit 130, the summary, the hosts in flight back on their old system, no new wave", async () => {
    await setSystems({ di1: "web-v2", di2: "web-v2", di3: "web-v2" });
    // A check that never passes keeps the wave's hosts in flight until they are aborted.
    const saved = await readFile(fleetFile, "utf8");
    await editFleet((doc) => {
      doc.policy.health.http = [{ url: "http://{address}/no-such-page", timeout: 90 }];
    });
    try {
      // Once both hosts of the wave switch (under load one may still realise when the other
      // switches; an abort then stops it before it changes anything, which is another test's).
      const switching = new Set<unknown>();
      const r = await interruptDeploy(
        deployArgs("--canary", "0", "--parallel", "2", "--json"),
        env(),
        (e) => e.type === "host-phase" && e.phase === "switch" && switching.add(e.host).size === 2,
      );
      expect(r.code, r.stderr).toBe(130);
      expect(r.stderr).toMatch(
        /interrupted \(SIGINT\): starting no new host; aborting \d hosts? in flight/,
      );
      expect(r.stderr).not.toContain("interrupted again");
      const all = events(r.stdout);
      expect(all.at(-1)?.type).toBe("summary");
      const summary = only<Summary>(all, "summary");
      const plan = only<{ plan: Plan }>(all, "plan").plan;
      expect(only<Event>(all, "stopped")).toMatchObject({
        reason: "interrupted (SIGINT)",
        notStarted: ["di3"],
      });
      expect(all.filter((e) => e.type === "wave-start")).toHaveLength(1);
      const outcomes = Object.fromEntries(summary.results.map((x) => [x.host, x.outcome]));
      // Never healthy, so never confirmed: aborted, and back on web-v1.
      expect(outcomes.di1, hostLog(all, "di1")).toMatchObject({
        status: "failed",
        rolledBack: true,
      });
      expect(outcomes.di2, hostLog(all, "di2")).toMatchObject({
        status: "failed",
        rolledBack: true,
      });
      expect(outcomes.di3).toEqual({ status: "skipped", reason: "not-started" });
      await expectConsistent(plan, summary);
      expect(await served("di1")).toBe("web-v1");
    } finally {
      await writeFile(fleetFile, saved);
    }
  }, 300_000);

  it("SIGINT while a switch hangs (web-hang): the switch is stopped and the host goes back, exit 130", async () => {
    await setSystems({ di2: "web-hang" });
    try {
      const r = await interruptDeploy(
        deployArgs("--on", "di2", "--json"),
        env(),
        (e) => e.type === "host-phase" && e.host === "di2" && e.phase === "switch",
      );
      expect(r.code, r.stderr).toBe(130);
      expect(r.stderr).toContain(
        "interrupted (SIGINT): starting no new host; aborting 1 host in flight (di2)",
      );
      const all = events(r.stdout);
      expect(all.at(-1)?.type).toBe("summary");
      const summary = only<Summary>(all, "summary");
      expect(only<Event>(all, "stopped")).toMatchObject({
        reason: "interrupted (SIGINT)",
        notStarted: [],
      });
      expect(summary.results, hostLog(all, "di2")).toEqual([
        expect.objectContaining({
          host: "di2",
          outcome: expect.objectContaining({ status: "failed", phase: "switch", rolledBack: true }),
        }),
      ]);
      await expectConsistent(only<{ plan: Plan }>(all, "plan").plan, summary);
      expect(await served("di2")).toBe("web-v1");
    } finally {
      await setSystems({ di2: "web-v2" });
    }
  }, 300_000);

  it("SIGINT during the host's command checks: the host goes back, and its failure names the health phase", async () => {
    const saved = await readFile(fleetFile, "utf8");
    await setSystems({ di2: "web-v3" });
    // A command check that never passes keeps the host in its health phase for its timeout.
    await editFleet((doc) => {
      doc.policy.health.commands = [{ run: "false", timeout: 60 }];
    });
    try {
      const r = await interruptDeploy(
        deployArgs("--on", "di2", "--json"),
        env(),
        (e) => e.type === "host-phase" && e.host === "di2" && e.phase === "health",
      );
      expect(r.code, r.stderr).toBe(130);
      const summary = only<Summary>(events(r.stdout), "summary");
      expect(summary.results).toEqual([
        expect.objectContaining({
          host: "di2",
          outcome: expect.objectContaining({ status: "failed", phase: "health", rolledBack: true }),
        }),
      ]);
      expect(await served("di2")).toBe("web-v1");
    } finally {
      await writeFile(fleetFile, saved);
    }
  }, 300_000);

  it("a second SIGINT while a switch hangs exits at once, and the rollout's record says interrupted, not running", async () => {
    await setSystems({ di2: "web-hang" });
    try {
      const r = await interruptDeploy(
        deployArgs("--on", "di2", "--json", "--activation-timeout", "10"),
        env(),
        (e) => e.type === "host-phase" && e.host === "di2" && e.phase === "switch",
        "SIGINT",
        // Soon after the first: well before the host answers the abort (a connection, a switch
        // back), so that the deploy is still at work when the second comes.
        50,
      );
      expect(r.code, r.stderr).toBe(130);
      expect(r.stderr).toContain("interrupted again (SIGINT)");
      const cacheUrl = (JSON.parse(await readFile(fleetFile, "utf8")) as { cache: { url: string } })
        .cache.url;
      const record = (await rolloutFiles(cacheUrl))[0];
      expect(record, JSON.stringify(record)).toMatchObject({ state: "interrupted" });
      // di2 as the deploy last knew it: still activating, or back already if its abort was
      // answered between the two interrupts.
      const [di2] = record?.waves.flatMap((w) => w.hosts) ?? [];
      expect(di2?.host).toBe("di2");
      expect(["activating", "rolled-back"]).toContain(di2?.state);
      // The host ends its activation by itself: its switch is stopped at its timeout (10 s),
      // and it goes back (bounded wait).
      let back = await served("di2");
      for (let i = 0; i < 60 && back !== "web-v1"; i++) {
        await new Promise((resolve) => setTimeout(resolve, 1000));
        back = await served("di2");
      }
      expect(back).toBe("web-v1");
    } finally {
      await setSystems({ di2: "web-v2" });
    }
  }, 300_000);

  it("SIGTERM before the rollout: exit 130 and no host changed", async () => {
    const before = await status();
    const r = await interruptDeploy(
      deployArgs("--json"),
      env(),
      (e) => e.type === "build-start",
      "SIGTERM",
    );
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toContain("interrupted (SIGTERM): starting no new host and stopping");
    const all = events(r.stdout);
    expect(all.some((e) => e.type === "wave-start")).toBe(false);
    const last = all.at(-1) as Event & { error?: { code: string; message: string } };
    // Mostly the build is still running: the deploy ends there, as an error. Should the
    // signal land after the plan, the rollout starts no wave and ends with the summary.
    if (last.type === "summary") {
      expect(only<Event>(all, "stopped")).toMatchObject({ reason: "interrupted (SIGTERM)" });
    } else {
      expect(last.error).toEqual({
        code: "interrupted",
        message: "interrupted (SIGTERM) before the rollout started: no host was changed",
      });
    }
    expect(await status()).toEqual(before);
  }, 300_000);

  it("the next deploy works, and the text summary says which system each host runs", async () => {
    const r = await nixship(deployArgs("--on", "di1"));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/di1\s+activated\s+example-web-system-v2/);
    // How to undo it, as this deploy was given its fleet and key.
    expect(r.stderr).toMatch(
      new RegExp(
        `^rollout [0-9a-f]{12} \\(to undo it: nixship rollback --rollout [0-9a-f]{12} --fleet ${fleetFile} --key ${keyFile}\\)$`,
        "m",
      ),
    );
    expect(await served("di1")).toBe("web-v2");
  });
});

describe("deploy with a host that cannot be reached", () => {
  it("a host whose sshd is gone fails the deploy under --max-failures 0: no other host starts", async () => {
    // di3's sshd and the connections it serves (the deployer's shared one among them) go away.
    const state = JSON.parse(await readFile(join(lab.dir, "lab.json"), "utf8")) as {
      hosts: { name: string; pid: number }[];
    };
    const pid = state.hosts.find((h) => h.name === "di3")?.pid;
    if (pid === undefined) throw new Error("no di3 in lab.json");
    await run("pkill", ["-KILL", "-P", String(pid)]);
    process.kill(pid, "SIGKILL");

    await setSystems({ di1: "web-v3", di2: "web-v3", di3: "web-v3" });
    const r = await nixship(deployArgs("--max-failures", "0", "--json"));
    expect(r.code, r.stderr).toBe(1);
    const all = events(r.stdout);
    const outcomes = Object.fromEntries(
      only<Summary>(all, "summary").results.map((x) => [x.host, x.outcome]),
    );
    expect(outcomes).toMatchObject({
      di1: { status: "skipped", reason: "not-started" },
      di2: { status: "skipped", reason: "not-started" },
      di3: { status: "failed", phase: "connect", rolledBack: false },
    });
    expect(only<Event>(all, "stopped")).toMatchObject({
      reason: "1 host(s) unreachable, more than --max-failures 0",
      notStarted: ["di1", "di2"],
    });
    expect(all.some((e) => e.type === "wave-start")).toBe(false);
    expect(await served("di1")).toBe("web-v2");
    expect(await served("di2")).toBe("web-v1");
  });

  it("--skip-unreachable deploys the others, exits 0, and lists the host in the summary", async () => {
    const text = await nixship(deployArgs("--skip-unreachable"));
    expect(text.code, text.stderr).toBe(0);
    expect(text.stderr).toMatch(/di3\s+unreachable\s+/);
    expect(text.stderr).toContain("2 activated, 0 failed, 1 unreachable");
    expect(await served("di1")).toBe("web-v3");
    expect(await served("di2")).toBe("web-v3");

    const json = await nixship(deployArgs("--skip-unreachable", "--json"));
    expect(json.code, json.stderr).toBe(0);
    const summary = only<Summary>(events(json.stdout), "summary");
    expect(summary.ok).toBe(true);
    const di3 = summary.results.find((x) => x.host === "di3")?.outcome;
    expect(di3).toMatchObject({ status: "skipped", reason: "unreachable" });
    expect(di3?.message).toMatch(/ssh|connect|refused/i);
  });
  it("SIGINT during the last wave's bake: the hosts keep their system, exit 130, and the summary is no success", async () => {
    // After the tests above: di1 and di2 run web-v3, di3's sshd is gone.
    await setSystems({ di1: "web-v1", di2: "web-v1", di3: "web-v1" });
    const saved = await readFile(fleetFile, "utf8");
    await editFleet((doc) => {
      doc.policy.bake = { seconds: 120, interval: 10 };
    });
    try {
      const r = await interruptDeploy(
        deployArgs("--on", "di1,di2", "--canary", "0", "--parallel", "2", "--json"),
        env(),
        (e) => e.type === "bake-start",
      );
      expect(r.code, r.stderr).toBe(130);
      const summary = only<Summary>(events(r.stdout), "summary");
      expect(summary.results.map((x) => x.outcome.status)).toEqual(["activated", "activated"]);
      expect(summary.ok).toBe(false);
      expect(await served("di1")).toBe("web-v1");
    } finally {
      await writeFile(fleetFile, saved);
    }
  }, 300_000);
});
