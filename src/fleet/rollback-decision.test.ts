import { describe, expect, it } from "vitest";
import { type BakeFailure, bakeFailureText, decideRollback } from "./rollback-decision.js";

const failure: BakeFailure = {
  kind: "bake",
  at: 6.2,
  analysis: [
    {
      name: "errors",
      query: 'errors{host="web1"}',
      condition: "at most 0.1",
      why: "errors: 0.5 is above the maximum 0.1",
      measurements: [
        { at: 2, value: 0, verdict: "pass", why: "0 is at most 0.1" },
        { at: 4, value: null, verdict: "no-data", why: "NaN" },
        { at: 6, value: 0.5, verdict: "fail", why: "0.5 is above the maximum 0.1" },
      ],
    },
  ],
};

describe("decideRollback", () => {
  it("sends back a host that failed what the deployer judges, saying why", () => {
    expect(decideRollback({ kind: "bake-failed", failure })).toEqual({
      rollBack: true,
      why: "failed its bake after 6s: analysis errors: 0.5 is above the maximum 0.1 (at most 0.1; values 0, -, 0.5)",
    });
    expect(decideRollback({ kind: "health-failed", message: "GET /health: 500" })).toEqual({
      rollBack: true,
      why: "GET /health: 500",
    });
    expect(decideRollback({ kind: "kept" }).rollBack).toBe(false);
  });

  it("names a failed check of the bake", () => {
    expect(
      bakeFailureText({
        kind: "bake",
        at: 2,
        check: { url: "http://10.0.0.2/health", message: "status 500" },
        analysis: [],
      }),
    ).toBe("failed its bake after 2s: check status 500");
  });
});
