import { describe, expect, it } from "vitest";
import type { PlanDiffs } from "../fleet/plan-diffs.js";
import type { ClosureDiff } from "../nix/closure-diff.js";
import { formatPlanDiffs } from "./plan-diff-format.js";

const HELLO: ClosureDiff = {
  changed: [{ name: "hello", before: ["2.12"], after: ["2.12.1"], sizeDelta: 8, kind: "upgrade" }],
  added: [],
  removed: [],
  rebuilt: 1,
  sizeBefore: 1362,
  sizeAfter: 1370,
};
const NEW_TOOL: ClosureDiff = {
  changed: [],
  added: [{ name: "jq", versions: ["1.7.1"], size: 2048 }],
  removed: [],
  rebuilt: 0,
  sizeBefore: 1000,
  sizeAfter: 3048,
};

const DIFFS: PlanDiffs = {
  groups: [
    { hosts: ["web1", "web2", "web3"], currentFrom: "cache", diff: HELLO },
    { hosts: ["db1"], currentFrom: "local-store", diff: NEW_TOOL },
  ],
  unavailable: [
    {
      host: "old1",
      reason: "neither the fleet's cache nor the local store has its system /nix/store/x",
    },
  ],
  narinfosRead: 2,
};

describe("formatPlanDiffs", () => {
  it("gives one line per group of hosts, and why a host has no diff", () => {
    expect(formatPlanDiffs(DIFFS, false)).toEqual([
      "package changes:",
      "  web1, web2, web3: 1 changed (hello 2.12 → 2.12.1), 1 rebuilt, +8 B",
      "  db1: 1 added, +2.0 KiB",
      "  old1: no diff: neither the fleet's cache nor the local store has its system /nix/store/x",
    ]);
  });

  it("with --diff, every change of each group, and where the running closure came from", () => {
    expect(formatPlanDiffs(DIFFS, true)).toEqual([
      "package changes:",
      "  web1, web2, web3 (the running system's closure from the cache):",
      "    [U] hello 2.12 → 2.12.1",
      "    1 package rebuilt with the same version",
      "    Closure size: 1.3 KiB → 1.3 KiB (+8 B)",
      "  db1 (the running system's closure from the local store):",
      "    [A] jq 1.7.1",
      "    Closure size: 1000 B → 3.0 KiB (+2.0 KiB)",
      "  old1: no diff: neither the fleet's cache nor the local store has its system /nix/store/x",
    ]);
  });

  it("counts the hosts past a few on a summary line; --diff names them all", () => {
    const hosts = Array.from({ length: 200 }, (_, i) => `web${i + 1}`);
    const many: PlanDiffs = { ...DIFFS, groups: [{ hosts, currentFrom: "cache", diff: HELLO }] };
    expect(formatPlanDiffs(many, false)[1]).toBe(
      "  web1, web2, web3, web4, web5 and 195 more: 1 changed (hello 2.12 → 2.12.1), 1 rebuilt, +8 B",
    );
    expect(formatPlanDiffs(many, true)[1]).toContain("web199, web200 (");
  });

  it("shows nothing when no host changes system", () => {
    expect(formatPlanDiffs(undefined, true)).toEqual([]);
    expect(formatPlanDiffs({ groups: [], unavailable: [], narinfosRead: 0 }, false)).toEqual([]);
  });

  it("lets no control character from a store's error reach the terminal", () => {
    const lines = formatPlanDiffs(
      {
        groups: [],
        unavailable: [{ host: "web1", reason: "reading the fleet's cache failed: \x1b[2Jboom" }],
        narinfosRead: 0,
      },
      false,
    );
    expect(lines[1]).toBe("  web1: no diff: reading the fleet's cache failed: \ufffd[2Jboom");
  });
});

describe("many hosts without a diff", () => {
  it("says each reason once, with its hosts counted", () => {
    const unavailable = Array.from({ length: 200 }, (_, i) => ({
      host: `lab${i + 1}`,
      reason:
        i < 150 ? "it runs no system (a fresh host)" : "its running closure is not in the cache",
    }));
    expect(formatPlanDiffs({ groups: [], unavailable, narinfosRead: 0 }, false)).toEqual([
      "package changes:",
      "  lab1, lab2, lab3, lab4, lab5 and 145 more: no diff: it runs no system (a fresh host)",
      "  lab151, lab152, lab153, lab154, lab155 and 45 more: no diff: its running closure is not in the cache",
    ]);
  });
});
