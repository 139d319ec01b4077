// The bake's events as plain lines (a CI log): the wave's bake, each measurement, each host's end.
import { describe, expect, it } from "vitest";
import { describeEvent } from "./deploy-progress.js";

describe("a bake in plain lines", () => {
  it("says the wave's bake, each measurement with its verdict, and how each host ended", () => {
    expect(
      describeEvent({
        type: "bake-start",
        wave: 1,
        hosts: ["web1"],
        seconds: 120,
        interval: 10,
        analysis: ["errors"],
      }),
    ).toBe("wave 1: baking 2m00s (every 10.0s), measuring errors: web1");
    expect(
      describeEvent({
        type: "bake-measure",
        host: "web1",
        name: "errors",
        query: 'errors{host="web1"}',
        condition: "at most 0.1",
        measurement: {
          at: 20,
          value: 0.5,
          verdict: "fail",
          why: "0.5 is above the maximum 0.1",
        },
      }),
    ).toBe("web1: bake: errors 0.5 is above the maximum 0.1: FAILED (20.0s)");
    expect(describeEvent({ type: "bake-done", host: "web2", ok: true, seconds: 120 })).toBe(
      "web2: baked 2m00s: passed",
    );
    expect(
      describeEvent({
        type: "bake-done",
        host: "web1",
        ok: false,
        seconds: 20,
        result: {
          host: "web1",
          desired: "/nix/store/00000000000000000000000000000000-system",
          seconds: 30,
          outcome: {
            status: "failed",
            phase: "bake",
            message: "failed its bake after 20s: analysis errors: 0.5 is above the maximum 0.1",
            rolledBack: true,
          },
        },
      }),
    ).toBe(
      "web1: FAILED in bake: failed its bake after 20s: analysis errors: 0.5 is above the maximum 0.1; rolled back",
    );
  });
});
