// Files being replaced when the process is made to stop at once (a second interrupt runs the
// last words, then exits): the temporary files staged so far are removed, and the files stay as
// they were. A write that does not end until the test lets it is stood in for (a slow disk);
// what is on disk is real.
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";

/** The write of a file whose name holds `.b.` waits until `release` is called. */
const held = { release: () => {} };

vi.mock("node:fs/promises", async (original) => {
  const fs = (await original()) as typeof import("node:fs/promises");
  return {
    ...fs,
    open: async (...args: Parameters<typeof fs.open>) => {
      const handle = await fs.open(...args);
      if (!String(args[0]).includes(".b.")) return handle;
      return Object.assign(Object.create(handle) as typeof handle, {
        writeFile: async (data: string | Uint8Array) => {
          await new Promise<void>((resolve) => {
            held.release = resolve;
          });
          await handle.writeFile(data);
        },
        sync: () => handle.sync(),
        close: () => handle.close(),
      });
    },
  };
});

const { writeFilesAtomically } = await import("./atomic-file.js");
const { lastWordsPending, sayLastWords } = await import("./last-words.js");

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-atomic-interrupt-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe("writeFilesAtomically, stopped at once", () => {
  it("removes the temporary files it staged by its last words, and leaves the files as they were", async () => {
    await writeFile(join(dir, "a"), "a1");
    await writeFile(join(dir, "b"), "b1");
    const writing = writeFilesAtomically([
      { file: join(dir, "a"), content: "a2" },
      { file: join(dir, "b"), content: "b2" },
    ]);
    const staged = async () => (await readdir(dir)).filter((n) => n.endsWith(".tmp"));
    await vi.waitFor(async () => expect(await staged()).toHaveLength(2), { timeout: 30_000 });
    expect(lastWordsPending()).toBe(true);
    await sayLastWords(5000);
    expect(await staged()).toEqual([]);
    // Were the process to go on (it exits after its last words), the write fails, whole.
    held.release();
    await expect(writing).rejects.toThrow(/ENOENT/);
    expect(await readFile(join(dir, "a"), "utf8")).toBe("a1");
    expect(await readFile(join(dir, "b"), "utf8")).toBe("b1");
    expect(lastWordsPending()).toBe(false);
  });
});
