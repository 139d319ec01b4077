import { describe, expect, it } from "vitest";
import { runsAfter } from "./runs-after.js";

const v1 = "/nix/store/11111111111111111111111111111111-system-v1";
const v2 = "/nix/store/22222222222222222222222222222222-system-v2";
const broken = "/nix/store/33333333333333333333333333333333-system-broken";

describe("what a host runs once its deploy result is in", () => {
  const failedResult = (extra: { runs?: string } = {}) => ({
    desired: broken,
    outcome: {
      status: "failed" as const,
      phase: "health" as const,
      message: "health check failed",
      rolledBack: true,
      ...extra,
    },
  });

  it("after a rollback, what it ran; after a failure past the switch, the failed system", () => {
    expect(runsAfter(failedResult(), v1, "switch")).toBe(v1);
    expect(
      runsAfter(
        { ...failedResult(), outcome: { ...failedResult().outcome, rolledBack: false } },
        v1,
        "switch",
      ),
    ).toBe(broken);
    expect(
      runsAfter(
        { desired: v2, outcome: { status: "activated", generation: 3, previous: v1 } },
        v1,
        "switch",
      ),
    ).toBe(v2);
  });

  it("a host left settling (no result within the interrupt's grace) runs what is not known here", () => {
    const settling = {
      desired: broken,
      outcome: {
        status: "failed" as const,
        phase: "switch" as const,
        message: "interrupted, and no result 120s later: the host is still settling",
        rolledBack: false,
        settling: true as const,
      },
    };
    expect(runsAfter(settling, v1, "switch")).toBeUndefined();
  });

  it("a host that said what it runs (a boot judged and undone) runs that, whatever it ran at the survey", () => {
    // The survey found it on the broken system it had booted; it rebooted back into v1.
    expect(runsAfter(failedResult({ runs: v1 }), broken, "switch")).toBe(v1);
    // Undone without a reboot: it still runs the system it booted, v1 boots next.
    expect(runsAfter(failedResult({ runs: broken }), broken, "switch")).toBe(broken);
  });
});
