// Reading Nix's stderr of a failed evaluation: the deepest mark (here the fleet's, as
// fleet/flake-fleet.ts marks its attributes) and the error, in both orders Nix writes them.
import { describe, expect, it } from "vitest";
import { NixEvalTrace } from "./eval-trace.js";

const feed = (stderr: string) => {
  const trace = new NixEvalTrace("nixship-fleet-attribute");
  for (const line of stderr.split("\n")) if (line.trim()) trace.add(line);
  return trace.result();
};

describe("a failed fleet evaluation, as Nix's stderr tells it", () => {
  it("names the deepest attribute and the error, innermost first (Nix 2.8)", () => {
    const stderr = `warning: the group 'nixbld' specified in 'build-users-group' does not exist
error: boom here

       … «nixship-fleet-attribute ["hosts","web1","tags",1]»

       … while evaluating 'walk'

       at «string»:4:16:

            3|   mark = path: builtins.addErrorContext "x";
            4|   walk = path: v:
             |                ^

       … «nixship-fleet-attribute ["hosts","web1","tags"]»

       … «nixship-fleet-attribute ["hosts"]»

       … «nixship-fleet-attribute []»`;
    expect(feed(stderr)).toEqual({ path: ["hosts", "web1", "tags", 1], message: "boom here" });
  });

  it("names the deepest attribute and the error, outermost first (newer Nix)", () => {
    const stderr = `error:
       … «nixship-fleet-attribute []»

       … «nixship-fleet-attribute ["policies"]»

       … «nixship-fleet-attribute ["policies","@web"]»

       … while calling the 'throw' builtin
         at /nix/store/00000000000000000000000000000000-source/flake.nix:5:18:
            4|
            5|       "@web" = throw "no policy yet";
             |                  ^

       error: no policy yet`;
    expect(feed(stderr)).toEqual({ path: ["policies", "@web"], message: "no policy yet" });
  });

  it("keeps a message of several lines, and says so when nothing marked the fault", () => {
    const stderr = `error: The option \`nixship.deployment.adress' does not exist. Definition values:
       - In \`/nix/store/x-source/flake.nix': "10.0.0.1"
(use '--show-trace' to show detailed location information)`;
    expect(feed(stderr)).toEqual({
      path: undefined,
      message:
        "The option `nixship.deployment.adress' does not exist. Definition values: - In `/nix/store/x-source/flake.nix': \"10.0.0.1\"",
    });
  });

  it("takes no mark from a line that only looks like one", () => {
    expect(feed("error: x\n… «nixship-fleet-attribute [not json»").path).toBeUndefined();
  });
});

describe("where a failed evaluation's error is", () => {
  it("the `at` after the error (Nix 2.8: the error first), not a trace entry's", () => {
    const stderr = `error: syntax error, unexpected '=', expecting ';'

       at /nix/store/l4sb32sgdzahfjxy6vdmlnb2wbi88654-source/nixship.nix:4:10:

            3|     address = "10.0.0.1"

       … while evaluating the attribute 'nixship'

       at /nix/store/l4sb32sgdzahfjxy6vdmlnb2wbi88654-source/flake.nix:3:5:`;
    expect(feed(stderr).location).toEqual({
      file: "/nix/store/l4sb32sgdzahfjxy6vdmlnb2wbi88654-source/nixship.nix",
      line: 4,
      column: 10,
    });
  });

  it("the `at` after the last error (newer Nix: the trace first)", () => {
    const stderr = `error:
       … while calling the 'import' builtin
         at /nix/store/l4sb32sgdzahfjxy6vdmlnb2wbi88654-source/flake.nix:3:15:
            2|   outputs = { self }: {

       error: syntax error, unexpected '=', expecting ';'
       at /nix/store/l4sb32sgdzahfjxy6vdmlnb2wbi88654-source/nixship.nix:4:10:
            3|     address = "10.0.0.1"`;
    expect(feed(stderr)).toMatchObject({
      message: "syntax error, unexpected '=', expecting ';'",
      location: { file: expect.stringMatching(/-source\/nixship\.nix$/), line: 4, column: 10 },
    });
  });

  it("none when Nix names no file (an expression of nixship's own)", () => {
    const stderr = `error: boom here

       at «string»:4:16:`;
    expect(feed(stderr).location).toBeUndefined();
  });
});
