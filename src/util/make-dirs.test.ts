// makeDirs: every missing parent made, an existing tree left alone, a file in the way and a
// parent that refuses new entries (/proc) an error at once, where Node's recursive mkdir spins.
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeDirs } from "./make-dirs.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-make-dirs-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe("makeDirs", () => {
  it("makes every missing parent, with the mode asked, and leaves an existing tree alone", async () => {
    const deep = join(dir, "a", "b", "c");
    await makeDirs(deep, 0o700);
    expect(((await stat(deep)).mode & 0o777).toString(8)).toBe("700");
    expect(((await stat(join(dir, "a"))).mode & 0o777).toString(8)).toBe("700");
    await makeDirs(deep);
    await makeDirs(dir);
  });

  it("refuses a path through a file", async () => {
    await writeFile(join(dir, "file"), "x");
    await expect(makeDirs(join(dir, "file", "sub"))).rejects.toMatchObject({ code: "ENOTDIR" });
  });

  it("fails at once under /proc, which refuses new entries", async () => {
    await expect(makeDirs("/proc/nixship-make-dirs/x")).rejects.toMatchObject({ code: "ENOENT" });
  });
});
