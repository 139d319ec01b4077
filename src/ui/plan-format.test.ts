import { describe, expect, it } from "vitest";
import { type DeployPlan, type HostPlan, type PlanTarget, planDeploy } from "../fleet/plan.js";
import type { StorePath } from "../nix/store-path.js";
import { formatPlan, formatTable, oneLine, storeName } from "./plan-format.js";

const sp = (hashChar: string, name: string) =>
  `/nix/store/${hashChar.repeat(32)}-${name}` as StorePath;
const v1 = sp("1", "example-web-system-v1");
const v2 = sp("2", "example-web-system-v2");

const host = (over: Partial<HostPlan> & Pick<HostPlan, "host">): HostPlan => ({
  action: "activate",
  current: v1,
  generation: 3,
  desired: v2,
  transfer: { paths: 0, bytes: 0 },
  transferBasis: "current-system",
  error: undefined,
  ...over,
});

const PLAN: DeployPlan = {
  action: "switch",
  hosts: [
    host({ host: "web1", transfer: { paths: 3, bytes: 10_300 }, transferBasis: "store" }),
    host({
      host: "web22",
      current: undefined,
      generation: undefined,
      transfer: { paths: 2, bytes: 2000 },
      transferBasis: "whole-closure",
    }),
    host({ host: "db1", action: "skip", current: v2, desired: v2 }),
    host({
      host: "cache1",
      action: "unreachable",
      current: undefined,
      generation: undefined,
      error: "ssh: connect to host cache1 port 22: Connection refused",
    }),
  ],
  counts: { activate: 2, skip: 1, unreachable: 1 },
  changes: 2,
  totals: { paths: 5, bytes: 12_300 },
  distinct: { paths: 5, bytes: 12_300 },
  waves: [],
};

const rowOf = (text: string, name: string): string => {
  const row = text.split("\n").find((line) => line.startsWith(`${name} `));
  if (row === undefined) throw new Error(`no row for ${name} in:\n${text}`);
  return row;
};

describe("storeName", () => {
  it("keeps the name after the hash", () => {
    expect(storeName(v1)).toBe("example-web-system-v1");
  });
  it("leaves other text alone", () => {
    expect(storeName("/nix/store/short-x")).toBe("/nix/store/short-x");
    expect(storeName("github:me/fleet#web")).toBe("github:me/fleet#web");
  });
});

describe("formatTable", () => {
  it("pads every column but the last to its widest cell", () => {
    expect(
      formatTable([
        ["a", "bb", "c"],
        ["aaa", "b", ""],
      ]),
    ).toEqual(["a    bb  c", "aaa  b"]);
  });
});

describe("oneLine", () => {
  it("joins lines with semicolons and drops blank ones", () => {
    expect(oneLine("first\n\n  second  \r\nthird")).toBe("first; second; third");
  });
});

describe("formatPlan's trust", () => {
  it("says whose trust each host takes, hosts alike on one line", () => {
    const text = formatPlan({
      ...PLAN,
      hosts: [
        host({ host: "web1", pinning: { pinned: true, by: "nixship-activate", keys: ["c-1"] } }),
        host({ host: "web2", pinning: { pinned: true, by: "nixship-activate", keys: ["c-1"] } }),
        host({ host: "web3", pinning: { pinned: false, activator: true } }),
        host({ host: "db1", pinning: { pinned: false, activator: false } }),
        host({ host: "db2", pinning: { pinned: false, activator: false } }),
        host({ host: "a1", pinning: { pinned: true, by: "agent" } }),
        host({ host: "old" }),
      ],
    });
    // Said of one host, or of several.
    expect(text.split("\n").slice(-5)).toEqual([
      "trust:",
      "  web1, web2: pinned: nixship-activate, keys c-1",
      "  web3: not pinned: it takes the deployer's trust (it has nixship-activate: set its sudo to use it)",
      "  db1, db2: not pinned: they take the deployer's trust",
      "  a1: pinned: its agent's own keys",
    ]);
    expect(formatPlan(PLAN)).not.toContain("trust:");
  });
});

describe("formatPlan", () => {
  const text = formatPlan(PLAN);
  const lines = text.split("\n");

  it("has a header, one row per host and a totals line", () => {
    expect(lines).toHaveLength(1 + PLAN.hosts.length + 1);
    expect(lines[0]).toMatch(/^host\s+current\s+desired\s+action\s+transfer\s+note$/);
  });

  it("shows store names, not full paths", () => {
    expect(text).not.toContain("/nix/store/");
    const web1 = rowOf(text, "web1");
    expect(web1).toContain("example-web-system-v1 (gen 3)");
    expect(web1).toContain("example-web-system-v2");
    expect(web1).toContain("switch");
    expect(web1).toMatch(/switch\s+3 paths, 10.3 kB/);
  });

  it("aligns the columns", () => {
    const desiredAt = lines[0]?.indexOf("desired");
    expect(rowOf(text, "web1").indexOf("example-web-system-v2")).toBe(desiredAt);
    expect(rowOf(text, "cache1").indexOf("example-web-system-v2")).toBe(desiredAt);
    expect(rowOf(text, "db1").indexOf("skip")).toBe(lines[0]?.indexOf("action"));
  });

  it("says which hosts are up to date and why others are unreachable", () => {
    const db1 = rowOf(text, "db1");
    expect(db1).toContain("skip");
    expect(db1).toContain("up to date");
    const cache1 = rowOf(text, "cache1");
    expect(cache1).toContain("unreachable");
    expect(cache1).toContain("Connection refused");
  });

  it("says a transfer not counted from the host's store is an upper bound, and why", () => {
    const web22 = rowOf(text, "web22");
    expect(web22).toContain("at most 2 paths, 2.00 kB");
    expect(web22).toContain("current system unknown: whole closure counted");
    const agent = formatPlan({
      ...PLAN,
      hosts: [host({ host: "ag1", transfer: { paths: 1, bytes: 2560 } })],
    });
    expect(rowOf(agent, "ag1")).toContain("at most 1 path, 2.56 kB");
    expect(rowOf(agent, "ag1")).toContain("its store was not asked: counted from its system");
    expect(rowOf(text, "web1")).not.toMatch(/at most|not asked|unknown/);
  });

  it("notes a host that activates only for its secrets", () => {
    const text = formatPlan({
      ...PLAN,
      hosts: [host({ host: "web9", current: v2, secretsChange: true, transferBasis: "none" })],
    });
    expect(rowOf(text, "web9")).toMatch(
      /switch\s+0 paths, 0 B\s+already running; its secrets change$/,
    );
  });

  it("ends with the totals, an upper bound when any host's transfer is one", () => {
    expect(lines.at(-1)).toBe(
      "2 of 4 hosts change; at most 5 paths, 12.3 kB to transfer; 1 unreachable",
    );
    const exact = formatPlan({ ...PLAN, hosts: PLAN.hosts.filter((h) => h.host !== "web22") });
    expect(exact.split("\n").at(-1)).toBe(
      "2 of 3 hosts change; 5 paths, 12.3 kB to transfer; 1 unreachable",
    );
  });

  it("shows distinct paths when hosts share them, and a lone change in the singular", () => {
    const last = formatPlan({
      ...PLAN,
      hosts: PLAN.hosts.slice(0, 2),
      counts: { activate: 1, skip: 0, unreachable: 0 },
      changes: 1,
      totals: { paths: 4, bytes: 4000 },
      distinct: { paths: 2, bytes: 2000 },
      waves: [],
    })
      .split("\n")
      .at(-1);
    expect(last).toBe(
      "1 of 2 hosts changes; at most 4 paths, 4.00 kB to transfer (2 paths, 2.00 kB distinct)",
    );
  });

  it("says what changes package by package under the totals; --diff says all of it", () => {
    const diffs: DeployPlan["diffs"] = {
      groups: [
        {
          hosts: ["web1", "web22"],
          currentFrom: "cache",
          diff: {
            changed: [
              { name: "hello", before: ["2.12"], after: ["2.12.1"], sizeDelta: 8, kind: "upgrade" },
            ],
            added: [],
            removed: [],
            rebuilt: 0,
            sizeBefore: 100,
            sizeAfter: 108,
          },
        },
      ],
      unavailable: [],
      narinfosRead: 3,
    };
    const lines = formatPlan({ ...PLAN, diffs }).split("\n");
    const totals = lines.findIndex((l) => l.startsWith("2 of 4 hosts change"));
    expect(lines.slice(totals + 1)).toEqual([
      "package changes:",
      "  web1, web22: 1 changed (hello 2.12 → 2.12.1), +8 B",
    ]);
    const full = formatPlan({ ...PLAN, diffs }, { diff: true }).split("\n");
    expect(full.slice(totals + 1)).toEqual([
      "package changes:",
      "  web1, web22 (the running system's closure from the cache):",
      "    [U] hello 2.12 → 2.12.1",
      "    Closure size: 100 B → 108 B (+8 B)",
    ]);
  });

  it("handles an empty plan", () => {
    const empty = formatPlan({
      ...PLAN,
      hosts: [],
      counts: { activate: 0, skip: 0, unreachable: 0 },
      changes: 0,
      totals: { paths: 0, bytes: 0 },
      distinct: { paths: 0, bytes: 0 },
      waves: [],
    });
    expect(empty.split("\n").at(-1)).toBe("0 of 0 hosts change; 0 paths, 0 B to transfer");
  });
});

describe("the plan's systems of one name", () => {
  it("names two different systems of one name by the start of their hashes too", () => {
    const again = sp("3", "example-web-system-v1");
    const text = formatPlan({ ...PLAN, hosts: [host({ host: "web1", desired: again })] });
    const row = rowOf(text, "web1");
    expect(row).toContain("11111111-example-web-system-v1 (gen 3)");
    expect(row).toContain("33333333-example-web-system-v1");
  });

  it("shows the waves, each role's canaries first", () => {
    const text = formatPlan({
      ...PLAN,
      waves: [
        { wave: 1, kind: "canary", hosts: ["web1", "db1"] },
        { wave: 2, kind: "main", hosts: ["web22"] },
      ],
    });
    expect(text).toContain("waves:\n  1 (canary): web1, db1\n  2: web22");
  });

  it("names each role's canaries when the canary wave holds several roles", () => {
    const text = formatPlan({
      ...PLAN,
      hosts: [
        host({ host: "web1", role: "@web" }),
        host({ host: "db1", role: "@db db1" }),
        host({ host: "app1", role: "" }),
        host({ host: "web22", role: "@web" }),
      ],
      waves: [
        { wave: 1, kind: "canary", hosts: ["web1", "db1", "app1"] },
        { wave: 2, kind: "main", hosts: ["web22"] },
      ],
    });
    expect(text).toContain(
      "waves:\n  1 (canary): each role's own: @web: web1; @db db1: db1; the fleet's policy: app1\n  2: web22",
    );
  });
});

describe("a big plan: hosts grouped, those that need a person in full", () => {
  // Real plans of the planner: every host runs v2 but some; canary 1, parallel 10, as the lab's.
  const info = (path: StorePath, references: StorePath[] = []) => ({
    path,
    narSize: 1000,
    references,
  });
  const bigPlan = (
    count: number,
    stateOf: (name: string, i: number) => PlanTarget["state"],
  ): DeployPlan =>
    planDeploy({
      action: "switch",
      targets: Array.from({ length: count }, (_, i) => {
        const name = `lab${String(i + 1).padStart(4, "0")}`;
        return { host: name, desired: v2, state: stateOf(name, i) };
      }),
      pathInfos: new Map([
        [v1, info(v1)],
        [v2, info(v2)],
      ]),
      rollout: { canary: 1, parallel: 10 },
    });
  const running = (current: StorePath): PlanTarget["state"] => ({
    kind: "reported",
    current,
    generation: 4,
  });

  for (const count of [200, 1000]) {
    it(`fits one change among ${count} hosts in 40 lines and names the changing host`, () => {
      const plan = bigPlan(count, (_, i) => running(i === 136 ? v1 : v2));
      const lines = formatPlan(plan).split("\n");
      expect(lines.length).toBeLessThanOrEqual(40);
      expect(lines.join("\n")).toContain("lab0137");
      expect(lines).toContain(
        `${count} hosts in 2 groups (past 20 hosts the plan groups them; --json lists each):`,
      );
      const changing = lines.findIndex((l) =>
        /^1 +example-web-system-v1 +example-web-system-v2 +switch +at most 1 path/.test(l),
      );
      expect(changing).toBeGreaterThan(0);
      expect(lines[changing + 1]).toBe("    lab0137");
      expect(
        lines.some((l) =>
          new RegExp(
            `^${count - 1} +example-web-system-v2 +example-web-system-v2 +skip +- +up to date$`,
          ).test(l),
        ),
      ).toBe(true);
      expect(lines).toContain(`1 of ${count} hosts changes; at most 1 path, 1.00 kB to transfer`);
      expect(lines.slice(lines.indexOf("waves:") + 1)).toEqual(["  1 (canary): lab0137"]);
    });

    it(`keeps the waves of ${count} changing hosts to the first ones, a count and the last`, () => {
      const plan = bigPlan(count, () => running(v1));
      const lines = formatPlan(plan).split("\n");
      expect(lines.length).toBeLessThanOrEqual(40);
      // The canary, two more, a count and the last; every wave is in --json.
      expect(plan.waves).toHaveLength(1 + Math.ceil((count - 1) / 10));
      const waves = lines.slice(lines.indexOf("waves:") + 1);
      expect(waves).toHaveLength(5);
      expect(waves[0]).toBe("  1 (canary): lab0001");
      expect(waves[1]).toBe(
        "  2: lab0002, lab0003, lab0004, lab0005, lab0006 and 5 more (10 hosts)",
      );
      expect(waves[3]).toBe(`  … ${plan.waves.length - 4} more waves`);
      expect(waves[4]).toMatch(new RegExp(`^  ${plan.waves.length}: `));
    });
  }

  it("names every unreachable host and every refused host key, with its error", () => {
    const plan = bigPlan(1000, (name, i) =>
      i % 40 === 0
        ? { kind: "unreachable", error: `ssh: connect to host ${name} port 22: timed out` }
        : i % 40 === 1
          ? { kind: "unreachable", error: "Host key verification failed.", hostKey: true }
          : running(v2),
    );
    const text = formatPlan(plan);
    const lines = text.split("\n");
    expect(lines).toContain("50 hosts need a person:");
    for (const host of plan.hosts.filter((h) => h.action === "unreachable")) {
      const row = lines.find((l) => l.startsWith(`  ${host.host} `));
      expect(row, host.host).toMatch(
        / unreachable +- +(ssh: connect|Host key verification failed)/,
      );
    }
    // Grouped above: 25 unreachable, 25 refused host keys, each counted once.
    expect(
      lines.some((l) =>
        /^25 +\? +example-web-system-v2 +unreachable +- +host key refused$/.test(l),
      ),
    ).toBe(true);
    expect(
      lines.some((l) => /^25 +\? +example-web-system-v2 +unreachable +- +unreachable$/.test(l)),
    ).toBe(true);
    expect(lines.length).toBeLessThan(50 + 30);
  });

  it("calls a host that answered with something other than a status unreadable, not unreachable", () => {
    const plan = bigPlan(100, (_, i) =>
      i === 3
        ? {
            kind: "unreachable",
            error: "the reply is not an activation result: Welcome!",
            answerUnreadable: true,
          }
        : running(v2),
    );
    const lines = formatPlan(plan).split("\n");
    expect(lines).toContain("1 host needs a person:");
    expect(lines.find((l) => l.startsWith("  lab0004 "))).toMatch(
      / unreadable +- +the reply is not an activation result: Welcome!$/,
    );
    expect(
      lines.some((l) => /^1 +\? +example-web-system-v2 +unreachable +- +unreadable$/.test(l)),
    ).toBe(true);
    // The summary counts it apart from the hosts that did not answer.
    expect(lines.at(-1)).toMatch(/; 1 unreadable$/);
    expect(lines.at(-1)).not.toContain("unreachable");
  });

  it("lists in full a host whose system failed there, a pending boot and a stored record", () => {
    const plan = bigPlan(200, (_, i) =>
      i === 5
        ? { kind: "reported", current: v2, generation: 4, failed: "nginx.service failed" }
        : i === 6
          ? {
              kind: "reported",
              current: v2,
              generation: 4,
              stored: { at: "2026-01-02T03:04:05Z", why: "SSM timed out" },
            }
          : running(v2),
    );
    const lines = formatPlan(plan).split("\n");
    expect(lines).toContain("2 hosts need a person:");
    expect(lines.find((l) => l.startsWith("  lab0006 "))).toContain("nginx.service failed");
    expect(lines.find((l) => l.startsWith("  lab0007 "))).toContain(
      "status record of 2026-01-02T03:04:05Z says (SSM timed out)",
    );
    // Its group's note has no message of its own: hosts that failed alike group together.
    expect(
      lines.some((l) =>
        /^1 .* switch .* its system failed there, so it is activated again/.test(l),
      ),
    ).toBe(true);
  });

  it("says of a host whose bake never finished that it is activated and baked again, and lists it in full", () => {
    const unbaked = {
      rollout: "0123456789ab",
      why: "its bake was interrupted",
      before: v1,
      beforeGeneration: 3,
    };
    const plan: DeployPlan = {
      ...PLAN,
      hosts: [host({ host: "web1", current: v2, generation: 4, unbaked })],
      counts: { activate: 1, skip: 0, unreachable: 0 },
    };
    expect(rowOf(formatPlan(plan), "web1")).toContain(
      "its bake in rollout 0123456789ab never finished (its bake was interrupted), so it is activated and baked again",
    );
    const big = bigPlan(30, () => running(v2));
    const many: DeployPlan = {
      ...big,
      hosts: big.hosts.map((h, i) => (i === 3 ? { ...h, action: "activate", unbaked } : h)),
    };
    const lines = formatPlan(many).split("\n");
    expect(lines).toContain("1 host needs a person:");
    expect(lines.find((l) => l.startsWith("  lab0004 "))).toContain("rollout 0123456789ab");
  });

  it("keeps the per-host table at 20 hosts", () => {
    const plan = bigPlan(20, () => running(v2));
    const text = formatPlan(plan);
    expect(text.split("\n")[0]).toMatch(/^host +current/);
    for (const h of plan.hosts) expect(rowOf(text, h.host)).toContain("up to date");
  });
});
