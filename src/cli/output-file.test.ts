import { lstat, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { checkOutputFile, writeOutputFile } from "./output-file.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-output-file-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("writeOutputFile", () => {
  it("replaces the file a symbolic link names, and keeps the link", async () => {
    await mkdir(join(dir, "real"));
    await writeFile(join(dir, "real", "nixship.json"), "old\n");
    await symlink(join("real", "nixship.json"), join(dir, "link.json"));
    await checkOutputFile(join(dir, "link.json"));
    await writeOutputFile(join(dir, "link.json"), "new\n");
    expect((await lstat(join(dir, "link.json"))).isSymbolicLink()).toBe(true);
    expect(await readFile(join(dir, "real", "nixship.json"), "utf8")).toBe("new\n");
  });

  it("refuses a link to a directory, naming the path given", async () => {
    await mkdir(join(dir, "real"));
    await symlink("real", join(dir, "link"));
    await expect(checkOutputFile(join(dir, "link"))).rejects.toThrow(
      `cannot write ${join(dir, "link")}`,
    );
  });

  it("writes a new file, and refuses a link to nothing, writing nothing", async () => {
    await writeOutputFile(join(dir, "new.json"), "a\n");
    expect(await readFile(join(dir, "new.json"), "utf8")).toBe("a\n");
    await symlink("kh", join(dir, "dangling.json"));
    const refusal = `cannot write ${join(dir, "dangling.json")}: it is a symbolic link to kh, which does not exist`;
    await expect(checkOutputFile(join(dir, "dangling.json"))).rejects.toThrow(refusal);
    await expect(writeOutputFile(join(dir, "dangling.json"), "b\n")).rejects.toThrow(refusal);
    expect((await lstat(join(dir, "dangling.json"))).isSymbolicLink()).toBe(true);
    await expect(lstat(join(dir, "kh"))).rejects.toThrow(/ENOENT/);
  });
});
