// The hint beside a flake's evaluation error: the fix for a lock file Nix wants changed.
import { describe, expect, it } from "vitest";
import { flakeErrorHint } from "./flake-error-hint.js";

describe("flakeErrorHint", () => {
  it("names 'nix flake lock' for a lock file Nix would change, as Nix 2.8 and 2.26 say it", () => {
    const said =
      "flake 'path:/srv/ops' requires lock file changes but they're not allowed due to '--no-update-lock-file'";
    expect(flakeErrorHint(said, "fix it")).toMatch(
      /^the flake's flake\.lock is missing or out of date with its inputs: run 'nix flake lock' in its directory/,
    );
  });

  it("gives the caller's hint otherwise", () => {
    expect(flakeErrorHint("syntax error, unexpected '='", "fix it")).toBe("fix it");
  });
});
