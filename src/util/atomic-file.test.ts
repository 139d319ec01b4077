// Several files replaced at once: all, or (when a write fails) none. A full disk on the second
// file is stood in for (no real part here fills a disk on demand); what is on disk is real.
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";

const failing = { on: undefined as string | undefined };

vi.mock("node:fs/promises", async (original) =>
  (await import("../../support/full-disk.js")).fullDisk(
    await original(),
    (path) => failing.on !== undefined && path.includes(failing.on),
  ),
);

const { writeFilesAtomically } = await import("./atomic-file.js");

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-atomic-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe("writeFilesAtomically", () => {
  it("replaces every file, each with its mode", async () => {
    failing.on = undefined;
    await writeFilesAtomically([
      { file: join(dir, "a"), content: "a1" },
      { file: join(dir, "b"), content: "b1", mode: 0o600 },
    ]);
    expect(await readFile(join(dir, "a"), "utf8")).toBe("a1");
    expect((await stat(join(dir, "b"))).mode & 0o777).toBe(0o600);
  });

  it("leaves every file as it was, and no temporary file, when one cannot be written", async () => {
    await writeFile(join(dir, "a"), "a1");
    await writeFile(join(dir, "b"), "b1");
    failing.on = ".b.";
    await expect(
      writeFilesAtomically([
        { file: join(dir, "a"), content: "a2" },
        { file: join(dir, "b"), content: "b2" },
      ]),
    ).rejects.toThrow(/ENOSPC/);
    expect(await readFile(join(dir, "a"), "utf8")).toBe("a1");
    expect(await readFile(join(dir, "b"), "utf8")).toBe("b1");
    expect((await readdir(dir)).sort()).toEqual(["a", "b"]);
  });

  it("replaces only regular files: a named pipe or a directory at the path is refused, untouched", async () => {
    failing.on = undefined;
    const pipe = join(dir, "pipe");
    execFileSync("mkfifo", [pipe]);
    await expect(writeFilesAtomically([{ file: pipe, content: "x" }])).rejects.toMatchObject({
      code: "not-a-file",
      exitCode: 2,
      message: `${pipe} is a named pipe: nixship writes only regular files`,
    });
    expect((await stat(pipe)).isFIFO()).toBe(true);
    const folder = join(dir, "folder");
    await mkdir(folder);
    await expect(writeFilesAtomically([{ file: folder, content: "x" }])).rejects.toMatchObject({
      message: `${folder} is a directory: nixship writes only regular files`,
    });
    expect((await readdir(dir)).filter((n) => n.endsWith(".tmp"))).toEqual([]);
  });
});
