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
  await writeFile(join(repo, "flake.nix"), "{ }\n");
});
afterAll(() => rm(repo, { recursive: true, force: true }));

describe("where an evaluation error is, as a message names it", () => {
  const at = (file: string) => ({ file, line: 4, column: 10 });

  it("the local file Nix's copy came from: under the flake's directory, or above it (a flake in a git repository's subdirectory is copied from the top)", () => {
    expect(evalPlace("L", at(`${copy}/flake.nix`), repo)).toBe(`${join(repo, "flake.nix")}:4:10`);
    expect(evalPlace("L", at(`${copy}/fleet/nixship.nix`), join(repo, "fleet"))).toBe(
      `${join(repo, "fleet", "nixship.nix")}:4:10`,
    );
  });

  it("beside the label when no local file holds it (a remote flake), a local path as it is, and the label alone without a file", () => {
    expect(evalPlace("github:o/r", at(`${copy}/hive.nix`), null)).toBe(
      "github:o/r (hive.nix:4:10 in its source)",
    );
    expect(evalPlace("L", at(`${copy}/gone.nix`), repo)).toBe("L (gone.nix:4:10 in its source)");
    expect(evalPlace("L", at("/etc/nixship/lib.nix"), repo)).toBe("/etc/nixship/lib.nix:4:10");
    expect(evalPlace("L", undefined, repo)).toBe("L");
  });
});
