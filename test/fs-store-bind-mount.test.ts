// A directory store under a bind mount of the file system a file is written on (systemd's
// BindPaths=, a container's volume): the same device, but Linux renames nothing between two
// mounts (EXDEV). A put of a file written outside the mount copies it in. The mount is made in
// a mount namespace of the test's own (unshare), so nothing outside it sees the mount.
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NIXSHIP_BIN, run } from "../support/cli.js";

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-bind-"));
  await mkdir(join(work, "real", "cache"), { recursive: true });
  await mkdir(join(work, "mounted"));
  await mkdir(join(work, "outside"));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

// Puts a file written outside the mount into a store under it, and says what it found.
const SCRIPT = `
const { writeFile, readFile, access } = await import("node:fs/promises");
const { openStore } = await import(process.env.ROOT + "/dist/store/url.js");
const file = process.env.WORK + "/outside/delta.nar";
await writeFile(file, "the bytes of a NAR");
const store = await openStore("file://" + process.env.WORK + "/mounted/cache");
const put = await store.putFile("delta/x.nar", file);
await store.close();
const gone = await access(file).then(() => false, () => true);
console.log(JSON.stringify({ status: put.status, gone }));
`;

describe("a directory store under a bind mount", () => {
  it("takes a file from outside the mount by copying it (no EXDEV)", async () => {
    const r = await run(
      "unshare",
      [
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        'mount --bind "$WORK/real" "$WORK/mounted" && exec node --input-type=module -e "$SCRIPT"',
      ],
      { env: { WORK: work, ROOT: join(dirname(NIXSHIP_BIN), "../.."), SCRIPT } },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ status: "written", gone: true });
    // Through the mount it landed on the real directory, whole.
    expect(await readFile(join(work, "real", "cache", "delta", "x.nar"), "utf8")).toBe(
      "the bytes of a NAR",
    );
  });
});
