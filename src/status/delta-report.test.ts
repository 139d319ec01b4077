import { describe, expect, it } from "vitest";
import {
  combinedDeltaReport,
  type DeltaReport,
  readDeltaReport,
  sumDeltaReports,
} from "./delta-report.js";
import { nextRecord } from "./next-record.js";
import { formatStatusRecord, parseStatusRecord, type RecordParts } from "./status.js";

const REPORT: DeltaReport = {
  paths: 12,
  bytes: 40_000,
  narBytes: 900_000,
  wholePaths: 3,
  wholeNarBytes: 5_000,
  failed: 1,
};

describe("a host's delta report", () => {
  it("is read back as written, or as the reason the step did not run", () => {
    expect(readDeltaReport(JSON.parse(JSON.stringify(REPORT)))).toEqual(REPORT);
    expect(readDeltaReport({ ...REPORT, bytes: null })).toEqual({ ...REPORT, bytes: null });
    expect(readDeltaReport({ skipped: "no base\u001b[2J here" })).toEqual({
      skipped: "no base\ufffd[2J here",
    });
  });

  it("is refused when a count is not a whole number, naming it", () => {
    expect(readDeltaReport({ ...REPORT, paths: -1 })).toBe('"paths" must be a whole number');
    expect(readDeltaReport({ ...REPORT, failed: null })).toBe('"failed" must be a whole number');
    expect(readDeltaReport({ ...REPORT, narBytes: "9" })).toBe(
      '"narBytes" must be a whole number or null',
    );
    expect(readDeltaReport({ skipped: 3 })).toBe('"skipped" must be a string');
    expect(readDeltaReport([])).toBe("not a JSON object");
  });

  it("adds up over hosts, skipping the ones that did not count, unknown bytes staying unknown", () => {
    const totals = sumDeltaReports([REPORT, { skipped: "off" }, undefined, REPORT]);
    expect(totals).toEqual({
      counted: 2,
      paths: 24,
      bytes: 80_000,
      narBytes: 1_800_000,
      wholePaths: 6,
      wholeNarBytes: 10_000,
      failed: 2,
    });
    expect(sumDeltaReports([REPORT, { ...REPORT, bytes: null }]).bytes).toBeNull();
    expect(combinedDeltaReport([{ skipped: "off" }])).toBeUndefined();
    expect(combinedDeltaReport([REPORT])).toEqual(REPORT);
  });
});

const A = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-web-v1";
const B = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-web-v2";

const applied = (current: string, delta?: DeltaReport): RecordParts => ({
  host: "web1",
  mode: "ssh",
  release: null,
  desired: current,
  system: { current, generation: 3 },
  what: {
    state: "success",
    phase: null,
    error: null,
    rolledBack: null,
    ...(delta === undefined ? {} : { delta }),
  },
  startedAt: "2026-11-25T10:00:00.000Z",
  updatedAt: "2026-11-25T10:00:05.000Z",
});

describe("a status record's delta field", () => {
  it("survives the store and is refused when malformed, naming the field", () => {
    const record = nextRecord(undefined, applied(A, REPORT));
    expect(parseStatusRecord(formatStatusRecord(record), "r").delta).toEqual(REPORT);
    const bad = Buffer.from(JSON.stringify({ ...record, delta: { ...REPORT, paths: "x" } }));
    expect(() => parseStatusRecord(bad, "status/hosts/web1.json")).toThrow(
      /web1\.json.*"delta": "paths" must be a whole number/,
    );
  });

  it("is carried while the host runs the system it came with, and dropped when it moves", () => {
    const first = nextRecord(undefined, applied(A, REPORT));
    // A later deploy found it up to date, or failed before anything changed.
    expect(nextRecord(first, applied(A)).delta).toEqual(REPORT);
    // It moved to a system fetched whole (or by a writer that does not say).
    expect(nextRecord(first, applied(B)).delta).toBeUndefined();
    // It moved by delta again: the new report.
    const next = { ...REPORT, paths: 2 };
    expect(nextRecord(first, applied(B, next)).delta).toEqual(next);
  });
});
