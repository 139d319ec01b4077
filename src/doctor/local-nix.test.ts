import { describe, expect, it } from "vitest";
import { judgeNix, type NixFacts } from "./local-nix.js";

const good: NixFacts = {
  version: { ok: true, text: "nix (Nix) 2.8.0" },
  nixCommand: true,
  config: new Map([
    ["experimental-features", "flakes nix-command"],
    ["build-users-group", ""],
    ["sandbox", "false"],
  ]),
  build: { ok: true },
};

describe("judgeNix", () => {
  it("says how to install a Nix that is not there, and checks nothing else", () => {
    expect(
      judgeNix({ ...good, version: { ok: false, error: "cannot run 'nix': spawn nix ENOENT" } }),
    ).toEqual([
      {
        area: "nix",
        name: "nix",
        status: "fail",
        detail: "cannot run 'nix': spawn nix ENOENT",
        fix: "install Nix: apt-get install nix-bin (Debian)",
      },
    ]);
  });

  it("passes a Nix with both features that builds", () => {
    expect(judgeNix(good).map((c) => c.status)).toEqual(["ok", "ok", "ok"]);
  });

  it("names flakes alone when only it is missing", () => {
    const checks = judgeNix({
      ...good,
      config: new Map([["experimental-features", "nix-command"]]),
    });
    expect(checks[1]).toMatchObject({ status: "fail", detail: "flakes not enabled" });
  });

  it("shows Nix's own error for a build that fails for another reason", () => {
    const checks = judgeNix({
      ...good,
      build: {
        ok: false,
        error:
          "warning: x\nerror: opening lock file '/nix/var/nix/db/big-lock': Permission denied\n",
      },
    });
    expect(checks[2]).toMatchObject({
      status: "fail",
      detail:
        "a trivial derivation does not build: error: opening lock file '/nix/var/nix/db/big-lock': Permission denied",
    });
  });
});
