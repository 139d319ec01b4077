// A bound on held ssh connections: a deploy to more hosts than --max-connections
// allows never has more shared connections (ssh masters, each a control socket of the
// deployer's) alive at once than the bound, and every host deploys. A host past the bound is
// surveyed over a login of its own (no master made only to be ended before its wave), with the
// key exchange of a login that carries no secret, as its confirmation is.
import { spawn } from "node:child_process";
import { readdir } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { controlPrefixFor } from "../src/delivery/ssh-transport.js";
import { NIXSHIP_BIN, run } from "../support/cli.js";
import { logCommandCalls } from "./support/command-log.js";
import { labDeployArgs, servedBy, setExampleSystems, sshdLogins } from "./support/lab-deploy.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

let lab: SshLab;
const HOSTS = ["cbd1", "cbd2", "cbd3", "cbd4", "cbd5"];

beforeAll(async () => {
  lab = await startSshLab("cbd", HOSTS.length);
}, 120_000);

afterAll(async () => {
  await lab?.down();
});

/** Logins the hosts' sshd accepted so far (one per SSH handshake). */
async function logins(): Promise<number> {
  let n = 0;
  for (const host of HOSTS) n += await sshdLogins(lab.info.dir, host);
  return n;
}

/** The value of ssh's `-o NAME=VALUE` in a logged command line, if given. */
function option(line: string, name: string): string | undefined {
  return new RegExp(`-o ${name}=(\\S+)`).exec(line)?.[1];
}

/** The control sockets of deployer `pid` under a trust prefix (ssh's temporary names aside). */
async function mastersOf(prefix: string, pid: number): Promise<number> {
  const start = `${basename(prefix)}${pid}-`;
  const names = await readdir(dirname(prefix)).catch(() => [] as string[]);
  return names.filter((n) => n.startsWith(start) && /^[0-9a-f]+$/.test(n.slice(start.length)))
    .length;
}

describe("--max-connections", () => {
  it("holds at most the bound of masters at once, and deploys every host", async () => {
    await setExampleSystems(lab.fleetFile, Object.fromEntries(HOSTS.map((h) => [h, "web-v2"])));
    const prefix = controlPrefixFor(
      join(lab.info.dir, "ssh_config"),
      join(lab.info.dir, "known_hosts"),
    );
    const args = labDeployArgs(lab.info, lab.fleetFile, join(lab.info.dir, "cache.sec"));
    const child = spawn(
      process.execPath,
      [
        NIXSHIP_BIN,
        ...args,
        "--max-connections",
        "2",
        "--parallel",
        "5",
        "--canary",
        "0",
        "--json",
      ],
      {
        env: { ...process.env, NIXSHIP_LAB_DIR: dirname(lab.info.dir) },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    const exited = new Promise<number>((resolve) =>
      child.on("exit", (code) => resolve(code ?? -1)),
    );
    // Watch the deployer's control sockets while it runs (bounded by the deploy's own end).
    let most = 0;
    let seen = 0;
    let done = false;
    void exited.then(() => {
      done = true;
    });
    const deadline = Date.now() + 240_000;
    while (!done && Date.now() < deadline) {
      const n = await mastersOf(prefix, child.pid as number);
      most = Math.max(most, n);
      if (n > 0) seen++;
      await new Promise((r) => setTimeout(r, 5));
    }
    const code = await exited;
    expect(code, err).toBe(0);
    // It held masters (the watch saw them), never more than 2.
    expect(seen).toBeGreaterThan(0);
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(2);
    // The plan said what the bound costs: 5 hosts asked, 5 activations, 3 connected again.
    const plan = out
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { type: string; plan?: { connections?: unknown } })
      .find((e) => e.type === "plan");
    expect(plan?.plan?.connections).toEqual({ hosts: 5, bound: 2, logins: 13, again: 3 });
    const summary = out
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { type: string; results?: { outcome: { status: string } }[] })
      .find((e) => e.type === "summary");
    expect(summary?.results?.map((r) => r.outcome.status)).toEqual(HOSTS.map(() => "activated"));
    for (const host of HOSTS) expect(await servedBy(lab.info, host)).toBe("web-v2");
  }, 300_000);

  it("surveys the hosts past the bound over logins of their own, and logs in as the plan counts", async () => {
    await setExampleSystems(lab.fleetFile, Object.fromEntries(HOSTS.map((h) => [h, "web-v3"])));
    // Every ssh the deploy starts, logged by a wrapper first on its PATH.
    const ssh = await logCommandCalls("ssh");
    try {
      const before = await logins();
      // One host a wave: each wave's master takes the place of one whose wave is over.
      const args = labDeployArgs(lab.info, lab.fleetFile, join(lab.info.dir, "cache.sec"));
      const r = await run(
        process.execPath,
        [NIXSHIP_BIN, ...args, "--max-connections", "2", "--parallel", "1", "--json"],
        {
          env: {
            NIXSHIP_LAB_DIR: dirname(lab.info.dir),
            PATH: ssh.path,
          },
        },
      );
      expect(r.code, r.stderr).toBe(0);
      const plan = r.stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as { type: string; plan?: { connections?: { logins: number } } })
        .find((e) => e.type === "plan");
      // 5 surveyed, 3 connected again at their wave, 5 confirmations: as the plan said.
      expect(plan?.plan?.connections?.logins).toBe(13);
      expect((await logins()) - before).toBe(13);
      const lines = await ssh.calls();
      const statuses = lines.filter((l) => / 'status' '--check-paths'/.test(l));
      expect(statuses.map((l) => option(l, "ControlMaster")).sort()).toEqual([
        "auto",
        "auto",
        "no",
        "no",
        "no",
      ]);
      // Those 3 take the confirmations' key exchange.
      const confirms = lines.filter((l) => / 'confirm' /.test(l));
      expect(confirms).toHaveLength(5);
      const settling = option(confirms[0] as string, "KexAlgorithms");
      for (const line of [...confirms, ...statuses.filter((l) => l.includes("ControlMaster=no"))]) {
        expect(option(line, "KexAlgorithms"), line).toBe(settling);
      }
      for (const host of HOSTS) expect(await servedBy(lab.info, host)).toBe("web-v3");
    } finally {
      await ssh.remove();
    }
  }, 300_000);

  it("refuses a bound that is not a whole number from 1 to 100000, naming it", async () => {
    const bads = ["0", "100001", "lots"];
    const runs = await Promise.all(
      bads.map((bad) => lab.nixship(["plan", "--fleet", lab.fleetFile, "--max-connections", bad])),
    );
    for (const [i, r] of runs.entries()) {
      const bad = bads[i] as string;
      expect(r.code, bad).toBe(2);
      expect(r.stderr).toContain("--max-connections");
      expect(r.stderr).toContain(bad);
    }
  });
});
