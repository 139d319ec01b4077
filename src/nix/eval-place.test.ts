import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { evalPlace } from "./eval-place.js";

let repo: string;
const copy = "/nix/store/l4sb32sgdzahfjxy6vdmlnb2wbi88654-source";

beforeAll(async () => {
  repo = await mkdtemp(join(tmpdir(), "nixship-eval-place-"));
  await mkdir(join(repo, "fleet"), { recursive: true });
  await writeFile(join(repo, "fleet", "nixship.nix"), "{ }\n");
  await writeFile(join(repo, "fleet", "flake.nix"), "{ }\n");
  await writeFile(join(repo, "flake.nix"), "{ }\n");
});
afterAll(() => rm(repo, { recursive: true, force: true }));

describe("where an evaluation error is, as a message names it", () => {
  const at = (file: string) => ({ file, line: 4, column: 10 });

  it("the local file Nix's copy came from, under the directory Nix copied: a git flake's repository top, a path flake's own directory", () => {
    const git = `git+file://${repo}?dir=fleet`;
    expect(evalPlace("L", at(`${copy}/fleet/nixship.nix`), git)).toBe(
      `${join(repo, "fleet", "nixship.nix")}:4:10`,
    );
    // The top's flake.nix is the top's, not fleet/'s.
    expect(evalPlace("L", at(`${copy}/flake.nix`), git)).toBe(`${join(repo, "flake.nix")}:4:10`);
    // path: copies the flake's directory alone.
    expect(evalPlace("L", at(`${copy}/flake.nix`), `path:${join(repo, "fleet")}`)).toBe(
      `${join(repo, "fleet", "flake.nix")}:4:10`,
    );
  });

  it("the store's file beside the label when the copy is not of the flake's tree (a remote flake, another input), a local path as it is, and the label alone without a file", () => {
    expect(evalPlace("github:o/r", at(`${copy}/hive.nix`), "github:o/r")).toBe(
      `github:o/r (at ${copy}/hive.nix:4:10)`,
    );
    // nixpkgs' lib/attrsets.nix: no such file in the user's tree.
    expect(evalPlace("L", at(`${copy}/lib/attrsets.nix`), `path:${repo}`)).toBe(
      `L (at ${copy}/lib/attrsets.nix:4:10)`,
    );
    expect(evalPlace("L", at("/etc/nixship/lib.nix"), `path:${repo}`)).toBe(
      "/etc/nixship/lib.nix:4:10",
    );
    expect(evalPlace("L", undefined, `path:${repo}`)).toBe("L");
  });
});
