import { describe, expect, it } from "vitest";
import { parseFleetValue } from "./fleet-file.js";
import { Problems } from "./json-check.js";
import { PAUSE_DEFAULTS, plannedPauses, readPausePolicy } from "./pause-policy.js";

const read = (policy: Record<string, unknown>) => {
  const problems = new Problems();
  const pause = readPausePolicy(policy, ["policy"], problems);
  return { pause, problems: problems.list.map((p) => `${p.path.join(".")}: ${p.message}`) };
};

describe("readPausePolicy", () => {
  it("sets no pause without pauseAfter", () => {
    expect(read({})).toEqual({ pause: undefined, problems: [] });
  });

  it("takes the canary, a wave number or a list, with the defaults", () => {
    expect(read({ pauseAfter: "canary" }).pause).toEqual({
      after: ["canary"],
      timeout: PAUSE_DEFAULTS.pauseTimeout,
      onTimeout: "abort",
    });
    expect(read({ pauseAfter: 3 }).pause?.after).toEqual([3]);
    expect(
      read({ pauseAfter: ["canary", 2], pauseTimeout: 90, onPauseTimeout: "resume" }).pause,
    ).toEqual({ after: ["canary", 2], timeout: 90, onTimeout: "resume" });
  });

  it("names each bad key by its path", () => {
    expect(read({ pauseAfter: ["canary", 0, "first"] }).problems).toEqual([
      'policy.pauseAfter.1: must be "canary" or a wave number from 1 to 100000 (got 0)',
      'policy.pauseAfter.2: must be "canary" or a wave number from 1 to 100000 (got "first")',
    ]);
    expect(read({ pauseAfter: [] }).problems).toEqual([
      'policy.pauseAfter: must name at least one wave ("canary" or a number)',
    ]);
    expect(read({ pauseAfter: 1, pauseTimeout: 0, onPauseTimeout: "wait" }).problems).toEqual([
      "policy.pauseTimeout: must be a whole number from 1 to 604800 (got 0)",
      'policy.onPauseTimeout: must be one of abort, resume (got "wait")',
    ]);
  });

  it("refuses a deadline or an outcome without a pause: it would do nothing", () => {
    expect(read({ pauseTimeout: 60, onPauseTimeout: "resume" }).problems).toEqual([
      "policy.pauseTimeout: applies to a pause: set pauseAfter too",
      "policy.onPauseTimeout: applies to a pause: set pauseAfter too",
    ]);
  });

  it("is the fleet's policy alone: a role's entry may not pause", () => {
    const hosts = { web1: { address: "10.0.0.2", system: ".#web" } };
    expect(parseFleetValue({ hosts, policy: { pauseAfter: "canary" } }, "f").policy.pause).toEqual({
      after: ["canary"],
      timeout: 3600,
      onTimeout: "abort",
    });
    expect(() => parseFleetValue({ hosts, policies: { web1: { pauseAfter: 1 } } }, "f")).toThrow(
      /policies\.web1\.pauseAfter: unknown key/,
    );
  });
});

describe("plannedPauses", () => {
  const waves = [
    { wave: 1, kind: "canary" as const },
    { wave: 2, kind: "canary" as const },
    { wave: 3, kind: "main" as const },
    { wave: 4, kind: "main" as const },
  ];
  const policy = (...after: ("canary" | number)[]) => ({
    after,
    timeout: 60,
    onTimeout: "abort" as const,
  });

  it("puts a pause after the last canary wave, and after numbered waves", () => {
    expect(plannedPauses(waves, policy("canary", 3))).toEqual({
      pauses: [
        { afterWave: 2, kind: "canary", timeout: 60, onTimeout: "abort" },
        { afterWave: 3, kind: "main", timeout: 60, onTimeout: "abort" },
      ],
      unused: [],
    });
  });

  it("makes one pause of two entries naming one wave, in wave order", () => {
    expect(plannedPauses(waves, policy(3, "canary", 2)).pauses.map((p) => p.afterWave)).toEqual([
      2, 3,
    ]);
  });

  it("says why an entry makes no pause: no canary, past the waves, or after the last", () => {
    const main = [
      { wave: 1, kind: "main" as const },
      { wave: 2, kind: "main" as const },
    ];
    expect(plannedPauses(main, policy("canary", 2, 5))).toEqual({
      pauses: [],
      unused: [
        { after: "canary", why: "the plan has no canary wave" },
        { after: 2, why: "wave 2 is the last: no wave waits for it" },
        { after: 5, why: "the plan has 2 waves" },
      ],
    });
    expect(plannedPauses([], policy(1)).unused).toEqual([
      { after: 1, why: "the plan has 0 waves" },
    ]);
  });

  it("makes nothing without a pause policy", () => {
    expect(plannedPauses(waves, undefined)).toEqual({ pauses: [], unused: [] });
  });
});
