// The fold's own rules, beside the property test of its writers
// (deploy/push-records.property.test.ts): a generation number is never given to a second
// system, a generation is named only with the system it holds, and times stay in order.
import { describe, expect, it } from "vitest";
import { nextRecord, runningGeneration } from "./next-record.js";
import type { RecordParts } from "./status.js";

const A = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-web-v1";
const B = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-web-v2";

const runs = (
  current: string,
  generation: number | null,
  times: Partial<Pick<RecordParts, "startedAt" | "updatedAt">> = {},
): RecordParts => ({
  host: "web1",
  mode: "agent",
  release: null,
  desired: current,
  system: { current, generation },
  what: { state: "success", phase: null, error: null, rolledBack: null },
  startedAt: "2026-11-25T10:00:00.000Z",
  updatedAt: "2026-11-25T10:00:05.000Z",
  ...times,
});

describe("a record's generation", () => {
  it("is never a number the record gave another system (Nix made it again, or a new install)", () => {
    const first = nextRecord(undefined, runs(A, 3));
    expect(nextRecord(first, runs(B, 3)).generation).toBeNull();
    // Another number, or the same system: named.
    expect(nextRecord(first, runs(B, 4)).generation).toBe(4);
    expect(nextRecord(first, runs(A, 3)).generation).toBe(3);
  });

  it("is the profile's only while the profile holds the system the host runs", () => {
    expect(runningGeneration({ current: A, profile: A, generation: 5 })).toBe(5);
    // A boot pending, or a boot loader that fell back: generation 5 holds another system.
    expect(runningGeneration({ current: A, profile: B, generation: 5 })).toBeNull();
    expect(runningGeneration({ current: A, profile: undefined, generation: 5 })).toBe(5);
    expect(runningGeneration({ current: A, profile: A, generation: undefined })).toBeNull();
  });
});

describe("a record's times", () => {
  it("never go backwards: a writer whose clock is behind does not date the record earlier", () => {
    const first = nextRecord(undefined, runs(A, 3));
    const next = nextRecord(
      first,
      runs(A, 3, {
        startedAt: "2026-11-25T09:59:00.000Z",
        updatedAt: "2026-11-25T10:00:01.000Z",
      }),
    );
    expect(next.updatedAt).toBe("2026-11-25T10:00:05.000Z");
    expect(next.startedAt).toBe("2026-11-25T09:59:00.000Z");
  });

  it("never start after they were updated", () => {
    const record = nextRecord(undefined, runs(A, 3, { startedAt: "2026-11-25T10:00:06.000Z" }));
    expect(record.startedAt).toBe("2026-11-25T10:00:05.000Z");
  });
});
