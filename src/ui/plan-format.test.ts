import { describe, expect, it } from "vitest";
import type { DeployPlan, HostPlan } from "../fleet/plan.js";
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
        host({ host: "a1", pinning: { pinned: true, by: "agent" } }),
        host({ host: "old" }),
      ],
    });
    expect(text.split("\n").slice(-5)).toEqual([
      "trust:",
      "  web1, web2: pinned: nixship-activate, keys c-1",
      "  web3: not pinned: they take the deployer's trust (they have nixship-activate: set their sudo to use it)",
      "  db1: not pinned: they take the deployer's trust",
      "  a1: pinned: their agents' own keys",
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

describe("the plan's systems of one name (issue 46)", () => {
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
});
