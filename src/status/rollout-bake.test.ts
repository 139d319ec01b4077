import { describe, expect, it } from "vitest";
import { MAX_BAKE_ROUNDS } from "../fleet/bake.js";
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
      "rec: h.bake.analysis[0].measurements[0].value must be a number or null",
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
