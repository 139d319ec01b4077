// What an activation that did not go through comes to: refused when the host was changed since
// (with the system it said it runs), a failure in its phase otherwise.
import { describe, expect, it } from "vitest";
import { notActivated } from "./session-steps.js";

const V3 = "/nix/store/00000000000000000000000000000003-example-web-system-v3";

describe("notActivated", () => {
  it("refuses a host changed since, naming the system it said it runs", () => {
    const answer = {
      result: "changed" as const,
      phase: "realise" as const,
      message: `it runs ${V3}, not …: changed since; nothing was done`,
      rolledBack: false,
      previous: V3,
    };
    expect(notActivated(answer)).toEqual({
      status: "skipped",
      reason: "refused",
      message: answer.message,
      runs: V3,
    });
    // A host that runs no system says none.
    expect(notActivated({ ...answer, previous: null })).toEqual({
      status: "skipped",
      reason: "refused",
      message: answer.message,
    });
  });

  it("fails any other answer in its phase", () => {
    const failed = notActivated({
      result: "failed",
      phase: "switch",
      message: "switch-to-configuration exited with 1",
      rolledBack: true,
      previous: V3,
    });
    expect(failed).toMatchObject({ status: "failed", phase: "switch", rolledBack: true });
  });
});
