import { describe, expect, it } from "vitest";
import {
  ACTIONS,
  type Action,
  actionActivatesNow,
  actionChangesHost,
  actionIsDryRun,
  actionNeedsHealthCheck,
  actionPersistsAfterReboot,
  actionSetsProfile,
  actionSkipsWhenRunning,
  parseAction,
} from "./action.js";

describe("Action", () => {
  it("answers questions the way switch-to-configuration behaves", () => {
    const table = Object.fromEntries(
      ACTIONS.map((a: Action) => [
        a,
        [
          actionSetsProfile(a),
          actionActivatesNow(a),
          actionChangesHost(a),
          actionIsDryRun(a),
          actionSkipsWhenRunning(a),
          actionNeedsHealthCheck(a),
          actionPersistsAfterReboot(a),
        ],
      ]),
    );
    expect(table).toEqual({
      switch: [true, true, true, false, true, true, true],
      boot: [true, false, true, false, false, false, true],
      test: [false, true, true, false, true, true, false],
      "dry-activate": [false, false, false, true, false, false, false],
    });
  });

  it("parses action names", () => {
    expect(parseAction("dry-activate")).toBe("dry-activate");
    expect(() => parseAction("reboot")).toThrow(
      expect.objectContaining({
        code: "bad-action",
        hint: "the actions are switch, boot, test, dry-activate",
      }),
    );
  });
});
