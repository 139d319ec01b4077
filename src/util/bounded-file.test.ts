// readFileBounded: a whole small file, nothing for a missing one, and a refusal past the limit
// or for what is not a regular file.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { readFileBounded } from "./bounded-file.js";

const dir = mkdtempSync(join(tmpdir(), "nixship-bounded-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const tooLarge = (size: number) => new Error(`too large: ${size}`);

describe("readFileBounded", () => {
  it("reads a file up to the limit whole, and nothing for a missing one", async () => {
    const file = join(dir, "ten");
    writeFileSync(file, "0123456789");
    expect((await readFileBounded(file, 10, tooLarge))?.toString()).toBe("0123456789");
    expect(await readFileBounded(join(dir, "none"), 10, tooLarge)).toBeUndefined();
  });

  it("refuses a file over the limit, and a directory", async () => {
    const file = join(dir, "eleven");
    writeFileSync(file, "01234567890");
    await expect(readFileBounded(file, 10, tooLarge)).rejects.toThrow("too large: 11");
    await expect(readFileBounded(dir, 10, tooLarge)).rejects.toMatchObject({ code: "ENOTFILE" });
  });

  it("refuses a named pipe that nothing writes at once, where open() would wait for a writer", async () => {
    const fifo = join(dir, "fifo");
    execFileSync("mkfifo", [fifo]);
    await expect(readFileBounded(fifo, 10, tooLarge)).rejects.toMatchObject({ code: "ENOTFILE" });
  }, 5000);
});
