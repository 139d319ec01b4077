import { describe, expect, it } from "vitest";
import { MAX_BAKE_ROUNDS } from "../fleet/bake.js";
import { nonFiniteAsText } from "../util/text.js";
import { parseRolloutBake } from "./rollout-bake.js";

const bake = {
  state: "failed",
  seconds: 30,
  interval: 10,
  check: { url: "http://10.0.0.2/health", message: "status 500" },
  analysis: [
    {
      name: "errors",
      query: "q",
      condition: "at most 0.1",
      measurements: [{ at: 10, value: null, baseline: 0.1, verdict: "no-data", why: "no data" }],
      failed: "errors: no data",
    },
  ],
};

describe("a rollout record's bake", () => {
  it("keeps an infinite measurement through the stored JSON, as PromQL writes it", () => {
    const infinite = {
      ...bake,
      analysis: [
        {
          ...bake.analysis[0],
          measurements: [
            { at: 10, value: Number.POSITIVE_INFINITY, verdict: "fail", why: "+Inf is above 0.1" },
            { at: 20, value: 0, baseline: Number.NEGATIVE_INFINITY, verdict: "fail", why: "x" },
          ],
        },
      ],
    };
    const stored = JSON.stringify(infinite, nonFiniteAsText);
    expect(stored).toContain('"value":"+Inf"');
    expect(stored).toContain('"baseline":"-Inf"');
    expect(parseRolloutBake(JSON.parse(stored), "rec", "h.bake")).toEqual(infinite);
  });

  it("reads what the recorder writes", () => {
    expect(parseRolloutBake(bake, "rec", "h.bake")).toEqual(bake);
  });

  it("refuses a wrong verdict, a value that is no number, and more measurements than a bake takes", () => {
    const measurement = (m: object) => ({
      ...bake,
      analysis: [
        { ...bake.analysis[0], measurements: [{ ...bake.analysis[0]?.measurements[0], ...m }] },
      ],
    });
    expect(() => parseRolloutBake(measurement({ verdict: "maybe" }), "rec", "h.bake")).toThrow(
      "rec: h.bake.analysis[0].measurements[0].verdict must be one of pass, fail, no-data",
    );
    expect(() => parseRolloutBake(measurement({ value: "1" }), "rec", "h.bake")).toThrow(
      'rec: h.bake.analysis[0].measurements[0].value must be a number, "+Inf", "-Inf" or null',
    );
    const many = {
      ...bake,
      analysis: [
        {
          ...bake.analysis[0],
          measurements: Array.from(
            { length: MAX_BAKE_ROUNDS + 1 },
            () => bake.analysis[0]?.measurements[0],
          ),
        },
      ],
    };
    expect(() => parseRolloutBake(many, "rec", "h.bake")).toThrow(
      `rec: h.bake.analysis[0].measurements must be a list of at most ${MAX_BAKE_ROUNDS}`,
    );
  });
});
