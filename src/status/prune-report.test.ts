import { describe, expect, it } from "vitest";
import { describePrune, readPruneReport } from "./prune-report.js";
import { formatStatusRecord, parseStatusRecord, type StatusRecord } from "./status.js";

const REPORT = {
  ok: true,
  kept: [4, 5],
  removed: [1, 2, 3],
  gc: "done",
  deletedPaths: 12,
  freedMiB: 3.5,
} as const;

describe("readPruneReport", () => {
  it("reads activate.sh's prune result, leaving out what is not the report's", () => {
    expect(readPruneReport({ ...REPORT, command: "prune", generation: 5 })).toEqual(REPORT);
    expect(readPruneReport({ ok: false, message: "cannot remove" })).toEqual({
      ok: false,
      message: "cannot remove",
    });
  });

  it("says what is wrong with an answer that is not one", () => {
    expect(readPruneReport([])).toBe("not a JSON object");
    expect(readPruneReport({ ...REPORT, ok: "yes" })).toBe('"ok" must be true or false');
    expect(readPruneReport({ ...REPORT, kept: [1, "2"] })).toMatch(/"kept" must be a list/);
    expect(readPruneReport({ ...REPORT, removed: null })).toMatch(/"removed" must be a list/);
    expect(readPruneReport({ ...REPORT, gc: "maybe" })).toMatch(/"gc" must be one of done/);
    expect(readPruneReport({ ...REPORT, deletedPaths: 1.5 })).toMatch(/"deletedPaths"/);
    expect(readPruneReport({ ...REPORT, freedMiB: -1 })).toMatch(/"freedMiB"/);
    expect(readPruneReport({ ok: false })).toBe('"message" missing');
  });
});

describe("describePrune", () => {
  it("says what went and what stayed, in one line", () => {
    expect(describePrune(REPORT)).toBe(
      "removed generations 1, 2, 3; kept 4, 5; garbage collected: 12 paths, 3.5 MiB freed",
    );
    expect(describePrune({ ...REPORT, removed: [], gc: "timed-out" })).toBe(
      "no generation to remove; kept 4, 5; garbage collection stopped at its time limit",
    );
    expect(describePrune({ ok: false, message: "cannot remove" })).toBe(
      "pruning failed: cannot remove",
    );
  });
});

describe("a status record's pruned field", () => {
  const record: StatusRecord = {
    version: 1,
    host: "web1",
    mode: "agent",
    channel: "prod",
    seq: 3,
    desired: "/nix/store/00000000000000000000000000000000-system",
    current: "/nix/store/00000000000000000000000000000000-system",
    generation: 5,
    pruned: REPORT,
    state: "success",
    phase: null,
    error: null,
    rolledBack: null,
    startedAt: "2026-11-23T10:00:00.000Z",
    updatedAt: "2026-11-23T10:00:05.000Z",
  };

  it("survives the store", () => {
    expect(parseStatusRecord(formatStatusRecord(record), "r")).toEqual(record);
  });

  it("is refused when malformed, naming the field", () => {
    const bad = Buffer.from(JSON.stringify({ ...record, pruned: { ok: true } }));
    expect(() => parseStatusRecord(bad, "status/hosts/web1.json")).toThrow(/"pruned": "kept"/);
  });
});
