// ssmFailure: what an operator reads when SSM ran the document but activate.sh left no result.
import { describe, expect, it } from "vitest";
import { type FinishedInvocation, ssmFailure } from "./ssm-outcomes.js";

const settings = { documentName: "nixship-activate", region: "eu-west-1", commandTimeout: 900 };

function failed(stdout: string, stderr: string): FinishedInvocation {
  return {
    instanceId: "i-0abc",
    status: "Failed",
    details: "Failed",
    stdout,
    stderr,
    responseCode: 2,
  };
}

describe("ssmFailure", () => {
  it("names output that is not a result, once with the instance", () => {
    expect(
      ssmFailure(failed("starting\nsh: 1: set: Illegal option -o pipefail", "boom"), settings),
    ).toBe(
      "i-0abc: SSM reported Failed (exit 2): boom; the activation script gave no JSON result; its last line: sh: 1: set: Illegal option -o pipefail",
    );
  });

  it("adds nothing when there was no output", () => {
    expect(ssmFailure(failed("", "boom"), settings)).toBe(
      "i-0abc: SSM reported Failed (exit 2): boom",
    );
  });
});
