import { describe, expect, it } from "vitest";
import { answerKey, formatAnswer, type PauseAnswer, parseAnswer } from "./pause-answer.js";
import {
  formatRolloutRecord,
  isRolloutKey,
  parseRolloutRecord,
  type RolloutRecord,
} from "./rollout.js";

const answer: PauseAnswer = {
  rollout: "0123456789ab",
  afterWave: 1,
  action: "abort",
  by: "ops@deployer",
  at: "2026-11-25T10:00:00.000Z",
};
const expected = { rollout: "0123456789ab", afterWave: 1 };
const parse = (value: unknown) =>
  parseAnswer(Buffer.from(JSON.stringify(value)), expected, "the answer");

describe("pause answers", () => {
  it("lie under status/rollouts/, after every record's key, and are no record's key", () => {
    const key = answerKey("0123456789ab", 3);
    expect(key).toBe("status/rollouts/answers/0123456789ab/3.json");
    expect(isRolloutKey(key)).toBe(false);
    expect(key > "status/rollouts/9999999999999-ffffffffffff.json").toBe(true);
    expect(() => answerKey("../x", 1)).toThrow(/bad rollout id/);
  });

  it("round-trip through their stored form, a deadline's marked", () => {
    expect(parseAnswer(formatAnswer(answer), expected, "a")).toEqual(answer);
    const timedOut = { ...answer, timedOut: true as const };
    expect(parseAnswer(formatAnswer(timedOut), expected, "a")).toEqual(timedOut);
  });

  it("refuse one for another rollout or wave, and malformed ones, naming what", () => {
    const stored = { version: 1, ...answer };
    expect(() => parse({ ...stored, afterWave: 2 })).toThrow(
      /the answer: it answers "0123456789ab" after wave 2, not rollout 0123456789ab after wave 1/,
    );
    expect(() => parse({ ...stored, action: "maybe" })).toThrow(
      /"action" must be one of resume, abort, interrupted/,
    );
    expect(() => parse({ ...stored, version: 2 })).toThrow(/unsupported version/);
    expect(() => parse({ ...stored, at: "soon" })).toThrow(/"at" is not a date/);
    expect(() => parse({ ...stored, timedOut: false })).toThrow(/"timedOut" must be true/);
    expect(() => parseAnswer(Buffer.from("{"), expected, "x")).toThrow(/x: not JSON/);
  });

  it("show who wrote them without control characters", () => {
    expect(parse({ version: 1, ...answer, by: "ops\u001b[2J@x" }).by).not.toContain("\u001b");
  });
});

describe("a rollout record's pauses", () => {
  const record: RolloutRecord = {
    version: 1,
    id: "0123456789ab",
    mode: "ssh",
    action: "switch",
    state: "aborted",
    stopped: "aborted by ops@deployer",
    waves: [],
    pauses: [
      {
        afterWave: 1,
        since: "2026-11-25T10:00:00.000Z",
        until: "2026-11-25T11:00:00.000Z",
        onTimeout: "abort",
        answer: { action: "abort", by: "ops@deployer", at: "2026-11-25T10:05:00.000Z" },
      },
    ],
    startedAt: "2026-11-25T09:59:00.000Z",
    updatedAt: "2026-11-25T10:05:01.000Z",
  };

  it("round-trip, and a paused state reads", () => {
    expect(parseRolloutRecord(formatRolloutRecord(record), "r")).toEqual(record);
    const paused = {
      ...record,
      state: "paused" as const,
      pauses: [{ ...record.pauses?.[0], answer: undefined }],
    };
    const back = parseRolloutRecord(formatRolloutRecord(paused as RolloutRecord), "r");
    expect(back.state).toBe("paused");
    expect(back.pauses?.[0]?.answer).toBeUndefined();
  });

  it("refuse a malformed pause, naming it", () => {
    const bad = (pause: Record<string, unknown>) => () =>
      parseRolloutRecord(Buffer.from(JSON.stringify({ ...record, pauses: [pause] })), "r");
    const pause = record.pauses?.[0] as unknown as Record<string, unknown>;
    expect(bad({ ...pause, afterWave: 0 })).toThrow(
      /r: pauses\[0\]\.afterWave must be a whole number from 1/,
    );
    expect(bad({ ...pause, onTimeout: "wait" })).toThrow(
      /pauses\[0\]\.onTimeout" must be one of abort, resume/,
    );
    expect(bad({ ...pause, until: 5 })).toThrow(/pauses\[0\]\.until" is not a date/);
    expect(bad({ ...pause, answer: { action: "go", by: "x", at: pause.since } })).toThrow(
      /pauses\[0\]\.answer\.action" must be one of/,
    );
  });
});
