import { describe, expect, it } from "vitest";
import {
  analysisState,
  conditionText,
  hostQuery,
  judgeSample,
  type Measurement,
  meanOf,
} from "./analysis.js";
import { ANALYSIS_DEFAULTS, type AnalysisQuery, baselineHosts } from "./bake.js";

const query = (over: Partial<AnalysisQuery>): AnalysisQuery => ({
  name: "errors",
  query: 'rate(x{host="{name}"}[1m])',
  ...ANALYSIS_DEFAULTS,
  ...over,
});

const at = (verdict: Measurement["verdict"], value: number | null = 1): Measurement => ({
  at: 1,
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
      why: "no data (NaN)",
    });
    expect(judgeSample(q, { value: 0.2, baseline: null, baselineWhy: "no series" }).verdict).toBe(
      "no-data",
    );
    expect(judgeSample(q, { value: 0.2 })).toEqual({
      verdict: "pass",
      why: "0.2; no host of the role is left unchanged to compare with",
    });
  });

  it("applies a threshold along with a baseline", () => {
    const q = query({ baseline: { tolerance: 2 }, max: 0.5 });
    expect(judgeSample(q, { value: 0.6, baseline: 0.5 }).verdict).toBe("fail");
    expect(conditionText(q)).toBe("at most 2 × the baseline and at most 0.5");
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

describe("the query for a host, and its baseline", () => {
  it("fills {name} and {address}, leaving PromQL's own braces alone", () => {
    expect(
      hostQuery('up{host="{name}",instance="{address}:80"}', { name: "web1", address: "10.0.0.2" }),
    ).toBe('up{host="web1",instance="10.0.0.2:80"}');
  });

  it("takes the mean of the baseline hosts that answered", () => {
    expect(meanOf([0.1, null, 0.3])).toBeCloseTo(0.2);
    expect(meanOf([null])).toBeNull();
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
