// A store path on the command line may be a link to one, as `nix build` leaves ./result; a
// file inside a store path, or a link to something else, is named as what it is.
import { mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InputError } from "../errors.js";
import { storePathArgument } from "./store-path-argument.js";

const PATH = "/nix/store/01vmr9rq8hhd8xxdmb2jzh0zl3i1sj1a-libd-1.0";
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-store-path-argument-"));
  await symlink(PATH, join(dir, "result"));
  await symlink("result", join(dir, "result-again"));
  await symlink(`${PATH}/lib`, join(dir, "result-lib"));
  await symlink("/etc", join(dir, "etc-link"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

function failure(text: string): InputError {
  try {
    storePathArgument(text, "argument");
  } catch (err) {
    if (err instanceof InputError) return err;
    throw err;
  }
  throw new Error(`${text} was taken`);
}

describe("storePathArgument", () => {
  it("takes a store path, and a link to one (through a link too), as Nix's commands do", () => {
    expect(storePathArgument(PATH, "argument")).toBe(PATH);
    expect(storePathArgument(join(dir, "result"), "argument")).toBe(PATH);
    expect(storePathArgument(join(dir, "result-again"), "argument")).toBe(PATH);
  });

  it("names the store path a file is inside of", () => {
    expect(failure(`${PATH}/lib`).message).toBe(
      `argument '${PATH}/lib' is inside the store path '${PATH}': give that path`,
    );
    expect(failure(join(dir, "result-lib")).message).toBe(
      `argument '${join(dir, "result-lib")}' is a link: its target '${PATH}/lib' is inside the store path '${PATH}': give that path`,
    );
  });

  it("says what a path outside the store is, and how to give one", () => {
    const plain = failure("./nope");
    expect(plain.message).toBe("argument './nope' is not under /nix/store/");
    expect(plain.hint).toContain("a link to one such as nix build's ./result");
    expect(failure(join(dir, "etc-link")).message).toBe(
      `argument '${join(dir, "etc-link")}' is a link: its target '/etc' is not under /nix/store/`,
    );
  });
});
