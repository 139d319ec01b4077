// rollbackOutcome and hostStatus: the script's results as the CLI reports them; nothing made up
// where the host was silent, and nothing taken that it was not asked.
import { describe, expect, it } from "vitest";
import type { StorePath } from "../nix/store-path.js";
import type { ActivationResult } from "./activation.js";
import { scriptArgs } from "./activation.js";
import { checkActivationResult } from "./activation-result.js";
import type { ScriptRun } from "./activation-session.js";
import { checkCommand, checkOutcome, hostStatus, rollbackOutcome } from "./script-outcomes.js";

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

describe("hostStatus", () => {
  const a = `/nix/store/${"a".repeat(32)}-glibc` as StorePath;
  const b = `/nix/store/${"b".repeat(32)}-web` as StorePath;
  const statusRun = (missing?: unknown): ScriptRun => ({
    code: 0,
    failure: "",
    result: {
      ok: true,
      command: "status",
      current: path,
      booted: path,
      profile: path,
      generation: 3,
      generations: [],
      pending: null,
      ...(missing === undefined ? {} : { missing }),
    } as ActivationResult,
  });

  it("says whose trust the host answered with, and nothing where an older script was silent", () => {
    const run = (extra: object): ScriptRun => {
      const base = statusRun();
      return { ...base, result: { ...base.result, ...extra } as ActivationResult };
    };
    const pinned = { keys: ["cache-1"], substituters: ["http://10.0.0.1:8080"] };
    expect(hostStatus(run({ pinned, pinnedActivator: true }))).toMatchObject({
      pinned,
      pinnedActivator: true,
    });
    expect(hostStatus(run({ pinned: null, pinnedActivator: false }))).toMatchObject({
      pinned: null,
      pinnedActivator: false,
    });
    const older = hostStatus(statusRun());
    expect(older).not.toHaveProperty("pinned");
    expect(older).not.toHaveProperty("pinnedActivator");
  });

  it("maps the hash parts the host lists back to the paths it was asked about", () => {
    const s = hostStatus(statusRun(["b".repeat(32), "b".repeat(32)]), [a, b]);
    expect(s).toMatchObject({ reachable: true, generation: 3, missing: [b] });
    expect(hostStatus(statusRun([]), [a, b])).toMatchObject({ missing: [] });
  });

  it("knows nothing of the store when the host could not tell, or named a path not asked", () => {
    for (const answer of [null, ["c".repeat(32)], [7], "aaaa"]) {
      const s = hostStatus(statusRun(answer), [a, b]);
      expect(s.reachable && s.missing, JSON.stringify(answer)).toBeUndefined();
    }
  });

  it("has no missing list when the host was not asked", () => {
    expect(hostStatus(statusRun(["a".repeat(32)]))).not.toHaveProperty("missing");
  });
});

describe("check: a request's command checks run again", () => {
  it("asks with the activation's options, and reads which check failed", () => {
    const command = checkCommand([
      { run: "test -e /ok", timeout: 5 },
      { run: "curl -f localhost", timeout: 20, retry: false },
    ]);
    expect(command && scriptArgs(command)).toEqual([
      "check",
      "--health-timeout",
      "5",
      "--health-cmd",
      "test -e /ok",
      "--health-timeout",
      "20",
      "--health-once",
      "curl -f localhost",
      // The longest again, last: an older script takes it for every check.
      "--health-timeout",
      "20",
    ]);
    expect(checkCommand([])).toBeUndefined();
    const failed = checkActivationResult({
      ok: false,
      command: "check",
      result: "failed",
      exitCode: 5,
      message: "health check failed: test -e /ok: exit code 1",
      check: "test -e /ok",
      current: path,
    });
    expect(checkOutcome({ code: 5, failure: "", result: failed as ActivationResult })).toEqual({
      ok: false,
      message: "health check failed: test -e /ok: exit code 1",
      run: "test -e /ok",
    });
    const passed = checkActivationResult({
      ok: true,
      command: "check",
      result: "passed",
      current: path,
    });
    expect(checkOutcome({ code: 0, failure: "", result: passed as ActivationResult })).toEqual({
      ok: true,
    });
    expect(checkOutcome({ code: 255, failure: "ssh: refused", result: undefined })).toEqual({
      ok: false,
      message: "ssh: refused",
    });
  });

  it("takes a host script without the check command as checks not repeated, not failed", () => {
    const older = checkActivationResult({
      ok: false,
      command: null,
      result: "usage",
      exitCode: 2,
      message: "unknown command 'check'",
    });
    expect(checkOutcome({ code: 2, failure: "", result: older as ActivationResult })).toMatchObject(
      {
        ok: true,
        notRepeated: expect.stringMatching(
          /has no check command: its command checks ran at activation only/,
        ),
      },
    );
  });
});
