// The rollout record's key layout (newest first in a LIST), its stored form, and its strict
// parsing: every malformed field is refused by name, and texts are made safe to show.
import { describe, expect, it } from "vitest";
import { InputError } from "../errors.js";
import {
  formatRolloutRecord,
  isRolloutKey,
  PACE_HOSTS_KEPT,
  parseRolloutRecord,
  type RolloutRecord,
  rolloutKey,
} from "./rollout.js";

const SYSTEM = "/nix/store/6jw91l3wjqa85c5n7z3hsz1c903jifh8-example-web-system-v1";

const RECORD: RolloutRecord = {
  version: 1,
  id: "0123456789ab",
  mode: "ssh",
  action: "switch",
  state: "running",
  stopped: null,
  waves: [
    {
      index: 1,
      kind: "canary",
      hosts: [{ host: "web1", state: "activating", phase: "copy", system: SYSTEM, message: null }],
    },
    {
      index: 2,
      kind: "main",
      hosts: [
        { host: "web2", state: "failed", phase: "health", system: SYSTEM, message: "HTTP 503" },
        { host: "web3", state: "pending", phase: null, system: null, message: null },
      ],
    },
  ],
  startedAt: "2026-11-25T10:00:00.000Z",
  updatedAt: "2026-11-25T10:00:07.000Z",
};

/** RECORD as plain JSON, to be broken one field at a time. */
function plain(): Record<string, unknown> & { waves: Record<string, unknown>[] } {
  return JSON.parse(JSON.stringify(RECORD));
}

function hostOf(value: ReturnType<typeof plain>, wave = 0, host = 0): Record<string, unknown> {
  const hosts = value.waves[wave]?.hosts as Record<string, unknown>[] | undefined;
  const entry = hosts?.[host];
  if (entry === undefined) throw new Error(`no host ${host} in wave ${wave}`);
  return entry;
}

function parse(value: unknown): RolloutRecord {
  return parseRolloutRecord(Buffer.from(JSON.stringify(value)), "rec");
}

/** The InputError parsing `value` fails with (the test fails if it parses). */
function refusal(value: unknown): InputError {
  try {
    parse(value);
  } catch (err) {
    if (err instanceof InputError) return err;
    throw err;
  }
  throw new Error("the record parsed");
}

describe("rollout keys", () => {
  it("puts the inverted start time, 13 digits, and the id under status/rollouts/", () => {
    expect(rolloutKey(new Date("2026-11-25T10:00:00.000Z"), "0123456789ab")).toBe(
      "status/rollouts/8204399199999-0123456789ab.json",
    );
    expect(rolloutKey(new Date(0), "deadbeef")).toBe("status/rollouts/9999999999999-deadbeef.json");
    // Padded to 13 digits, so keys of far-apart times still sort by time.
    expect(rolloutKey(new Date(9_000_000_000_000), "deadbeef")).toBe(
      "status/rollouts/0999999999999-deadbeef.json",
    );
  });

  it("sorts a later start before an earlier one, whatever the ids", () => {
    const earlier = rolloutKey(new Date("2026-11-25T10:00:00.000Z"), "ffffffff");
    const later = rolloutKey(new Date("2026-11-25T10:00:00.001Z"), "00000000");
    const muchLater = rolloutKey(new Date("2031-01-01T00:00:00.000Z"), "aaaaaaaa");
    expect([earlier, later, muchLater].sort()).toEqual([muchLater, later, earlier]);
  });

  it("accepts only the keys rolloutKey makes", () => {
    expect(isRolloutKey(rolloutKey(new Date("2026-11-25T10:00:00.000Z"), "0123456789ab"))).toBe(
      true,
    );
    expect(isRolloutKey(`status/rollouts/8204399199999-${"a".repeat(32)}.json`)).toBe(true);
    for (const key of [
      "status/rollouts/8204399199999-0123456.json", // id of 7
      `status/rollouts/8204399199999-${"a".repeat(33)}.json`, // id of 33
      "status/rollouts/8204399199999-0123456789AB.json", // upper case
      "status/rollouts/820439919999-0123456789ab.json", // 12 digits
      "status/rollouts/82043991999990-0123456789ab.json", // 14 digits
      "status/rollouts/8204399199999-0123456789ab", // no .json
      "status/rollouts/8204399199999-0123456789ab.json.tmp",
      "status/rollouts/x/8204399199999-0123456789ab.json",
      "status/rollout/8204399199999-0123456789ab.json",
      "prefix/status/rollouts/8204399199999-0123456789ab.json",
      "status/rollouts/8204399199999_0123456789ab.json",
    ]) {
      expect([key, isRolloutKey(key)]).toEqual([key, false]);
    }
  });
});

describe("rollout records", () => {
  it("shows the flakes a record names without the credentials an older writer left in them", () => {
    const value = {
      ...plain(),
      by: "ci@runner",
      sources: [
        {
          flake: "git+https://bot:p@ss_SECRET@github.com/acme/fleet?ref=prod",
          rev: null,
          dirty: null,
        },
        { flake: "https://example.org/f.tar.gz?access_token=ghp_SECRET", rev: null, dirty: null },
      ],
    };
    const record = parse(value);
    expect(record.sources?.map((s) => s.flake)).toEqual([
      "git+https://github.com/acme/fleet?ref=prod",
      "https://example.org/f.tar.gz",
    ]);
    expect(JSON.stringify(record)).not.toContain("SECRET");
  });

  it("round-trips through its stored form, one JSON line", () => {
    const bytes = formatRolloutRecord(RECORD);
    const text = Buffer.from(bytes).toString("utf8");
    expect(text.endsWith("}\n")).toBe(true);
    expect(text.split("\n")).toHaveLength(2);
    expect(parseRolloutRecord(bytes, "rec")).toEqual(RECORD);
    const stopped: RolloutRecord = {
      ...RECORD,
      mode: "agent",
      action: "boot",
      state: "interrupted",
      stopped: "canary wave failed",
    };
    expect(parseRolloutRecord(formatRolloutRecord(stopped), "rec")).toEqual(stopped);
  });

  it("keeps how fast the hosts fetched, and refuses a pace that is not bytes and seconds", () => {
    const paced: RolloutRecord = {
      ...RECORD,
      fetchPace: {
        whole: { bytes: 80_000_000, seconds: 64, hosts: ["edge-1", "edge-2"] },
        rebuilt: { bytes: 8, seconds: 0.5 },
      },
    };
    expect(parseRolloutRecord(formatRolloutRecord(paced), "rec")).toEqual(paced);
    const bad = (fetchPace: unknown) => refusal({ ...plain(), fetchPace }).message;
    expect(bad([])).toBe("rec: fetchPace is not a JSON object");
    expect(bad({ whole: { bytes: -1, seconds: 2 } })).toBe(
      "rec: fetchPace.whole needs bytes and seconds, numbers from 0",
    );
    expect(bad({ rebuilt: { bytes: 5 } })).toBe(
      "rec: fetchPace.rebuilt needs bytes and seconds, numbers from 0",
    );
    const hostsError = `rec: fetchPace.whole.hosts must be at most ${PACE_HOSTS_KEPT} host names`;
    for (const hosts of ["edge-1", [7], ["no spaces"], Array(PACE_HOSTS_KEPT + 1).fill("h")]) {
      expect(bad({ whole: { bytes: 1, seconds: 1, hosts } })).toBe(hostsError);
    }
  });

  it("refuses what is not JSON, or not an object", () => {
    const notJson = (() => {
      try {
        parseRolloutRecord(Buffer.from("{oops"), "rec");
      } catch (err) {
        return err;
      }
      return undefined;
    })();
    expect(notJson).toBeInstanceOf(InputError);
    expect((notJson as InputError).code).toBe("rollout-malformed");
    expect((notJson as InputError).message).toMatch(/^rec: not JSON \(.+\)$/);
    expect(refusal([RECORD]).message).toBe("rec: the record is not a JSON object");
    expect(refusal(null).message).toBe("rec: the record is not a JSON object");
  });

  const cases: [string, (r: ReturnType<typeof plain>) => void, string][] = [
    ["version 2", (r) => (r.version = 2), "rec: unsupported version"],
    ["version as text", (r) => (r.version = "1"), "rec: unsupported version"],
    ["no version", (r) => delete r.version, "rec: unsupported version"],
    ["an id not hex", (r) => (r.id = "0123456789xy"), `rec: bad "id"`],
    ["an id of 7", (r) => (r.id = "0123456"), `rec: bad "id"`],
    ["an id of 33", (r) => (r.id = "a".repeat(33)), `rec: bad "id"`],
    ["an id as a number", (r) => (r.id = 12345678), `rec: bad "id"`],
    ["an unknown mode", (r) => (r.mode = "ftp"), `rec: "mode" must be one of ssh, ssm, agent`],
    [
      "an unknown action",
      (r) => (r.action = "reboot"),
      `rec: "action" must be one of switch, boot, test, dry-activate`,
    ],
    [
      "an unknown state",
      (r) => (r.state = "done"),
      `rec: "state" must be one of running, paused, succeeded, partial, failed, interrupted, aborted`,
    ],
    ["stopped as a number", (r) => (r.stopped = 3), `rec: "stopped" must be a string or null`],
    ["no stopped", (r) => delete r.stopped, `rec: "stopped" must be a string or null`],
    ["startedAt not a date", (r) => (r.startedAt = "yesterday"), `rec: "startedAt" is not a date`],
    ["startedAt a number", (r) => (r.startedAt = 1_700_000_000), `rec: "startedAt" is not a date`],
    [
      "startedAt too long",
      (r) => (r.startedAt = `2026-11-25T10:00:00.000Z${" ".repeat(17)}`),
      `rec: "startedAt" is not a date`,
    ],
    ["updatedAt not a date", (r) => (r.updatedAt = "2026-13-45"), `rec: "updatedAt" is not a date`],
    ["waves an object", (r) => (r.waves = {} as never), `rec: "waves" must be a list`],
    ["no waves", (r) => delete (r as Record<string, unknown>).waves, `rec: "waves" must be a list`],
    ["a wave not an object", (r) => (r.waves = [3] as never), "rec: waves[0] is not a JSON object"],
    [
      "wave index 0",
      (r) => ((r.waves[1] as Record<string, unknown>).index = 0),
      "rec: waves[1].index must be a whole number from 1",
    ],
    [
      "wave index 1.5",
      (r) => ((r.waves[0] as Record<string, unknown>).index = 1.5),
      "rec: waves[0].index must be a whole number from 1",
    ],
    [
      "wave index as text",
      (r) => ((r.waves[0] as Record<string, unknown>).index = "1"),
      "rec: waves[0].index must be a whole number from 1",
    ],
    [
      "an unknown wave kind",
      (r) => ((r.waves[0] as Record<string, unknown>).kind = "beta"),
      `rec: "waves[0].kind" must be one of canary, main`,
    ],
    [
      "hosts not a list",
      (r) => ((r.waves[0] as Record<string, unknown>).hosts = "web1"),
      "rec: waves[0].hosts must be a list",
    ],
    [
      "a host entry not an object",
      (r) => ((r.waves[1] as Record<string, unknown>).hosts = ["web2"]),
      "rec: waves[1].hosts[0] is not a JSON object",
    ],
    [
      "a host name with capitals",
      (r) => (hostOf(r, 1, 1).host = "Web3"),
      "rec: waves[1].hosts[1].host is not a host name",
    ],
    [
      "a host name with a slash",
      (r) => (hostOf(r).host = "../web1"),
      "rec: waves[0].hosts[0].host is not a host name",
    ],
    [
      "a host name not a string",
      (r) => (hostOf(r).host = 1),
      "rec: waves[0].hosts[0].host is not a host name",
    ],
    [
      "an unknown host state",
      (r) => (hostOf(r).state = "done"),
      `rec: "waves[0].hosts[0].state" must be one of pending, activating, health, baking, confirmed, rolled-back, failed, unreachable, not-started, up-to-date, refused, left, skipped`,
    ],
    [
      "an unknown phase",
      (r) => (hostOf(r).phase = "install"),
      "rec: waves[0].hosts[0].phase is not a step",
    ],
    [
      "a missing phase",
      (r) => delete hostOf(r).phase,
      "rec: waves[0].hosts[0].phase is not a step",
    ],
    [
      "a system outside the store",
      (r) => (hostOf(r, 1, 0).system = "/tmp/system"),
      "rec: waves[1].hosts[0].system is not a store path",
    ],
    [
      "a system with a short hash",
      (r) => (hostOf(r).system = "/nix/store/abc-system"),
      "rec: waves[0].hosts[0].system is not a store path",
    ],
    [
      "a message not a string",
      (r) => (hostOf(r).message = 42),
      "rec: waves[0].hosts[0].message must be a string or null",
    ],
  ];

  it.each(cases)("refuses %s, naming the field", (_name, breakIt, message) => {
    const value = plain();
    breakIt(value);
    const err = refusal(value);
    expect(err.code).toBe("rollout-malformed");
    expect(err.message).toBe(message);
  });

  it("shows messages without control characters but keeps newlines and tabs", () => {
    const value = plain();
    hostOf(value, 1, 0).message = "bad\u0007 bell\u001b[31m red\u009b\nnext\tline";
    value.stopped = "stop\u0000ped";
    const parsed = parse(value);
    expect(parsed.waves[1]?.hosts[0]?.message).toBe(
      "bad\ufffd bell\ufffd[31m red\ufffd\nnext\tline",
    );
    expect(parsed.stopped).toBe("stop\ufffdped");
  });

  it("clips long messages to 2000 characters, the mark of the cut included", () => {
    const value = plain();
    hostOf(value).message = "x".repeat(2000);
    hostOf(value, 1, 0).message = `${"y".repeat(2000)}zzz`;
    value.stopped = "s".repeat(2001);
    const parsed = parse(value);
    expect(parsed.waves[0]?.hosts[0]?.message).toBe("x".repeat(2000));
    expect(parsed.waves[1]?.hosts[0]?.message).toBe(`${"y".repeat(1999)}…`);
    expect(parsed.stopped).toBe(`${"s".repeat(1999)}…`);
  });
});
