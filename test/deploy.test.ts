// Deploys end to end on a lab of three hosts with the real Nix and sshd:
// deploys, selection, canary and failure budget, health-check and switch failures rolled
// back, magic rollback when the deployer vanishes, manual rollback, host key checking, hosts
// substituting from our cache, and clear errors for bad fleet files and selectors.
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { type AddressInfo, connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CliRun, NIXSHIP_BIN, nixship, run } from "../support/cli.js";
import { logCommandCalls } from "./support/command-log.js";
import { EXAMPLES_DIR } from "./support/example-systems.js";
import { deployEvents, labDeployArgs, servedBy, setExampleSystems } from "./support/lab-deploy.js";

const LAB = "dp";
let work: string;
let labsDir: string;
let lab: { number: number; dir: string; hosts: { name: string; address: string }[] };
let fleetFile: string;
let keyFile: string;
const env = () => ({ NIXSHIP_LAB_DIR: labsDir });
/** An ssh that runs activate.sh's rollback (its arguments shell-quoted). */
const ROLLBACK_CALL = /sh -s -- '?rollback\b/;

type FleetDoc = { hosts: Record<string, { system: string; tags: string[] }>; [k: string]: unknown };

async function setSystems(systems: Record<string, string>): Promise<void> {
  await setExampleSystems(fleetFile, systems);
}

function deployArgs(...extra: string[]): string[] {
  return labDeployArgs(lab, fleetFile, keyFile, ...extra);
}

function served(host: string): Promise<string> {
  return servedBy(lab, host);
}

async function servedAll(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const h of lab.hosts) out[h.name] = await served(h.name);
  return out;
}

interface StatusRow {
  host: string;
  reachable: boolean;
  current?: string;
  generation?: number;
}
async function status(...extra: string[]): Promise<StatusRow[]> {
  const r = await nixship(["status", "--fleet", fleetFile, "--json", ...extra]);
  return (JSON.parse(r.stdout) as { hosts: StatusRow[] }).hosts;
}

function desiredOf(planned: CliRun, host: string): string {
  const plan = JSON.parse(planned.stdout) as { hosts: { host: string; desired: string }[] };
  const desired = plan.hosts.find((h) => h.host === host)?.desired;
  if (desired === undefined) throw new Error(`no ${host} in the plan:\n${planned.stdout}`);
  return desired;
}

function events(r: CliRun): { type: string; [k: string]: unknown }[] {
  return deployEvents(r);
}

function summaryOf(r: CliRun) {
  const summary = events(r).find((e) => e.type === "summary") as
    | {
        ok: boolean;
        results: {
          host: string;
          outcome: {
            status: string;
            phase?: string;
            message?: string;
            rolledBack?: boolean;
            reason?: string;
          };
        }[];
      }
    | undefined;
  if (!summary) throw new Error(`no summary event; stderr:\n${r.stderr}\nstdout:\n${r.stdout}`);
  return Object.fromEntries(summary.results.map((x) => [x.host, x.outcome]));
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-deploy-"));
  labsDir = join(work, "labs");
  const up = await nixship(["lab", "up", "3", "--name", LAB, "--json"], { env: env() });
  expect(up.code, up.stderr).toBe(0);
  lab = JSON.parse(up.stdout) as typeof lab;
  fleetFile = join(lab.dir, "nixship.json");
  keyFile = join(lab.dir, "cache.sec");
});

afterAll(async () => {
  await nixship(["lab", "down", "--name", LAB], { env: env() });
  await rm(work, { recursive: true, force: true });
});

describe("deploy over ssh to a lab fleet", () => {
  it("1. deploys web-v1 to every host: each serves v1 and has a new profile generation", async () => {
    const r = await nixship(deployArgs());
    expect(r.code, r.stderr).toBe(0);
    expect(await servedAll()).toEqual({ dp1: "web-v1", dp2: "web-v1", dp3: "web-v1" });
    const rows = await status();
    expect(rows.map((s) => [s.host, s.generation])).toEqual([
      ["dp1", 1],
      ["dp2", 1],
      ["dp3", 1],
    ]);
    // The summary table names every host.
    expect(r.stderr).toMatch(/dp1\s+activated/);
    expect(r.stderr).toContain("3 activated, 0 failed");
  });

  it("8. hosts got their paths from our cache, signed by our key, not from the deployer's store", async () => {
    const r = await run("ssh", [
      "-F",
      join(lab.dir, "ssh_config"),
      "dp1",
      "nix path-info --sigs /run/current-system",
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`nixship-lab-${LAB}-1:`);
  });

  it("2. deploys web-v2 to @web only, and the plan said exactly that", async () => {
    await setSystems({ dp1: "web-v2", dp3: "web-v2" });
    const planned = await nixship(["plan", "--fleet", fleetFile, "--on", "@web", "--json"]);
    expect(planned.code, planned.stderr).toBe(0);
    const plan = JSON.parse(planned.stdout) as {
      hosts: { host: string; action: string; desired: string }[];
    };
    expect(plan.hosts.map((h) => [h.host, h.action])).toEqual([
      ["dp1", "activate"],
      ["dp3", "activate"],
    ]);
    expect(plan.hosts.every((h) => h.desired.endsWith("-example-web-system-v2"))).toBe(true);
    const r = await nixship(deployArgs("--on", "@web", "--json"));
    expect(r.code, r.stderr).toBe(0);
    const outcomes = summaryOf(r);
    expect(Object.keys(outcomes)).toEqual(["dp1", "dp3"]);
    expect(await servedAll()).toEqual({ dp1: "web-v2", dp2: "web-v1", dp3: "web-v2" });
    // A second deploy changes nothing: every selected host is up to date.
    const again = await nixship(deployArgs("--on", "@web", "--json"));
    expect(again.code).toBe(0);
    expect(Object.values(summaryOf(again)).map((o) => o.status)).toEqual(["skipped", "skipped"]);
  });

  it("3. web-broken fails its health check on the canary, which rolls back; --max-failures 0 stops the rest", async () => {
    await setSystems({ dp1: "web-broken", dp3: "web-broken" });
    const r = await nixship(deployArgs("--on", "@web", "--max-failures", "0", "--json"));
    expect(r.code).toBe(1);
    const outcomes = summaryOf(r);
    expect(outcomes.dp1).toMatchObject({ status: "failed", phase: "health", rolledBack: true });
    expect(outcomes.dp1?.message).toContain("/health");
    // The HTTP check's failure carries the start of the answer's body.
    expect(outcomes.dp1?.message).toContain('got status 500: "unhealthy"');
    expect(outcomes.dp3).toMatchObject({ status: "skipped", reason: "not-started" });
    expect(events(r).some((e) => e.type === "stopped")).toBe(true);
    expect(await servedAll()).toEqual({ dp1: "web-v2", dp2: "web-v1", dp3: "web-v2" });
  });

  it("3b. a command check that fails: its exit code and output are in the message, --json and human", async () => {
    // web-broken's /health answers 500, which curl -f turns into exit code 22.
    const doc = JSON.parse(await readFile(fleetFile, "utf8")) as FleetDoc;
    const check = "curl -fsS --max-time 2 http://127.0.0.1/health";
    doc.policy = { health: { http: [], commands: [{ run: check, timeout: 3 }] } };
    const commandFleet = join(work, "command-check.json");
    await writeFile(commandFleet, JSON.stringify(doc));
    const expected =
      /health check failed: curl -fsS --max-time 2 http:\/\/127\.0\.0\.1\/health: exit code 22 \(\d+ attempts? in 3s\); output: "curl: \(22\) The requested URL returned error: 500"/;
    const json = await nixship(labDeployArgs(lab, commandFleet, keyFile, "--on", "dp1", "--json"));
    expect(json.code).toBe(1);
    const outcome = summaryOf(json).dp1;
    expect(outcome).toMatchObject({ status: "failed", phase: "health", rolledBack: true });
    expect(outcome?.message).toMatch(expected);
    const human = await nixship(labDeployArgs(lab, commandFleet, keyFile, "--on", "dp1"));
    expect(human.code).toBe(1);
    expect(human.stderr).toMatch(
      new RegExp(`dp1: FAILED in health: ${expected.source}; rolled back`),
    );
    expect(await served("dp1")).toBe("web-v2");
  });

  it("4. web-failing's switch exits 4: the host rolls back and the failure is reported clearly", async () => {
    await setSystems({ dp1: "web-failing", dp3: "web-failing" });
    const r = await nixship(deployArgs("--on", "dp3", "--json"));
    expect(r.code).toBe(1);
    const outcome = summaryOf(r).dp3;
    expect(outcome).toMatchObject({ status: "failed", phase: "switch", rolledBack: true });
    expect(outcome?.message).toContain("switch-to-configuration switch exited with 4");
    expect(await served("dp3")).toBe("web-v2");
    expect((await status("--on", "dp3"))[0]?.generation).toBe(2);
  });

  it("5. a deployer that vanishes during the confirmation window: the host rolls itself back", async () => {
    await setSystems({ dp1: "web-v3" });
    // A health check that never passes keeps the deployer waiting inside the window.
    const doc = JSON.parse(await readFile(fleetFile, "utf8")) as FleetDoc & {
      policy: { health: { http: { url: string; timeout: number }[] } };
    };
    const saved = JSON.stringify(doc);
    doc.policy.health.http = [{ url: "http://{address}/no-such-page", timeout: 60 } as never];
    await writeFile(fleetFile, JSON.stringify(doc));
    const child = spawn(
      process.execPath,
      [NIXSHIP_BIN, ...deployArgs("--on", "dp1", "--confirm-timeout", "4", "--json")],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let out = "";
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no health phase in time:\n${out}`)), 60_000);
      child.stdout.setEncoding("utf8").on("data", (d: string) => {
        out += d;
        if (/"type":"host-phase","host":"dp1","phase":"health"/.test(out)) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    expect(await served("dp1")).toBe("web-v3");
    child.kill("SIGKILL");
    await writeFile(fleetFile, saved);
    const deadline = Date.now() + 20_000;
    while ((await served("dp1")) !== "web-v2" && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    expect(await served("dp1")).toBe("web-v2");
    expect((await status("--on", "dp1"))[0]?.generation).toBe(2);
  });

  it("6. nixship rollback returns a host to its previous generation, and status shows it, interrupted or not", async () => {
    const before = (await status("--on", "dp3"))[0];
    expect(before?.generation).toBe(2);
    // Interrupted once while the host rolls back: it waits for the host, and writes its record.
    const ssh = await logCommandCalls("ssh");
    try {
      const child = spawn(
        process.execPath,
        [NIXSHIP_BIN, "rollback", "--fleet", fleetFile, "--on", "dp3"],
        {
          stdio: ["ignore", "pipe", "pipe"],
          env: { ...process.env, PATH: ssh.path },
        },
      );
      let stdout = "";
      let stderr = "";
      child.stdout.setEncoding("utf8").on("data", (d: string) => {
        stdout += d;
      });
      child.stderr.setEncoding("utf8").on("data", (d: string) => {
        stderr += d;
      });
      const code = new Promise<number | null>((resolve) => child.on("close", resolve));
      // The host's rollback has started once an ssh names it (bounded: 60 s).
      const rollingBack = async () => (await ssh.calls()).some((c) => ROLLBACK_CALL.test(c));
      for (let i = 0; i < 600 && !(await rollingBack()); i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(await rollingBack(), (await ssh.calls()).join("\n")).toBe(true);
      child.kill("SIGINT");
      expect(await code, stderr).toBe(130);
      expect(stderr).toContain("rollback: interrupted; the hosts' rollbacks finish on their own");
      expect(stdout).toContain("dp3: rolled back to generation 1");
    } finally {
      await ssh.remove();
    }
    expect(await served("dp3")).toBe("web-v1");
    expect((await status("--on", "dp3"))[0]).toMatchObject({ generation: 1 });
    const human = await nixship(["status", "--fleet", fleetFile, "--on", "dp3"]);
    expect(human.stdout).toMatch(/dp3\s+ssh\s+example-web-system-v1\s+1\s+in-step/);
  });

  it("plan counts what each host's store lacks: after a rollback, going forward again moves nothing", async () => {
    // dp3 went from v2 back to v1 (test 6): v2 is still in its store. dp2 never had v2.
    await setSystems({ dp2: "web-v2", dp3: "web-v2" });
    const planned = await nixship(["plan", "--fleet", fleetFile, "--on", "dp2,dp3", "--json"]);
    expect(planned.code, planned.stderr).toBe(0);
    type Row = { host: string; transfer: { paths: number; bytes: number }; transferBasis: string };
    const rows = (JSON.parse(planned.stdout) as { hosts: Row[] }).hosts;
    const byHost = Object.fromEntries(rows.map((h) => [h.host, h]));
    expect(byHost.dp3).toMatchObject({ transfer: { paths: 0, bytes: 0 }, transferBasis: "store" });
    expect(byHost.dp2?.transferBasis).toBe("store");
    // What dp2 lacks, asked of its store directly: the plan counted exactly those paths.
    const closure = await run("nix-store", ["-qR", desiredOf(planned, "dp2")]);
    const lacks = await run("ssh", [
      "-F",
      join(lab.dir, "ssh_config"),
      "dp2",
      `nix-store --check-validity --print-invalid ${closure.stdout.trim().split("\n").join(" ")}`,
    ]);
    expect(lacks.code, lacks.stderr).toBe(0);
    const lacking = lacks.stdout.trim().split("\n").filter(Boolean);
    expect(lacking.length).toBeGreaterThan(0);
    expect(byHost.dp2?.transfer.paths).toBe(lacking.length);
    const human = await nixship(["plan", "--fleet", fleetFile, "--on", "dp3"]);
    expect(human.stdout).toMatch(/dp3\s.*switch\s+0 paths, 0 B/);
    expect(human.stdout).not.toContain("at most");
    await setSystems({ dp2: "web-v1", dp3: "web-failing" });
  });

  it("7. refuses a host whose key does not match known_hosts, and says why", async () => {
    const known = await readFile(join(lab.dir, "known_hosts"), "utf8");
    const lines = known.trim().split("\n");
    const forged = join(work, "forged_known_hosts");
    // dp2's entry carries dp1's key.
    const key1 = lines[0]?.split(" ").slice(1).join(" ");
    await writeFile(forged, `${lines[0]}\n${lines[1]?.split(" ")[0]} ${key1}\n${lines[2]}\n`);
    const doc = JSON.parse(await readFile(fleetFile, "utf8")) as FleetDoc & {
      ssh: { knownHosts: string };
    };
    doc.ssh.knownHosts = forged;
    const forgedFleet = join(work, "forged.json");
    await writeFile(forgedFleet, JSON.stringify(doc));
    const r = await nixship([
      "deploy",
      "--fleet",
      forgedFleet,
      "--key",
      keyFile,
      "--serve-cache",
      `10.231.${lab.number}.1:0`,
      "--on",
      "dp2",
      "--json",
    ]);
    expect(r.code).toBe(1);
    const outcome = summaryOf(r).dp2;
    expect(outcome).toMatchObject({ status: "failed", phase: "connect" });
    expect(outcome?.message).toMatch(
      /Host key verification failed|HOST IDENTIFICATION HAS CHANGED/,
    );
    expect(await served("dp2")).toBe("web-v1");
    // status says the same, host by host, and exits 1.
    const st = await nixship(["status", "--fleet", forgedFleet]);
    expect(st.code).toBe(1);
    expect(st.stdout).toMatch(
      /dp2\s+ssh\s+-\s+-\s+unreachable\s+ssh: Host key verification failed/,
    );
    expect(st.stdout).toMatch(/dp1\s+ssh\s+example-web-system/);
  });

  it("copies the closure over SSH (nix copy) when the fleet has no cache", async () => {
    const doc = JSON.parse(await readFile(fleetFile, "utf8")) as FleetDoc;
    delete (doc as Record<string, unknown>).cache;
    (doc.hosts.dp2 as { system: string }).system = `path:${EXAMPLES_DIR}#web-v3`;
    const noCache = join(work, "no-cache.json");
    await writeFile(noCache, JSON.stringify(doc));
    const r = await nixship(["deploy", "--fleet", noCache, "--on", "dp2", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const phases = events(r)
      .filter((e) => e.type === "host-phase")
      .map((e) => e.phase);
    expect(phases).toContain("copy");
    expect(phases).not.toContain("realise");
    expect(await served("dp2")).toBe("web-v3");
  });

  it("honours --action: dry-activate changes nothing, test runs without a generation, boot only adds one", async () => {
    await setSystems({ dp3: "web-v3" });
    const before = (await status("--on", "dp3"))[0];
    const dry = await nixship(deployArgs("--on", "dp3", "--action", "dry-activate", "--json"));
    expect(dry.code, dry.stderr).toBe(0);
    expect(await served("dp3")).toBe("web-v1");
    expect((await status("--on", "dp3"))[0]?.generation).toBe(before?.generation);
    // Nor does it write the host's record: it asked nothing of it.
    const stored = (await status("--on", "dp3", "--stored"))[0] as StatusRow & { desired?: string };
    expect(stored.desired).toBe(before?.current);

    const tested = await nixship(deployArgs("--on", "dp3", "--action", "test", "--json"));
    expect(tested.code, tested.stderr).toBe(0);
    expect(await served("dp3")).toBe("web-v3");
    expect((await status("--on", "dp3"))[0]?.generation).toBe(before?.generation);

    await setSystems({ dp3: "web-v2" });
    const boot = await nixship(deployArgs("--on", "dp3", "--action", "boot", "--json"));
    expect(boot.code, boot.stderr).toBe(0);
    // The running system is untouched; the profile (what boots next) has a new generation.
    expect(await served("dp3")).toBe("web-v3");
    const after = (await status("--on", "dp3"))[0] as StatusRow & { profile?: string };
    expect(after.generation).toBeGreaterThan(before?.generation ?? 0);
    expect(after.profile).toMatch(/-example-web-system-v2$/);
    expect(after.current).toMatch(/-example-web-system-v3$/);
    const human = await nixship(["status", "--fleet", fleetFile, "--on", "dp3"]);
    expect(human.stdout).toContain("boots next: example-web-system-v2");
    // Not in step, its boot unconfirmed, live or read from its record (docs/reboots.md).
    expect(after).toMatchObject({ inStep: false, hostState: "unconfirmed" });
    const record = await nixship(["status", "--fleet", fleetFile, "--on", "dp3", "--stored"]);
    expect(record.code).toBe(1);
    // Its record names no generation: it runs web-v3 from --action test, which made none.
    expect(record.stdout).toMatch(
      /dp3\s+ssh\s+\S+-v3\s+-\s+unconfirmed\s+reboot into example-web-system-v2 unconfirmed since /,
    );
  });

  it("9. bad fleet files and selectors get clear errors (exit 2)", async () => {
    const selector = await nixship(["plan", "--fleet", fleetFile, "--on", "@nosuch"]);
    expect(selector.code).toBe(2);
    expect(selector.stderr).toMatch(/@nosuch/);
    const doc = JSON.parse(await readFile(fleetFile, "utf8")) as FleetDoc;
    (doc.hosts.dp1 as unknown as Record<string, unknown>).tgas = ["web"];
    const bad = join(work, "bad.json");
    await writeFile(bad, JSON.stringify(doc));
    const r = await nixship(["plan", "--fleet", bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("hosts.dp1.tgas");
    const missing = await nixship(["deploy", "--fleet", join(work, "absent.json")]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("no such file");
    const flags = await nixship(deployArgs("--parallel", "0"));
    expect(flags.code).toBe(2);
    expect(flags.stderr).toContain("--parallel");
  });

  it("--keep-generations 2: after four deploys the host keeps two generations, older systems leave its store, rollback still works", async () => {
    const valid = async (path: string) =>
      (
        await run("ssh", [
          "-F",
          join(lab.dir, "ssh_config"),
          "dp1",
          `nix-store --check-validity ${path}`,
        ])
      ).code === 0;
    let last: CliRun | undefined;
    const paths: Record<string, string> = {};
    // The generation removed runs a system no other test deploys: another lab host's process
    // naming it would keep it in this host's store (docs/development.md).
    for (const system of ["web-v3", "web-pruned", "web-v2", "web-v3"]) {
      await setSystems({ dp1: system });
      last = await nixship(deployArgs("--on", "dp1", "--keep-generations", "2", "--json"));
      expect(last.code, last.stderr).toBe(0);
      paths[system] = (
        events(last).find((e) => e.type === "plan") as unknown as {
          plan: { hosts: { desired: string }[] };
        }
      ).plan.hosts[0]?.desired as string;
    }
    const row = (await status("--on", "dp1"))[0] as StatusRow & { generations?: unknown };
    const newest = row.generation as number;
    const outcome = summaryOf(last as CliRun).dp1 as unknown as { pruned: Record<string, unknown> };
    expect(outcome.pruned).toMatchObject({
      ok: true,
      kept: [newest - 1, newest],
      removed: [newest - 2],
      gc: "done",
    });
    const listed = await run("ssh", [
      "-F",
      join(lab.dir, "ssh_config"),
      "dp1",
      "ls /nix/var/nix/profiles | grep '^system-'",
    ]);
    // By number: failed activations' numbers are not made again, so the newest may
    // have more digits than ls's order expects.
    const byNumber = (link: string) => Number(link.split("-")[1]);
    expect(
      listed.stdout
        .trim()
        .split("\n")
        .sort((a, b) => byNumber(a) - byNumber(b)),
    ).toEqual([`system-${newest - 1}-link`, `system-${newest}-link`]);
    // web-pruned ran only in the generations removed: gone from the store. The kept ones stay.
    expect(await valid(paths["web-pruned"] as string)).toBe(false);
    expect(await valid(paths["web-v2"] as string)).toBe(true);
    const back = await nixship(["rollback", "--fleet", fleetFile, "--on", "dp1"]);
    expect(back.code, back.stderr).toBe(0);
    expect(await served("dp1")).toBe("web-v2");
  });

  it("asks Nix for the system's closure once: the survey takes it from what the push read", async () => {
    // Every `nix` the deploy starts, logged by a wrapper first on its PATH.
    const nix = await logCommandCalls("nix");
    try {
      // A system dp1 does not run: the push and the survey both need its closure.
      await setSystems({ dp1: "web-v3" });
      const r = await nixship(deployArgs("--on", "dp1", "--json"), {
        env: { PATH: nix.path },
      });
      expect(r.code, r.stderr).toBe(0);
      const desired = (
        events(r).find((e) => e.type === "plan") as unknown as {
          plan: { hosts: { desired: string; current?: string }[] };
        }
      ).plan.hosts[0];
      expect(desired?.current).not.toBe(desired?.desired);
      const calls = (await nix.calls()).filter((line) => / path-info .*--recursive/.test(line));
      expect(calls.filter((line) => line.includes(desired?.desired as string))).toHaveLength(1);
    } finally {
      await nix.remove();
    }
  });

  it("--wait-reachable: a host whose sshd comes up late is deployed; one that never does fails after the bound, named", async () => {
    // dp3 is reached through 127.0.0.1:LATE, where nothing listens until the test forwards it
    // to dp3's sshd (as an sshd that starts late); dp2 through a port where nothing ever does.
    const free = async () => {
      const probe = createServer();
      await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
      const { port } = probe.address() as AddressInfo;
      await new Promise((resolve) => probe.close(resolve));
      return port;
    };
    const [late, never] = [await free(), await free()];
    const labConfig = await readFile(join(lab.dir, "ssh_config"), "utf8");
    const block = (host: string, alias: string, port: number) => {
      const lines = (labConfig.split("\n\n").find((b) => b.includes(`Host ${host}\n`)) ?? "")
        .split("\n")
        .filter((l) => !/^(# |\s*HostName )/.test(l));
      if (lines.length < 3) throw new Error(`no block for ${host} in the lab's ssh_config`);
      return [
        `Host ${alias}`,
        ...lines.slice(1),
        "  HostName 127.0.0.1",
        `  Port ${port}`,
        `  HostKeyAlias ${host}`,
      ].join("\n");
    };
    const config = join(work, "late_ssh_config");
    await writeFile(
      config,
      `${block("dp3", "late-dp3", late)}\n\n${block("dp2", "never-dp2", never)}\n`,
    );
    // (dp3 runs web-v3 after the --action test above, and boots web-v2.)
    await setSystems({ dp2: "web-v3", dp3: "web-v1" });
    const doc = JSON.parse(await readFile(fleetFile, "utf8")) as FleetDoc & {
      ssh: Record<string, string>;
    };
    doc.ssh.configFile = config;
    (doc.hosts.dp3 as Record<string, unknown>).sshHost = "late-dp3";
    (doc.hosts.dp2 as Record<string, unknown>).sshHost = "never-dp2";
    const lateFleet = join(work, "late.json");
    await writeFile(lateFleet, JSON.stringify(doc));

    // dp3's "sshd" starts 5 s after the deployer first says it waits for it.
    const address = lab.hosts.find((h) => h.name === "dp3")?.address as string;
    const forward = createServer((socket) => {
      const upstream = connect(22, address);
      socket.pipe(upstream).pipe(socket);
      socket.on("error", () => upstream.destroy());
      upstream.on("error", () => socket.destroy());
    });
    let awaitedAt: number | undefined;
    let seen = "";
    const started = performance.now();
    const deployed = nixship(
      labDeployArgs(lab, lateFleet, keyFile, "--on", "dp3", "--wait-reachable", "60", "--json"),
      {
        onStdout: (chunk) => {
          seen += chunk;
          if (awaitedAt === undefined && seen.includes('"type":"awaiting"')) {
            awaitedAt = performance.now();
            setTimeout(() => forward.listen(late, "127.0.0.1"), 5000);
          }
        },
      },
    );
    try {
      const r = await deployed;
      expect(r.code, r.stderr).toBe(0);
      expect(awaitedAt, "the deployer said it waited for dp3").toBeDefined();
      const awaiting = events(r).filter((e) => e.type === "awaiting");
      expect(awaiting[0]).toMatchObject({ hosts: ["dp3"], limit: 60 });
      expect(summaryOf(r).dp3).toMatchObject({ status: "activated" });
      expect(await served("dp3")).toBe("web-v1");
    } finally {
      forward.close();
    }

    const t0 = performance.now();
    const failed = await nixship(
      labDeployArgs(lab, lateFleet, keyFile, "--on", "dp2", "--wait-reachable", "6", "--json"),
    );
    expect(failed.code).toBe(1);
    expect(
      events(failed)
        .filter((e) => e.type === "awaiting")
        .at(-1),
    ).toMatchObject({
      hosts: ["dp2"],
    });
    expect(summaryOf(failed).dp2).toMatchObject({
      status: "failed",
      phase: "connect",
      message: expect.stringMatching(/Connection refused/),
    });
    const plan = events(failed).find((e) => e.type === "plan") as unknown as {
      plan: { hosts: { host: string; action: string; error?: string }[] };
    };
    expect(plan.plan.hosts[0]).toMatchObject({ host: "dp2", action: "unreachable" });
    // It waited its 6 s, and not much more.
    expect((performance.now() - t0) / 1000).toBeGreaterThanOrEqual(6);
    expect((performance.now() - started) / 1000).toBeGreaterThan(5);
    const human = await nixship(
      labDeployArgs(lab, lateFleet, keyFile, "--on", "dp2", "--wait-reachable", "2"),
    );
    expect(human.stderr).toMatch(/waiting for dp2 to be reachable \(\d+(\.\d+)?s of 2(\.0)?s\)/);
  });
});

describe("nixship build", () => {
  it("evaluates and builds once; hosts with the same system share it, each maps to its own", async () => {
    const dir = await mkdtemp(join(tmpdir(), "nixship-build-"));
    try {
      const fleet = {
        hosts: {
          a: { address: "10.0.0.1", system: "path:./examples#web-v2" },
          b: { address: "10.0.0.2", system: "path:./examples#web-v1" },
          c: { address: "10.0.0.3", system: "path:./examples#web-v2" },
        },
      };
      await writeFile(join(dir, "nixship.json"), JSON.stringify(fleet));
      await run("ln", ["-s", EXAMPLES_DIR, join(dir, "examples")]);
      const r = await nixship(["build", "--fleet", join(dir, "nixship.json"), "--json"]);
      expect(r.code, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout) as {
        systems: { spec: string; hosts: string[]; path: string }[];
        hosts: Record<string, string>;
      };
      expect(out.systems.map((s) => s.hosts)).toEqual([["a", "c"], ["b"]]);
      for (const [name, version] of [
        ["a", "web-v2"],
        ["b", "web-v1"],
        ["c", "web-v2"],
      ] as const) {
        const path = out.hosts[name] as string;
        expect((await readFile(join(path, "nixos-version"), "utf8")).trim()).toBe(version);
      }
      await writeFile(
        join(dir, "nixship.json"),
        JSON.stringify({
          hosts: { a: { address: "10.0.0.1", system: "path:./examples#no-such" } },
        }),
      );
      const missing = await nixship(["build", "--fleet", join(dir, "nixship.json")]);
      // A missing output is bad input (exit 2), named by the host's field, with what exists.
      expect(missing.code).toBe(2);
      expect(missing.stderr).toContain(
        'error: hosts.a.system: the flake has no output "path:./examples#no-such"',
      );
      expect(missing.stderr).toMatch(/hint: the flake has web-\w+/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
