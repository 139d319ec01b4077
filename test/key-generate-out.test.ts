// `key generate --out` writes a regular file and nothing else: a device node or a named pipe at
// the path is refused (exit 2) and left as it was, --force or not.
import { execFileSync } from "node:child_process";
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nixship } from "../support/cli.js";

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-key-out-"));
});
afterAll(() => rm(work, { recursive: true, force: true }));

describe("key generate --out", () => {
  it("refuses a device node and a named pipe, even with --force, and leaves them as they were", async () => {
    // The same device as /dev/null, in this test's own directory.
    const device = join(work, "null");
    execFileSync("mknod", ["-m", "666", device, "c", "1", "3"]);
    const pipe = join(work, "pipe");
    execFileSync("mkfifo", [pipe]);
    for (const [out, kind] of [
      [device, "a character device"],
      [pipe, "a named pipe"],
    ] as const) {
      const r = await nixship(["key", "generate", "--name", "c-1", "--out", out, "--force"]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(`${out} is ${kind}: nixship writes only regular files`);
    }
    expect((await stat(device)).isCharacterDevice()).toBe(true);
    expect((await stat(pipe)).isFIFO()).toBe(true);
    expect((await readdir(work)).sort()).toEqual(["null", "pipe"]);
  });
});
