import { describe, expect, it } from "vitest";
import { nextRecord } from "./next-record.js";
import {
  formatStatusRecord,
  parseStatusRecord,
  type RecordParts,
  type StatusRecord,
} from "./status.js";

const A = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-web-v1";
const B = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-web-v2";
const ROLLOUT = "status/rollouts/8235869599999-0123456789ab.json";
const LATER = "status/rollouts/8235869500000-ba9876543210.json";

const deployed = (current: string, origin?: RecordParts["origin"]): RecordParts => ({
  host: "web1",
  mode: "ssh",
  release: null,
  desired: current,
  system: { current, generation: 3 },
  ...(origin === undefined ? {} : { origin }),
  what: { state: "success", phase: null, error: null, rolledBack: null },
  startedAt: "2026-11-25T10:00:00.000Z",
  updatedAt: "2026-11-25T10:00:05.000Z",
});

const roundTrip = (r: StatusRecord) => parseStatusRecord(formatStatusRecord(r), "test");

describe("what put a host's system there (a record's origin)", () => {
  it("is written, read back, and absent in records older than it", () => {
    const first = nextRecord(undefined, deployed(A, { kind: "rollout", key: ROLLOUT }));
    expect(roundTrip(first).origin).toEqual({ kind: "rollout", key: ROLLOUT });
    const { origin: _, ...old } = first;
    expect(roundTrip(old as StatusRecord).origin).toBeUndefined();
  });

  it("is carried while the host runs the same system, and dropped when it moves unexplained", () => {
    const first = nextRecord(undefined, deployed(A, { kind: "rollout", key: ROLLOUT }));
    // A later deploy found it up to date: it says nothing of the origin.
    expect(nextRecord(first, deployed(A)).origin).toEqual({ kind: "rollout", key: ROLLOUT });
    // Something moved it without saying what (a record of a writer that does not know): the
    // record says it does not know, which a reader tells from a record older than origins.
    expect(nextRecord(first, deployed(B)).origin).toEqual({ kind: "unknown" });
    // A deploy that moved it names itself.
    expect(nextRecord(first, deployed(B, { kind: "rollout", key: LATER })).origin).toEqual({
      kind: "rollout",
      key: LATER,
    });
    // A writer that knows it does not know (an activation without a rollout record).
    expect(nextRecord(first, deployed(A, null)).origin).toEqual({ kind: "unknown" });
    // A first record that names none (an agent that lost its state and finds its system there).
    expect(roundTrip(nextRecord(undefined, deployed(A))).origin).toEqual({ kind: "unknown" });
  });

  it("is checked: a bad key or release is refused, a kind of a newer nixship reads as none", () => {
    const base = JSON.parse(
      Buffer.from(formatStatusRecord(nextRecord(undefined, deployed(A)))).toString(),
    ) as Record<string, unknown>;
    const parse = (origin: unknown) =>
      parseStatusRecord(Buffer.from(JSON.stringify({ ...base, origin })), "web1.json");
    expect(() => parse({ kind: "rollout", key: "status/hosts/web2.json" })).toThrow(
      /web1\.json: "origin": "key" is not a rollout record's key/,
    );
    expect(() => parse({ kind: "release", channel: "prod", seq: 0 })).toThrow(/seq/);
    expect(parse({ kind: "release", channel: "prod", seq: 3 }).origin).toEqual({
      kind: "release",
      channel: "prod",
      seq: 3,
    });
    expect(parse({ kind: "rollback", by: "root@x\u001b" }).origin).toEqual({
      kind: "rollback",
      by: "root@x\ufffd",
    });
    expect(parse({ kind: "signed-by-moon" }).origin).toBeUndefined();
  });
});
