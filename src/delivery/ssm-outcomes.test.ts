// ssmFailure: what an operator reads when SSM ran the document but activate.sh left no result;
// instanceOutcome: an instance's outcome from activate.sh's answer.
import { describe, expect, it } from "vitest";
import type { SsmHost } from "../fleet/fleet.js";
import { withoutControls } from "../util/text.js";
import {
  combineOutcomes,
  type FinishedInvocation,
  instanceOutcome,
  ssmFailure,
} from "./ssm-outcomes.js";

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

  it("shows no control character of the instance's stderr, and at most its last 600", () => {
    const said = `${"x".repeat(2000)}\u001b]52;c;AAAA\u0007\rweb2: activated`;
    const message = ssmFailure(failed("", said), settings);
    expect(message).toBe(withoutControls(message));
    expect(message).toContain("\ufffd]52;c;AAAA\ufffd\ufffdweb2: activated");
    expect(message.length).toBeLessThan(700);
  });
});

describe("instanceOutcome", () => {
  it("an instance whose lock another activation holds is refused, nothing done, as over ssh", () => {
    const message = "another activation is in progress on this host (activate /nix/store/x, pid 7)";
    const answer = { ok: false, command: "activate", result: "locked", exitCode: 8, message };
    const inv = { ...failed(`${JSON.stringify(answer)}\n`, ""), responseCode: 8 };
    expect(instanceOutcome(inv, settings, { maxErrorsReached: false }).outcome).toEqual({
      status: "skipped",
      reason: "refused",
      message: `${message}; nothing was done`,
    });
  });

  it("a usage refusal still fails the instance at connect", () => {
    const message = "activate: unknown option '--new'";
    const answer = { ok: false, command: "activate", result: "usage", exitCode: 2, message };
    expect(
      instanceOutcome(failed(`${JSON.stringify(answer)}\n`, ""), settings, {
        maxErrorsReached: false,
      }).outcome,
    ).toEqual({ status: "failed", phase: "connect", message, rolledBack: false });
  });
});

describe("an instance whose end is not known", () => {
  const ended = (status: string, stdout = ""): FinishedInvocation => ({
    instanceId: "i-0abc",
    status,
    details: status,
    stdout,
    stderr: "",
    responseCode: status === "Success" ? 0 : undefined,
  });
  const unknown = (message: RegExp) => ({
    status: "failed",
    phase: "switch",
    message: expect.stringMatching(message),
    rolledBack: false,
    settling: true,
  });

  it("succeeded without a result: it may have switched, not 'nothing changed'", () => {
    expect(
      instanceOutcome(ended("Success"), settings, { maxErrorsReached: false }).outcome,
    ).toEqual(
      unknown(/^i-0abc: the command succeeded but gave no JSON result: whether it switched/),
    );
    // One that never ran changed nothing, its output read or not.
    const undelivered = { ...ended("Failed"), details: "Undeliverable", unread: "throttled" };
    expect(
      instanceOutcome(undelivered, settings, { maxErrorsReached: false }).outcome,
    ).toMatchObject({
      phase: "connect",
    });
  });

  it("cancelled by an interrupt while it waited, and silent: not started, nothing changed", () => {
    const cancelled = { ...ended("Cancelled"), details: "Cancelled" };
    const interrupted = { maxErrorsReached: false, cancelledBeforeStart: "interrupted (SIGINT)" };
    expect(instanceOutcome(cancelled, settings, interrupted).outcome).toEqual({
      status: "failed",
      phase: "connect",
      message:
        "i-0abc: not started: interrupted (SIGINT) cancelled its SSM command before SSM started it; nothing changed",
      rolledBack: false,
    });
    // It said something: SSM had started it, and its agent killed it wherever it was.
    const killed = { ...cancelled, stderr: "activate: realising /nix/store/x\n" };
    expect(instanceOutcome(killed, settings, interrupted).outcome).toMatchObject({
      phase: "switch",
      settling: true,
    });
    // Cancelled by someone else: not known to have waited.
    expect(instanceOutcome(cancelled, settings, { maxErrorsReached: false }).outcome).toMatchObject(
      { phase: "switch", settling: true },
    );
  });

  it("still running when the wait ended: it may switch yet", () => {
    expect(
      instanceOutcome(ended("Unfinished"), settings, { maxErrorsReached: false }).outcome,
    ).toEqual(unknown(/^i-0abc: SSM reported no end for the command, and it may run yet/));
  });

  it("leaves a host of tag targets unknown: not rolled back, though the others are", () => {
    const host = {
      name: "web",
      targets: [{ key: "tag:Role", values: ["web"] }],
    } as unknown as SsmHost;
    const rolledBack = {
      ...ended("Failed"),
      instanceId: "i-0def",
      stdout: `${JSON.stringify({
        ok: false,
        command: "activate",
        result: "failed",
        phase: "health",
        exitCode: 5,
        message: "health check failed",
        rolledBack: true,
      })}\n`,
    };
    const outcomes = [ended("Success"), rolledBack].map((inv) =>
      instanceOutcome(inv, settings, { maxErrorsReached: false }),
    );
    expect(combineOutcomes(host, outcomes)).toMatchObject({
      status: "failed",
      phase: "switch",
      rolledBack: false,
      settling: true,
    });
  });
});
