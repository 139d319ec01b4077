import { describe, expect, it } from "vitest";
import {
  analysisReach,
  analysisState,
  bakeReachNotes,
  conditionText,
  durationSeconds,
  hostQuery,
  judgeSample,
  type Measurement,
  medianOf,
  previousSystemReach,
  queryReach,
  recordingRulesIn,
  unknownPlaceholders,
} from "./analysis.js";
import { ANALYSIS_DEFAULTS, type AnalysisQuery, baselineHosts } from "./bake.js";

const query = (over: Partial<AnalysisQuery>): AnalysisQuery => ({
  name: "errors",
  query: 'rate(x{host="{name}"}[1m])',
  ...ANALYSIS_DEFAULTS,
  ...over,
});

/** A measurement past the queries' reach ([1m]): what it read was the new system's alone. */
const at = (verdict: Measurement["verdict"], value: number | null = 1): Measurement => ({
  at: 90,
  value,
  verdict,
  why: verdict,
});

describe("judgeSample", () => {
  it("judges a threshold: above max or below min fails, the rest passes", () => {
    const q = query({ max: 0.05, min: 0.01 });
    expect(judgeSample(q, { value: 0.3 })).toEqual({
      verdict: "fail",
      why: "0.3 is above the maximum 0.05",
    });
    expect(judgeSample(q, { value: 0.001 }).verdict).toBe("fail");
    expect(judgeSample(q, { value: 0.02 })).toEqual({
      verdict: "pass",
      why: "0.02 is at least 0.01 and at most 0.05",
    });
  });

  it("fails a canary whose error ratio is 3x its baseline's, and passes one within the tolerance", () => {
    const q = query({ baseline: { tolerance: 1.5 } });
    expect(judgeSample(q, { value: 0.3, baseline: 0.1 })).toEqual({
      verdict: "fail",
      why: "0.3 is above 1.5 × the baseline's 0.1",
    });
    expect(judgeSample(q, { value: 0.12, baseline: 0.1 })).toEqual({
      verdict: "pass",
      why: "0.12 is within 1.5 × the baseline's 0.1",
    });
    // Exactly at the tolerance passes.
    expect(judgeSample(q, { value: 0.15, baseline: 0.1 }).verdict).toBe("pass");
  });

  it("has no data without a value, or without the baseline's; passes with no baseline host left", () => {
    const q = query({ baseline: { tolerance: 2 } });
    expect(judgeSample(q, { value: null, why: "NaN" })).toEqual({
      verdict: "no-data",
      why: "NaN",
    });
    expect(judgeSample(q, { value: 0.2, baseline: null, baselineWhy: "no series" }).verdict).toBe(
      "no-data",
    );
    expect(judgeSample(q, { value: 0.2 })).toEqual({
      verdict: "pass",
      why: "0.2; no host of its role changes in a later wave of this rollout, to compare with",
    });
  });

  it("takes an infinite baseline as its own limit, and +Inf with -Inf as no baseline", () => {
    const q = query({ baseline: { tolerance: 1.5 } });
    expect(judgeSample(q, { value: 5, baseline: Number.NEGATIVE_INFINITY })).toEqual({
      verdict: "fail",
      why: "5 is above the baseline's -Inf with a tolerance of 1.5 (at most -Inf)",
    });
    expect(
      judgeSample(q, { value: Number.NEGATIVE_INFINITY, baseline: Number.NEGATIVE_INFINITY })
        .verdict,
    ).toBe("pass");
    expect(judgeSample(q, { value: 5, baseline: Number.POSITIVE_INFINITY }).verdict).toBe("pass");
    expect(
      judgeSample(query({ baseline: { tolerance: 1 } }), { value: 5, baseline: Infinity }),
    ).toMatchObject({ verdict: "pass" });
    expect(judgeSample(q, { value: 5, baseline: Number.NaN })).toEqual({
      verdict: "no-data",
      why: "5, but no data for the baseline (its middle hosts answered +Inf and -Inf: no median)",
    });
  });

  it("applies a threshold along with a baseline", () => {
    const q = query({ baseline: { tolerance: 2 }, max: 0.5 });
    expect(judgeSample(q, { value: 0.6, baseline: 0.5 }).verdict).toBe("fail");
    expect(conditionText(q)).toBe("at most 2 × the baseline and at most 0.5");
  });
});

describe("a canary at exactly T × its baseline", () => {
  it("passes, whatever the floating-point rounding of the sum would be", () => {
    const cases: [number, number][] = [
      [0.3, 1.5],
      [0.1, 1.7],
      [0.7, 1.1],
    ];
    for (const [base, tolerance] of cases) {
      const q = query({ baseline: { tolerance } });
      // The value as Prometheus writes it: the decimal product.
      const value = Number((base * tolerance).toPrecision(12));
      expect(judgeSample(q, { value, baseline: base }).verdict, `${base} × ${tolerance}`).toBe(
        "pass",
      );
      expect(judgeSample(q, { value: value * 1.0001, baseline: base }).verdict).toBe("fail");
    }
  });
});

describe("analysisState", () => {
  it("fails once failures pass the failure limit, before the bake ends", () => {
    const q = query({ max: 1, failureLimit: 1 });
    expect(analysisState(q, [at("fail")], false)).toEqual({ state: "running" });
    const failed = analysisState(q, [at("fail"), at("pass"), at("fail")], false);
    expect(failed.state).toBe("failed");
    expect(failed.why).toMatch(/2 failed measurements, more than its failure limit 1/);
  });

  it("counts no data as a failure under noData fail, and not under wait", () => {
    expect(analysisState(query({ max: 1 }), [at("no-data", null)], false).state).toBe("failed");
    const wait = query({ max: 1, noData: "wait" });
    expect(analysisState(wait, [at("no-data", null)], false).state).toBe("running");
    expect(analysisState(wait, [at("no-data", null), at("pass")], true).state).toBe("passed");
    // Under wait, no data in the whole bake fails it at its end.
    expect(analysisState(wait, [at("no-data", null), at("no-data", null)], true)).toEqual({
      state: "failed",
      why: "errors: no data in the whole bake (2 measurements)",
    });
  });
});

describe("data from the previous system only", () => {
  const seen = (at: number, verdict: Measurement["verdict"]): Measurement => ({
    at,
    value: verdict === "no-data" ? null : 0,
    verdict,
    why: verdict,
  });

  it("fails a bake whose values all came within the query's reach of the switch (noData: wait)", () => {
    // [4s], a measurement every 2 s: the one at 2 s may read the old system; the rest had none.
    const q = query({ query: 'rate(x{host="{name}"}[4s])', max: 0.1, noData: "wait" });
    const rounds = [seen(2, "pass"), seen(4, "no-data"), seen(6, "no-data"), seen(30, "no-data")];
    expect(analysisState(q, rounds, true)).toEqual({
      state: "failed",
      why: "errors: no data from 4s into the bake on: only earlier measurements had a value, and the query (reading 4s back) may have read the previous system's samples there",
    });
    // One value from 4 s on is the new system's: passed.
    expect(analysisState(q, [...rounds.slice(0, 3), seen(30, "pass")], true).state).toBe("passed");
    expect(analysisState(q, [seen(2, "pass"), seen(4, "pass")], true).state).toBe("passed");
    // Not yet ended: nothing decided.
    expect(analysisState(q, rounds.slice(0, 2), false).state).toBe("running");
  });

  it("fails a bake that ended before the query's reach: no measurement read the new system alone", () => {
    // A 20 s bake of a [2m] rate (the fleet file refuses it; a bake cut short meets it too):
    // every window held the previous system's samples, which passed a canary at 50 % errors.
    const q = query({ query: 'rate(x{host="{name}"}[2m])', max: 0.1, noData: "wait" });
    const rounds = [seen(5, "pass"), seen(10, "pass"), seen(15, "pass"), seen(20, "pass")];
    expect(analysisState(q, rounds, true)).toEqual({
      state: "failed",
      why: "errors: no measurement read the new system alone: the query reads 120s back, and the bake measured until 20s",
    });
    // Once a measurement reads it alone, its values are the new system's.
    expect(analysisState(q, [...rounds, seen(120, "pass")], true).state).toBe("passed");
    expect(analysisState(q, [...rounds, seen(120, "no-data")], true).state).toBe("failed");
  });
});

describe("a baseline that never answered", () => {
  it("fails the bake at its end saying the baseline had no data, where the host had values", () => {
    const q = query({ baseline: { tolerance: 1.5 }, noData: "wait" });
    const none = [at("no-data", 0.01), at("no-data", 0.01)];
    expect(analysisState(q, none, true)).toEqual({
      state: "failed",
      why: "errors: no data for the baseline in the whole bake (2 measurements): the role's unchanged hosts never answered a value (a metric their system lacks? compare with a `max` instead)",
    });
    expect(analysisState(q, [at("no-data", null), at("no-data", null)], true).why).toBe(
      "errors: no data in the whole bake (2 measurements)",
    );
  });
});

describe("what the audit of the bake found", () => {
  it("fails a bake with no data at all under noData fail too, whatever its failure limit", () => {
    const lenient = query({ max: 0.02, failureLimit: 3 });
    const none = [at("no-data", null), at("no-data", null), at("no-data", null)];
    expect(analysisState(lenient, none, false).state).toBe("running");
    expect(analysisState(lenient, none, true)).toEqual({
      state: "failed",
      why: "errors: no data in the whole bake (3 measurements)",
    });
  });

  it("judges +Inf and -Inf as values: above any maximum, below any minimum", () => {
    expect(judgeSample(query({ max: 0.02 }), { value: Number.POSITIVE_INFINITY })).toEqual({
      verdict: "fail",
      why: "+Inf is above the maximum 0.02",
    });
    expect(judgeSample(query({ min: 0 }), { value: Number.NEGATIVE_INFINITY })).toMatchObject({
      verdict: "fail",
      why: "-Inf is below the minimum 0",
    });
  });

  it("lets a canary at a negative baseline's value pass, and widens it by its own size", () => {
    const q = query({ baseline: { tolerance: 1.5 } });
    expect(judgeSample(q, { value: -1, baseline: -1 }).verdict).toBe("pass");
    expect(judgeSample(q, { value: -0.6, baseline: -1 }).verdict).toBe("pass");
    expect(judgeSample(q, { value: -0.4, baseline: -1 })).toEqual({
      verdict: "fail",
      why: "-0.4 is above the baseline's -1 with a tolerance of 1.5 (at most -0.5)",
    });
    expect(judgeSample(q, { value: 3, baseline: 2 }).verdict).toBe("pass");
    expect(judgeSample(q, { value: 3.1, baseline: 2 }).why).toBe(
      "3.1 is above 1.5 × the baseline's 2",
    );
  });

  it("names placeholders no host fills in, and fills names with $ in them as they are", () => {
    expect(unknownPlaceholders('up{host="{hostname}", a="{name}"} + {address}')).toEqual([
      "{hostname}",
    ]);
    expect(hostQuery('x{h="{name}"}', { name: "a$&b", address: undefined })).toBe('x{h="a$&b"}');
  });
});

describe("the query for a host, and its baseline", () => {
  it("fills {name} and {address}, leaving PromQL's own braces alone", () => {
    expect(
      hostQuery('up{host="{name}",instance="{address}:80"}', { name: "web1", address: "10.0.0.2" }),
    ).toBe('up{host="web1",instance="10.0.0.2:80"}');
  });

  it("takes the median of the baseline hosts that answered: one broken host does not lift it", () => {
    expect(medianOf([0.1, null, 0.3])).toBeCloseTo(0.2);
    expect(medianOf([null])).toBeNull();
    expect(medianOf([0.01, 1, 0.02])).toBe(0.02);
    expect(medianOf([0.01, Number.POSITIVE_INFINITY, 0.02])).toBe(0.02);
    expect(medianOf([0.3, 0.1, 0.2, 0.9])).toBeCloseTo(0.25);
  });

  it("takes a canary's baseline from its role's hosts in later waves", () => {
    const plan = {
      waves: [
        { wave: 1, hosts: ["a1", "b1"] },
        { wave: 2, hosts: ["a2", "a3", "b2"] },
      ],
      hosts: [
        { host: "a1", role: "@a" },
        { host: "a2", role: "@a" },
        { host: "a3", role: "@a" },
        { host: "b1", role: "@b" },
        { host: "b2", role: "@b" },
      ],
    };
    expect(baselineHosts(plan, "a1", 1)).toEqual(["a2", "a3"]);
    expect(baselineHosts(plan, "b1", 1)).toEqual(["b2"]);
    expect(baselineHosts(plan, "a2", 2)).toEqual([]);
  });
});

describe("how far back a query reads", () => {
  it("reads PromQL durations, compound ones and plain seconds", () => {
    expect(durationSeconds("4s")).toBe(4);
    expect(durationSeconds("1h30m")).toBe(5400);
    expect(durationSeconds("250ms")).toBe(0.25);
    expect(durationSeconds("2w")).toBe(1_209_600);
    expect(durationSeconds("90")).toBe(90);
    expect(durationSeconds("5x")).toBeUndefined();
    expect(durationSeconds("m5")).toBeUndefined();
  });

  it("takes the longest range, a subquery's range, and adds the longest offset back", () => {
    const ratio =
      'sum(rate(req{host="{name}",code="500"}[4s])) / sum(rate(req{host="{name}"}[4s]))';
    expect(queryReach(ratio)).toBe(4);
    expect(queryReach('max_over_time(rate(x{host="{name}"}[1m])[30m:1m])')).toBe(1800);
    expect(queryReach("rate(x[5m] offset 1h)")).toBe(3900);
    // A negative offset reads later; a query of instants reads nothing back.
    expect(queryReach("rate(x[5m] offset -1h)")).toBe(300);
    expect(queryReach('up{host="{name}"}')).toBe(0);
    // Brackets in a label's value are text, not a range.
    expect(queryReach('x{path="/a[10m]"}')).toBe(0);
  });

  it("says when a bake's first measurements may read the previous system, and what keeps it out", () => {
    const ratio = 'rate(x{host="{name}"}[4s])';
    // 4 s back, one measurement a second: the first three may hold what ran before.
    expect(previousSystemReach(query({ query: ratio }), { seconds: 20, interval: 1 })).toEqual({
      reach: 4,
      rangeAtMost: 1,
      failureLimit: 3,
    });
    expect(
      previousSystemReach(query({ query: ratio, failureLimit: 3 }), { seconds: 20, interval: 1 }),
    ).toBeUndefined();
    expect(
      previousSystemReach(query({ query: ratio }), { seconds: 80, interval: 4 }),
    ).toBeUndefined();
    // A bake too short for a limit to help: only a shorter range does.
    expect(
      previousSystemReach(query({ query: "rate(x[5m])" }), { seconds: 120, interval: 10 }),
    ).toEqual({
      reach: 300,
      rangeAtMost: 10,
    });
    // An offset reads back whatever the range: it is said, for what a range can still keep.
    expect(
      previousSystemReach(query({ query: "rate(x[1m] offset 30s)" }), { seconds: 30, interval: 2 }),
    ).toEqual({ reach: 90, rangeAtMost: 2, offset: 30 });
    // A bake shorter than its interval measures once, at its end: 5 s in, a range of 1m reads
    // 55 s of the previous system.
    expect(
      previousSystemReach(query({ query: "rate(x[1m])" }), { seconds: 5, interval: 60 }),
    ).toEqual({ reach: 60, rangeAtMost: 5 });
  });

  it("gathers a plan's notes: hosts that share a query and its note together, the others apart", () => {
    const bake = (interval: number, failureLimit = 0) => ({
      seconds: 60,
      interval,
      analysis: [
        query({ name: "errors", query: "rate(x[4s])", failureLimit }),
        query({ name: "up", query: "up" }),
      ],
    });
    const notes = bakeReachNotes([
      { host: "web1", bake: bake(1) },
      { host: "db1" },
      { host: "web2", bake: bake(1) },
      { host: "api1", bake: bake(2) },
      { host: "api2", bake: bake(1, 3) },
    ]);
    expect(notes).toEqual([
      { hosts: ["web1", "web2"], query: "errors", reach: 4, rangeAtMost: 1, failureLimit: 3 },
      { hosts: ["api1"], query: "errors", reach: 4, rangeAtMost: 2, failureLimit: 1 },
    ]);
    expect(bakeReachNotes([{ host: "db1" }])).toEqual([]);
  });
});

describe("recording rules", () => {
  it("are found by the ':' in a metric's name, outside label values, matchers and ranges", () => {
    expect(
      recordingRulesIn(
        'max(job:errors:rate5m{host="{name}", path="a:b"}) / sum(rate(x{host="{name}"}[30m:1m])) + host:up',
      ),
    ).toEqual(["job:errors:rate5m", "host:up"]);
    expect(recordingRulesIn('sum(rate(x{host="{name}"}[5m]))')).toEqual([]);
  });

  it("read back as far as their `reach` says when it is longer than the text's", () => {
    const rule = { query: 'max(job:errors:rate5m{host="{name}"})', reach: 300 };
    expect(analysisReach(rule)).toBe(300);
    expect(analysisReach({ query: 'rate(x{host="{name}"}[10m])', reach: 300 })).toBe(600);
    // A bake whose measurements come every 30 s: the first ten may read the previous system.
    expect(
      previousSystemReach({ ...rule, failureLimit: 0 }, { seconds: 600, interval: 30 }),
    ).toEqual({ reach: 300, rangeAtMost: 30, failureLimit: 9 });
    // The bake's end is judged from that reach: a value only before it is not the new system's.
    const q = query({ ...rule, max: 0.1, noData: "wait" });
    const seen = (at: number, value: number | null): Measurement => ({
      at,
      value,
      verdict: value === null ? "no-data" : "pass",
      why: "",
    });
    expect(analysisState(q, [seen(100, 0), seen(200, null), seen(300, null)], true).state).toBe(
      "failed",
    );
    expect(analysisState(q, [seen(100, 0), seen(300, 0)], true).state).toBe("passed");
  });
});
