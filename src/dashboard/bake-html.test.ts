import { describe, expect, it } from "vitest";
import { bakeSection } from "./bake-html.js";

describe("the rollout page's bake of a wave", () => {
  it("shows each query's values over time, the baseline's, and what failed, escaped", () => {
    const text = String(
      bakeSection(1, [
        {
          host: "web1",
          state: "rolled-back",
          phase: "bake",
          system: null,
          message: "failed its bake",
          bake: {
            state: "failed",
            seconds: 30,
            interval: 10,
            analysis: [
              {
                name: "errors",
                query: 'errors{host="web1"}',
                condition: "at most 1.5 × the baseline",
                measurements: [
                  { at: 10, value: 0.1, baseline: 0.1, verdict: "pass", why: "ok" },
                  { at: 20, value: 0.3, baseline: 0.1, verdict: "fail", why: "<b>above</b>" },
                ],
                failed: "errors: 0.3 is above 1.5 × the baseline's 0.1",
              },
            ],
          },
        },
        { host: "web2", state: "pending", phase: null, system: null, message: null },
      ]),
    );
    expect(text).toContain("Bake of wave 1");
    expect(text).toContain("errors <code>errors{host=&quot;web1&quot;}</code>");
    expect(text).toContain(
      '10s 0.1 (baseline 0.1)</span>, <span class="fail" title="&lt;b&gt;above&lt;/b&gt;">20s 0.3 (baseline 0.1) ✗',
    );
    expect(text).toContain("errors: 0.3 is above 1.5 × the baseline&#39;s 0.1");
    expect(text).not.toContain("web2");
    expect(
      bakeSection(2, [
        { host: "web2", state: "pending", phase: null, system: null, message: null },
      ]),
    ).toBe("");
  });
});
