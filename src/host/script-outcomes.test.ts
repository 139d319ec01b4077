// rollbackOutcome: a rollback's result as the CLI reports it; nothing made up where the host was silent.
import { describe, expect, it } from "vitest";
import type { ScriptRun } from "./activation-session.js";
import { rollbackOutcome } from "./script-outcomes.js";

const path = "/nix/store/00000000000000000000000000000000-nixos-system-web1";

describe("rollbackOutcome", () => {
  it("carries the generation the host went back to", () => {
    const run: ScriptRun = {
      code: 0,
      failure: "",
      result: { ok: true, command: "rollback", result: "rolled-back", generation: 41, path },
    };
    expect(rollbackOutcome(run)).toEqual({ status: "rolled-back", generation: 41, path });
  });

  it("says null, not 0, when the host named no generation", () => {
    const run: ScriptRun = {
      code: 0,
      failure: "",
      result: { ok: true, command: "rollback", result: "rolled-back", generation: null, path },
    };
    expect(rollbackOutcome(run)).toEqual({
      status: "rolled-back",
      generation: null,
      path,
    });
  });

  it("gives the failure when there is no result", () => {
    const run = { code: 255, failure: "ssh: connection refused", result: undefined };
    expect(rollbackOutcome(run)).toEqual({ status: "failed", message: "ssh: connection refused" });
  });
});
