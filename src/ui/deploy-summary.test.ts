import { describe, expect, it } from "vitest";
import { hostKeyRefused } from "../delivery/host-key-refused.js";
import type { HostResult } from "../deploy/events.js";
import type { DeployPlan, HostPlan } from "../fleet/plan.js";
import type { StorePath } from "../nix/store-path.js";
import {
  formatDeploySummary,
  formatDuration,
  resultKind,
  resultLabel,
  runs,
} from "./deploy-summary.js";

const desired = `/nix/store/${"2".repeat(32)}-example-web-system-v2`;

const activated = (host: string, generation: number | undefined, seconds: number): HostResult => ({
  host,
  outcome: { status: "activated", generation, previous: undefined },
  desired,
  seconds,
});

const RESULTS: HostResult[] = [
  activated("web1", 3, 4.2),
  activated("web2", 7, 3.9),
  activated("web10", undefined, 5),
  {
    host: "api1",
    outcome: {
      status: "failed",
      phase: "health",
      message: "GET http://api1:8080/health: status 503\nbody: starting",
      rolledBack: true,
    },
    desired,
    seconds: 31.25,
  },
  {
    host: "api2",
    outcome: { status: "failed", phase: "switch", message: "exit 4", rolledBack: false },
    desired,
    seconds: 2,
  },
  { host: "db1", outcome: { status: "skipped", reason: "up-to-date" }, desired, seconds: 0 },
  { host: "db2", outcome: { status: "skipped", reason: "not-started" }, desired, seconds: 0 },
  {
    host: "db3",
    outcome: { status: "skipped", reason: "unreachable", message: "no route to host" },
    desired,
    seconds: 0,
  },
  {
    host: "db4",
    outcome: { status: "skipped", reason: "refused", message: "it runs X, not Y: changed since" },
    desired,
    seconds: 0,
  },
];

const text = formatDeploySummary(RESULTS, 12.34);
const lines = text.split("\n");
const rowOf = (name: string): string => {
  const row = lines.find((line) => line.startsWith(`${name} `));
  if (row === undefined) throw new Error(`no row for ${name} in:\n${text}`);
  return row;
};
const cells = (name: string) => rowOf(name).split(/ {2,}/);

describe("formatDuration", () => {
  it("shows tenths under a minute, then minutes and seconds", () => {
    expect(formatDuration(0)).toBe("0.0s");
    expect(formatDuration(2.14)).toBe("2.1s");
    expect(formatDuration(59.9)).toBe("59.9s");
    expect(formatDuration(59.97)).toBe("1m00s");
    expect(formatDuration(125.4)).toBe("2m05s");
    expect(formatDuration(Number.NaN)).toBe("0.0s");
  });
});

describe("resultLabel", () => {
  it("names every outcome", () => {
    expect(RESULTS.map((r) => resultLabel(r))).toEqual([
      "activated",
      "activated",
      "activated",
      "FAILED (rolled back)",
      "FAILED (not rolled back)",
      "skipped (up to date)",
      "not started",
      "unreachable",
      "REFUSED (changed since)",
    ]);
  });

  it("says that a host it could not reach, which fails the rollout, was not changed", () => {
    const refused = {
      host: "h",
      desired: "/nix/store/x",
      seconds: 0,
      outcome: {
        status: "failed" as const,
        phase: "connect" as const,
        message: hostKeyRefused("ssh: Host key verification failed."),
        rolledBack: false,
      },
    };
    expect(resultLabel(refused)).toBe("FAILED (nothing changed)");
    // ssh's own full stop does not end the sentence midway.
    expect(refused.outcome.message).toMatch(
      /^ssh: Host key verification failed: the host's key is not the one known for it \(it may be another machine/,
    );
  });

  it("calls a boot deploy's success what it did: the new system is set to boot", () => {
    expect(resultLabel(RESULTS[0] as (typeof RESULTS)[number], "boot")).toBe("set to boot");
    expect(resultLabel(RESULTS[0] as (typeof RESULTS)[number], "switch")).toBe("activated");
  });
});

describe("formatDeploySummary", () => {
  it("has a header, a row per host in order, and a counts line", () => {
    expect(lines).toHaveLength(1 + RESULTS.length + 1);
    expect(lines[0]?.split(/ {2,}/)).toEqual([
      "host",
      "result",
      "phase",
      "generation",
      "time",
      "message",
    ]);
    expect(lines.slice(1, -1).map((line) => line.split(" ")[0])).toEqual(
      RESULTS.map((r) => r.host),
    );
  });

  it("shows an activated host's generation and time", () => {
    expect(cells("web1")).toEqual(["web1", "activated", "-", "3", "4.2s"]);
    expect(cells("web10")).toEqual(["web10", "activated", "-", "-", "5.0s"]);
  });

  it("puts a failed host's phase, message and rollback on its row", () => {
    expect(cells("api1")).toEqual([
      "api1",
      "FAILED (rolled back)",
      "health",
      "-",
      "31.3s",
      "GET http://api1:8080/health: status 503; body: starting",
    ]);
    expect(rowOf("api2")).toContain("FAILED (not rolled back)");
    expect(rowOf("api2")).toContain("switch");
    expect(rowOf("api2")).toContain("exit 4");
  });

  it("shows skipped hosts without a time", () => {
    expect(cells("db1")).toEqual(["db1", "skipped (up to date)", "-", "-", "-"]);
    expect(cells("db2")).toEqual(["db2", "not started", "-", "-", "-"]);
    expect(cells("db3")).toEqual(["db3", "unreachable", "-", "-", "-", "no route to host"]);
    expect(cells("db4")).toEqual([
      "db4",
      "REFUSED (changed since)",
      "-",
      "-",
      "-",
      "it runs X, not Y: changed since",
    ]);
  });

  it("aligns the columns", () => {
    const at = lines[0]?.indexOf("result");
    for (const line of lines.slice(1, -1)) {
      expect(line.slice(at).startsWith(" ")).toBe(false);
      expect(line[(at ?? 0) - 1]).toBe(" ");
    }
  });

  it("ends with the counts and the total time", () => {
    expect(lines.at(-1)).toBe(
      "3 activated, 2 failed, 1 up to date, 1 unreachable, 1 not started, 1 refused in 12.3s",
    );
  });

  it("counts only activated and failed when nothing else happened", () => {
    expect(
      formatDeploySummary([activated("web1", 1, 1)], 1.5)
        .split("\n")
        .at(-1),
    ).toBe("1 activated, 0 failed in 1.5s");
  });
});

describe("the runs column (with the plan)", () => {
  const v1 = `/nix/store/${"1".repeat(32)}-example-web-system-v1` as StorePath;
  const plan = (action: DeployPlan["action"]): DeployPlan => ({
    action,
    hosts: RESULTS.map(
      (r): HostPlan => ({
        host: r.host,
        action: "activate",
        current: r.host === "db1" ? (desired as StorePath) : r.host === "api2" ? undefined : v1,
        generation: undefined,
        desired: desired as StorePath,
        transfer: { paths: 0, bytes: 0 },
        transferBasis: "current-system",
        error: undefined,
      }),
    ),
    counts: { activate: RESULTS.length, skip: 0, unreachable: 0 },
    changes: 0,
    totals: { paths: 0, bytes: 0 },
    distinct: { paths: 0, bytes: 0 },
    waves: [],
  });

  it("says which system each host runs: new, previous, or the failed one it could not leave", () => {
    const p = plan("switch");
    expect(Object.fromEntries(RESULTS.map((r) => [r.host, runs(r, p)]))).toEqual({
      web1: "example-web-system-v2",
      web2: "example-web-system-v2",
      web10: "example-web-system-v2",
      api1: "example-web-system-v1",
      // Its switch failed and it could not go back: it runs the failed system.
      api2: "example-web-system-v2 (failed)",
      db1: "example-web-system-v2",
      db2: "example-web-system-v1",
      db3: "example-web-system-v1",
      // Refused: it runs what changed it since, which its message names.
      db4: "unknown",
    });
    // Refused by a host that said what it runs (activate.sh's "changed" answer): that.
    const said: HostResult = {
      ...(RESULTS.find((r) => r.host === "db4") as HostResult),
      outcome: {
        status: "skipped",
        reason: "refused",
        message: "it runs …-example-web-system-v3, not …: changed since",
        runs: "/nix/store/00000000000000000000000000000003-example-web-system-v3",
      },
    };
    expect(runs(said, p)).toBe("example-web-system-v3");
    // boot changes what boots next, not what runs.
    expect(runs(RESULTS[0] as HostResult, plan("boot"))).toBe("example-web-system-v1");
    // A host that failed before anything changed runs what it ran (not "unknown").
    const realise: HostResult = {
      host: "api1",
      outcome: { status: "failed", phase: "realise", message: "no", rolledBack: false },
      desired,
      seconds: 1,
    };
    expect(runs(realise, p)).toBe("example-web-system-v1");
    // After a pause, a host never reached is known only as the survey found it, hours ago maybe.
    const paused = {
      ...p,
      pauses: [
        { afterWave: 1, kind: "canary" as const, timeout: 600, onTimeout: "abort" as const },
      ],
    };
    const db2 = RESULTS.find((r) => r.host === "db2") as HostResult;
    expect(runs(db2, paused)).toBe("example-web-system-v1 (when surveyed)");
    expect(runs(RESULTS[0] as HostResult, paused)).toBe("example-web-system-v2");
  });

  it("sits after the result", () => {
    const table = formatDeploySummary(RESULTS, 1, plan("switch")).split("\n");
    expect(table[0]?.split(/ {2,}/).slice(0, 3)).toEqual(["host", "result", "runs"]);
    expect(
      table
        .find((l) => l.startsWith("api1 "))
        ?.split(/ {2,}/)
        .slice(0, 3),
    ).toEqual(["api1", "FAILED (rolled back)", "example-web-system-v1"]);
  });
});

describe("a big summary: failures whole, the rest counted", () => {
  const v1 = `/nix/store/${"1".repeat(32)}-example-web-system-v1` as StorePath;
  const name = (i: number) => `lab${String(i + 1).padStart(4, "0")}`;
  const resultOf = (i: number): HostResult => {
    const host = name(i);
    if (i % 100 === 7) {
      return {
        host,
        outcome: {
          status: "failed",
          phase: "health",
          message: `GET http://${host}/health: status 503\nbody: starting`,
          rolledBack: true,
        },
        desired,
        seconds: 20,
      };
    }
    if (i % 100 === 8) {
      return {
        host,
        outcome: { status: "skipped", reason: "unreachable", message: "no route to host" },
        desired,
        seconds: 0,
      };
    }
    if (i % 10 === 9) {
      return { host, outcome: { status: "skipped", reason: "up-to-date" }, desired, seconds: 0 };
    }
    return activated(host, 4, 3);
  };
  const planOf = (results: readonly HostResult[]): DeployPlan => ({
    action: "switch",
    hosts: results.map(
      (r): HostPlan => ({
        host: r.host,
        action: "activate",
        current: resultKind(r) === "up-to-date" ? (desired as StorePath) : v1,
        generation: 3,
        desired: desired as StorePath,
        transfer: { paths: 0, bytes: 0 },
        transferBasis: "store",
        error: undefined,
      }),
    ),
    counts: { activate: results.length, skip: 0, unreachable: 0 },
    changes: results.length,
    totals: { paths: 0, bytes: 0 },
    distinct: { paths: 0, bytes: 0 },
    waves: [],
  });

  for (const count of [200, 1000]) {
    it(`lists each of ${count} hosts' failures whole and counts the rest by result and system`, () => {
      const results = Array.from({ length: count }, (_, i) => resultOf(i));
      const lines = formatDeploySummary(results, 75, planOf(results)).split("\n");
      // Each of failed and unreachable: 1 in 100; up to date: 1 in 10.
      const failures = count / 100;
      const active = count - count / 10 - 2 * failures;
      expect(lines[0]).toBe(
        `${count} hosts (past 20 hosts the summary counts those that need nobody; --json lists each):`,
      );
      expect(lines[1]?.split(/ {2,}/)).toEqual(["hosts", "result", "runs", "which"]);
      expect(lines[2]?.split(/ {2,}/)).toEqual([
        String(active),
        "activated",
        "example-web-system-v2",
        `lab0001, lab0002, lab0003, lab0004, lab0005 and ${active - 5} more`,
      ]);
      expect(lines[3]?.split(/ {2,}/).slice(0, 3)).toEqual([
        String(count / 10),
        "skipped (up to date)",
        "example-web-system-v2",
      ]);
      expect(lines[4]?.split(/ {2,}/).slice(0, 3)).toEqual(["host", "result", "runs"]);
      // Every failed and unreachable host has its row, message and all, in order.
      const rows = lines.slice(5, -1);
      expect(rows.map((l) => l.split(" ")[0])).toEqual(
        results.filter((r) => /failed|unreachable/.test(resultKind(r))).map((r) => r.host),
      );
      expect(rows[0]?.split(/ {2,}/)).toEqual([
        "lab0008",
        "FAILED (rolled back)",
        "example-web-system-v1",
        "health",
        // Back on the system it was surveyed on, so on its generation.
        "3",
        "20.0s",
        "GET http://lab0008/health: status 503; body: starting",
      ]);
      expect(rows[1]).toMatch(/^lab0009 +unreachable +example-web-system-v1 .* no route to host$/);
      expect(lines.at(-1)).toBe(
        `${active} activated, ${failures} failed, ${count / 10} up to date, ${failures} unreachable in 1m15s`,
      );
      expect(lines).toHaveLength(5 + 2 * failures + 1);
    });
  }

  it("counts by result alone without the plan, and has no host rows when nothing failed", () => {
    const results = Array.from({ length: 21 }, (_, i) => activated(name(i), 2, 1));
    expect(formatDeploySummary(results, 3).split("\n")).toEqual([
      "21 hosts (past 20 hosts the summary counts those that need nobody; --json lists each):",
      "hosts  result     which",
      "21     activated  lab0001, lab0002, lab0003, lab0004, lab0005 and 16 more",
      "21 activated, 0 failed in 3.0s",
    ]);
  });
});

describe("the generation of a host that was not activated", () => {
  it("is the one it was surveyed on while it runs that system, as its status record says", () => {
    const v1 = `/nix/store/${"1".repeat(32)}-example-web-system-v1` as StorePath;
    const failed = (host: string, rolledBack: boolean): HostResult => ({
      host,
      desired,
      seconds: 5,
      outcome: { status: "failed", phase: "health", message: "status 500", rolledBack },
    });
    const results = [failed("back", true), failed("stuck", false)];
    const plan = {
      action: "switch",
      hosts: results.map((r) => ({ host: r.host, current: v1, generation: 2 })),
    } as unknown as DeployPlan;
    const text = formatDeploySummary(results, 5, plan);
    const row = (host: string) =>
      (text.split("\n").find((l) => l.startsWith(`${host} `)) ?? "").split(/ {2,}/);
    // Gone back: on v1 and its generation 2. Not gone back: on the failed system, no number.
    expect(row("back").slice(0, 5)).toEqual([
      "back",
      "FAILED (rolled back)",
      "example-web-system-v1",
      "health",
      "2",
    ]);
    expect(row("stuck").slice(2, 5)).toEqual(["example-web-system-v2 (failed)", "health", "-"]);
  });
});

describe("a host whose bake an interrupt ended", () => {
  it("is activated, and its row says the bake did not verify it", () => {
    const cut: HostResult = {
      ...activated("web1", 3, 12),
      outcome: { status: "activated", generation: 3, previous: undefined, bakeInterrupted: 8 },
    };
    const row = formatDeploySummary([cut], 12).split("\n")[1] ?? "";
    expect(row).toMatch(
      /^web1 +activated +- +3 +12\.0s +bake interrupted after 8\.0s: not verified by it$/,
    );
  });
});
