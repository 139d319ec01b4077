import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BAD_NARS } from "../../test/support/nar-corpus.js";
import { dumpPath } from "./nar-encode.js";
import { restoreNar } from "./nar-restore.js";
import { buildNar, narNode } from "./nar-write.js";

const { regular, symlink, directory } = narNode;

let tmp: string;
let parent: string;
let outside: string;
beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), "nar-restore-"));
  parent = join(tmp, "parent");
  outside = join(tmp, "outside");
  mkdirSync(parent);
  mkdirSync(outside);
});
afterEach(() => {
  rmSync(tmp, { recursive: true, force: true });
});

const mode = (p: string) => lstatSync(p).mode & 0o7777;

async function dump(path: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of dumpPath(path)) chunks.push(c);
  return Buffer.concat(chunks);
}

describe("restoreNar", () => {
  it("restores a tree with the modes nix-store --restore gives, and it dumps back the same", async () => {
    const nar = buildNar(
      directory([
        ["bin", directory([["hi", regular("echo hi\n", true)]])],
        ["empty", directory([])],
        ["empty.txt", regular("")],
        ["link", symlink("bin/hi")],
      ]),
    );
    const out = join(parent, "out");
    await restoreNar([nar], out);
    expect(readFileSync(join(out, "bin/hi"), "utf8")).toBe("echo hi\n");
    expect(readlinkSync(join(out, "link"))).toBe("bin/hi");
    expect([out, join(out, "bin"), join(out, "empty")].map(mode)).toEqual([0o755, 0o755, 0o755]);
    expect(mode(join(out, "bin/hi"))).toBe(0o755);
    expect(mode(join(out, "empty.txt"))).toBe(0o644);
    expect((await dump(out)).equals(nar)).toBe(true);
    expect(readdirSync(parent)).toEqual(["out"]);
  });

  it("restores a single file or symlink as the root", async () => {
    await restoreNar([buildNar(regular("bar"))], join(parent, "f"));
    expect(readFileSync(join(parent, "f"), "utf8")).toBe("bar");
    await restoreNar([buildNar(symlink(outside))], join(parent, "l"));
    expect(readlinkSync(join(parent, "l"))).toBe(outside);
    expect(readdirSync(outside)).toEqual([]);
  });

  it("streams large files through in chunks", async () => {
    const big = Buffer.alloc(3 << 20, 1);
    const nar = buildNar(regular(big));
    async function* source() {
      for (let i = 0; i < nar.length; i += 100_000) yield nar.subarray(i, i + 100_000);
    }
    await restoreNar(source(), join(parent, "big"));
    expect(readFileSync(join(parent, "big")).equals(big)).toBe(true);
  });

  it("refuses a target that already exists, even as a dangling symlink", async () => {
    const nar = buildNar(regular("bar"));
    mkdirSync(join(parent, "dir"));
    await expect(restoreNar([nar], join(parent, "dir"))).rejects.toThrow(/it already exists/);
    // Bad input (exit 2), as fetch --restore says it, with what to do.
    await expect(restoreNar([nar], join(parent, "dir"))).rejects.toMatchObject({
      exitCode: 2,
      hint: "name a path that is not there yet (a restore never writes into or over one)",
    });
    symlinkSync(join(outside, "x"), join(parent, "dangling"));
    await expect(restoreNar([nar], join(parent, "dangling"))).rejects.toThrow(/it already exists/);
    expect(readdirSync(outside)).toEqual([]);
  });

  it("refuses a target whose parent directory is not there, naming it, and makes nothing", async () => {
    const nar = buildNar(regular("bar"));
    const target = join(parent, "no-such-dir", "sub", "r");
    await expect(restoreNar([nar], target)).rejects.toMatchObject({
      code: "restore-parent-missing",
      exitCode: 2,
      message: `cannot restore into '${target}': ${join(parent, "no-such-dir", "sub")} is not a directory that exists`,
    });
    expect(existsSync(join(parent, "no-such-dir"))).toBe(false);
  });

  it("writes nothing through a symlink the archive itself contains", async () => {
    const nar = buildNar(
      directory([
        ["a", regular("A")],
        ["x", symlink(outside)],
        ["y", directory([["f", regular("F")]])],
      ]),
    );
    await restoreNar([nar], join(parent, "out"));
    expect(readlinkSync(join(parent, "out/x"))).toBe(outside);
    expect(readdirSync(outside)).toEqual([]);
  });

  describe("leaves nothing behind for a malformed NAR", () => {
    type Case = [rule: string, make: (outsideDir: string) => Buffer, message: RegExp];
    const escapes: Case[] = [
      [
        "escape via an entry named '..'",
        () => buildNar(directory([["..", directory([["evil", regular("x")]])]])),
        /^invalid entry name "\.\."/,
      ],
      [
        "escape via an entry named 'a/b'",
        () =>
          buildNar(
            directory([
              ["a", directory([])],
              ["a/b", regular("x")],
            ]),
          ),
        /^invalid entry name "a\/b"/,
      ],
      [
        "escape via a symlink out of the tree, then an entry of that name writing through it",
        (outsideDir) =>
          buildNar(
            directory([
              ["x", symlink(outsideDir)],
              ["x", directory([["evil", regular("x")]])],
            ]),
          ),
        /^duplicate entry "x"/,
      ],
    ];
    const cases: Case[] = [
      ...BAD_NARS.map((b): Case => [b.rule, () => b.nar, b.message]),
      ...escapes,
    ];

    it.each(cases)("%s", async (_rule, make, message) => {
      await expect(restoreNar([make(outside)], join(parent, "out"))).rejects.toThrow(message);
      expect(readdirSync(parent)).toEqual([]);
      expect(readdirSync(outside)).toEqual([]);
      expect(readdirSync(tmp).sort()).toEqual(["outside", "parent"]);
    });

    it("after files were already written", async () => {
      const nar = buildNar(
        directory([
          ["b", directory([["big", regular(Buffer.alloc(100_000, 2), true)]])],
          ["c", symlink("b")],
          ["a", regular("late and out of order")],
        ]),
      );
      await expect(restoreNar([nar], join(parent, "out"))).rejects.toThrow(/out of order/);
      expect(readdirSync(parent)).toEqual([]);
      expect(existsSync(join(parent, "out"))).toBe(false);
    });
  });
});
