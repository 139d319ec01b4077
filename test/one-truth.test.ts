// One truth about each host, on two lab hosts: the records a deploy writes keep what
// a host runs, its generation and the system it ran before, whatever the deploy did to it. The
// sequence: web-v1, then web-v2 everywhere; then a deploy that changes ot1 only
// skips ot2 as up to date, and ot2's record must still name generation 2 and web-v1 (its
// rollback target), which `cache gc --stored --grace 0` then keeps, and `rollback` takes it
// back to. Then a failed health check rolled back: the record, `status --stored` and the
// dashboard's API name the system ot1 runs again, never "unknown".
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dashboardHost } from "./support/dashboard-api.js";
import { servedBy, setExampleSystems, summaryOf } from "./support/lab-deploy.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

let lab: SshLab;

beforeAll(async () => {
  lab = await startSshLab("ot", 2);
}, 120_000);
afterAll(async () => {
  await lab?.down();
});

interface StoredRow {
  readonly host: string;
  readonly current: string | null;
  readonly generation: number | null;
  readonly previous?: string | null;
}

async function stored(): Promise<Record<string, StoredRow>> {
  const r = await lab.nixship(["status", "--fleet", lab.fleetFile, "--stored", "--json"]);
  const rows = (JSON.parse(r.stdout) as { hosts: StoredRow[] }).hosts;
  return Object.fromEntries(rows.map((row) => [row.host, row]));
}

async function deploy(systems: Record<string, string>, ...extra: string[]) {
  await setExampleSystems(lab.fleetFile, systems);
  const r = await lab.deploy("--json", ...extra);
  return r;
}

describe("records that never lose what a host runs or ran", () => {
  let v1: string;
  let v2: string;

  it("plan --reboot auto names a fresh host, which says nothing of what it booted", async () => {
    await setExampleSystems(lab.fleetFile, { ot1: "web-v1", ot2: "web-v1" });
    const planned = await lab.nixship(["plan", "--fleet", lab.fleetFile, "--reboot", "auto"]);
    expect(planned.code, planned.stderr).toBe(0);
    expect(planned.stdout).toContain(
      "what it booted is unknown (no booted system): --reboot auto does not reboot it",
    );
  });

  it("a host skipped as up to date keeps its generation and the system it ran before", async () => {
    expect((await deploy({ ot1: "web-v1", ot2: "web-v1" })).code).toBe(0);
    const first = await stored();
    v1 = first.ot2?.current as string;
    expect(v1).toMatch(/-example-web-system-v1$/);
    const second = await deploy({ ot1: "web-v2", ot2: "web-v2" });
    expect(second.code, second.stderr).toBe(0);
    v2 = (await stored()).ot2?.current as string;
    expect((await stored()).ot2).toMatchObject({ generation: 2, previous: v1 });
    // Only ot1 changes: ot2 is skipped, and its record must keep what it said.
    const third = await deploy({ ot1: "web-v3", ot2: "web-v2" });
    expect(third.code, third.stderr).toBe(0);
    expect(summaryOf(third).ot2).toMatchObject({ status: "skipped", reason: "up-to-date" });
    expect((await stored()).ot2).toMatchObject({ current: v2, generation: 2, previous: v1 });
  });

  it("cache gc --stored keeps that rollback target, and rollback goes there", async () => {
    const gc = await lab.nixship([
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
    const fleet = JSON.parse(await readFile(lab.fleetFile, "utf8")) as {
      cache: { url: string; publicKeys: string[] };
    };
    // Its roots against the hosts' live answers: every system a host runs or has a generation
    // of (what it can roll back to, ot2's web-v1 among them) was kept.
    const live = await lab.nixship(["status", "--fleet", lab.fleetFile, "--json"]);
    const rows = (
      JSON.parse(live.stdout) as {
        hosts: { host: string; current: string; generations: { path: string }[] }[];
      }
    ).hosts;
    const wanted = new Set(rows.flatMap((h) => [h.current, ...h.generations.map((g) => g.path)]));
    expect(wanted.has(v1)).toBe(true);
    expect(wanted.size).toBeGreaterThanOrEqual(3);
    const all = await lab.nixship([
      "verify",
      "--cache",
      fleet.cache.url,
      "--trusted-key",
      fleet.cache.publicKeys[0] ?? "",
      ...wanted,
      "--json",
    ]);
    expect(all.code, all.stdout + all.stderr).toBe(0);
    const back = await lab.nixship(["rollback", "--fleet", lab.fleetFile, "--on", "ot2", "--json"]);
    expect(back.code, back.stderr).toBe(0);
    expect(await servedBy(lab.info, "ot2")).toBe("web-v1");
    expect((await stored()).ot2).toMatchObject({ current: v1, generation: 1, previous: v2 });
  });

  it("a failed health check rolled back: record, status --stored and the dashboard name what runs", async () => {
    const v3 = (await stored()).ot1?.current as string;
    expect(v3).toMatch(/-example-web-system-v3$/);
    const broken = await deploy({ ot1: "web-broken", ot2: "web-v1" }, "--on", "ot1");
    expect(broken.code).toBe(1);
    expect(summaryOf(broken).ot1).toMatchObject({ status: "failed", rolledBack: true });
    expect(await servedBy(lab.info, "ot1")).toBe("web-v3");
    expect((await stored()).ot1).toMatchObject({ current: v3, generation: 3, previous: v2 });
    const text = await lab.nixship(["status", "--fleet", lab.fleetFile, "--stored"]);
    expect(text.stdout).not.toContain("(none)");
    expect(await dashboardHost(lab.fleetFile, "ot1")).toMatchObject({ current: v3 });
    // Asked live, it says what the fleet wants of it and that its last deploy failed: not in
    // step, and the exit code follows.
    const live = await lab.nixship(["status", "--fleet", lab.fleetFile, "--on", "ot1", "--json"]);
    expect(live.code).toBe(1);
    expect((JSON.parse(live.stdout) as { hosts: unknown[] }).hosts[0]).toMatchObject({
      current: v3,
      inStep: false,
      behind: true,
      last: { state: "failed", phase: "health", rolledBack: true },
    });
  });

  it("a host whose known_hosts line holds another host's key fails, even with --skip-unreachable", async () => {
    const file = join(lab.info.dir, "known_hosts");
    const original = await readFile(file, "utf8");
    const keyOf = (host: string) =>
      original
        .split("\n")
        .find((l) => l.startsWith(`${host},`))
        ?.split(" ")
        .slice(1)
        .join(" ");
    const forged = original.replace(keyOf("ot1") as string, keyOf("ot2") as string);
    expect(forged).not.toBe(original);
    await writeFile(file, forged);
    try {
      const r = await deploy({ ot1: "web-v2", ot2: "web-v2" }, "--skip-unreachable");
      expect(r.code).toBe(1);
      const ot1 = summaryOf(r).ot1;
      expect(ot1).toMatchObject({ status: "failed", phase: "connect" });
      expect(String(ot1?.message)).toContain(
        "Host key verification failed: the host's key is not the one known for it (it may be another machine",
      );
      // It counts against maxFailures (0 here): the rollout starts no wave.
      expect(summaryOf(r).ot2).toMatchObject({ status: "skipped", reason: "not-started" });
    } finally {
      await writeFile(file, original);
    }
    // Nothing was done to it.
    expect(await servedBy(lab.info, "ot1")).toBe("web-v3");
  });
});

/** The dashboard's JSON for one host: a real `nixship dashboard` on loopback, one poll. */
