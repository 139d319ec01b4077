// Which reference a local flake gets from git: a git that cannot be run leaves the flake a
// path: one, and a git that fails otherwise stops the command, where it once quietly made a
// git flake a path: one (whose copy takes untracked files too).
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { localFlakeRef } from "./flake-source.js";

let work: string;
const path = process.env.PATH;
const named = { where: "the test's fleet", base: "the test's directory" };

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-flake-git-"));
  await mkdir(join(work, "flake"));
  await writeFile(join(work, "flake", "flake.nix"), "{ outputs = { self }: { }; }\n");
  await mkdir(join(work, "bin"));
  await writeFile(
    join(work, "bin", "git"),
    "#!/bin/sh\necho 'fatal: the disk is gone' >&2\nexit 3\n",
  );
  await chmod(join(work, "bin", "git"), 0o755);
});
afterEach(() => {
  process.env.PATH = path;
});
afterAll(() => rm(work, { recursive: true, force: true }));

describe("a local flake's reference", () => {
  it("is a path: one where git is not installed", async () => {
    process.env.PATH = join(work, "empty");
    expect(await localFlakeRef(join(work, "flake"), false, named)).toBe(
      `path:${join(work, "flake")}`,
    );
  });

  it("is not guessed when git fails: the command stops with git's words", async () => {
    process.env.PATH = `${join(work, "bin")}:${path}`;
    await expect(localFlakeRef(join(work, "flake"), false, named)).rejects.toThrow(
      /to find the git repository of the flake exited with 3:\nfatal: the disk is gone/,
    );
  });
});
