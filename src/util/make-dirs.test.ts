// makeDirs: every missing parent made, an existing tree left alone, a file in the way and a
// parent that refuses new entries (/proc) an error at once, where Node's recursive mkdir spins.
import { mkdtemp, rm, rmdir, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { makeDirs } from "./make-dirs.js";

// Runs before a mkdir of makeDirs when set: the moment a concurrent delete (a store's tidying of
// empty folders) can remove the parent makeDirs has just seen. Timing the real race is left to
// chance; the fault itself is the file system's.
let beforeMkdir: ((path: string) => Promise<void>) | undefined;
vi.mock("node:fs/promises", async (original) => {
  const real = await original<typeof import("node:fs/promises")>();
  return {
    ...real,
    mkdir: async (...args: Parameters<typeof real.mkdir>) => {
      const hook = beforeMkdir;
      beforeMkdir = undefined;
      await hook?.(String(args[0]));
      return real.mkdir(...args);
    },
  };
});

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

  it("makes a parent again that a concurrent delete removed after it was seen", async () => {
    const parent = join(dir, "gc");
    await makeDirs(parent);
    beforeMkdir = async (path) => {
      expect(path).toBe(join(parent, "leases"));
      await rmdir(dirname(path));
    };
    await makeDirs(join(parent, "leases"));
    expect(beforeMkdir).toBeUndefined(); // the fault happened
    expect((await stat(join(parent, "leases"))).isDirectory()).toBe(true);
  });

  it("still fails when the parent keeps vanishing", async () => {
    const parent = join(dir, "flaky");
    let removals = 0;
    const vanish = async (path: string) => {
      // The test's own directory is not empty, and stays.
      if (
        await rmdir(dirname(path)).then(
          () => true,
          () => false,
        )
      )
        removals++;
      beforeMkdir = vanish;
    };
    await makeDirs(parent);
    beforeMkdir = vanish;
    await expect(makeDirs(join(parent, "x", "y"))).rejects.toMatchObject({ code: "ENOENT" });
    beforeMkdir = undefined;
    expect(removals).toBeGreaterThan(1);
    expect(removals).toBeLessThan(10);
  });
});
