import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  checkZstdPatchFrom,
  computeZstdDelta,
  DELTA_ZSTD_THREADS_FROM,
  deltaLevelFor,
  parseZstdVersion,
  supportsPatchFrom,
} from "./delta-zstd.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-delta-zstd-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A stand-in `zstd` that prints `version` and, asked for more, sleeps. */
async function fakeZstd(name: string, version: string): Promise<string> {
  const file = join(dir, name);
  await writeFile(
    file,
    `#!/bin/sh\nif [ "$1" = --version ]; then echo '*** Zstandard CLI (64-bit) ${version}, by Yann Collet ***'; exit 0; fi\nexec sleep 30\n`,
  );
  await chmod(file, 0o755);
  return file;
}

describe("the zstd CLI for deltas", () => {
  it("reads the version line and knows patch mode came in 1.4.5", () => {
    expect(parseZstdVersion("*** Zstandard CLI (64-bit) v1.5.4, by Yann Collet ***")).toEqual([
      1, 5, 4,
    ]);
    expect(parseZstdVersion("zstd command line interface")).toBeUndefined();
    expect(supportsPatchFrom([1, 4, 4])).toBe(false);
    expect(supportsPatchFrom([1, 4, 5])).toBe(true);
    expect(supportsPatchFrom([1, 3, 9])).toBe(false);
    expect(supportsPatchFrom([2, 0, 0])).toBe(true);
  });

  it("refuses a zstd without --patch-from, naming the fix", async () => {
    const zstd = await fakeZstd("zstd-old", "v1.4.4");
    const err = await checkZstdPatchFrom(zstd).catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: "zstd-too-old",
      message: expect.stringContaining("is zstd 1.4.4, which has no --patch-from"),
      hint: expect.stringContaining("apt-get install zstd"),
    });
  });

  it("names the fix when there is no zstd at all", async () => {
    const err = await checkZstdPatchFrom(join(dir, "no-such-zstd")).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "zstd-missing", hint: expect.stringContaining("zstd") });
  });

  it("the local zstd has patch mode", async () => {
    await expect(checkZstdPatchFrom()).resolves.toBeUndefined();
  });

  it("stops a zstd that runs past its deadline", async () => {
    const zstd = await fakeZstd("zstd-slow", "v1.5.4");
    const err = await computeZstdDelta("a", "b", join(dir, "out"), 10, {
      zstd,
      timeoutMs: 200,
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "delta-timeout" });
  });
});

describe("zstd's threads", () => {
  it("takes every core only for a large target, even when asked for all", async () => {
    // A stand-in that records its arguments, one run a line.
    const log = join(dir, "args.log");
    const zstd = join(dir, "zstd-args");
    await writeFile(
      zstd,
      `#!/bin/sh\nif [ "$1" = --version ]; then echo '*** Zstandard CLI (64-bit) v1.5.4, by Yann Collet ***'; exit 0; fi\necho "$*" >> '${log}'\n`,
    );
    await chmod(zstd, 0o755);
    const run = (size: number, threads: "all" | "one") =>
      computeZstdDelta("base", "target", join(dir, "out"), size, { zstd, level: 3, threads });
    await run(DELTA_ZSTD_THREADS_FROM - 1, "all");
    await run(DELTA_ZSTD_THREADS_FROM, "all");
    await run(DELTA_ZSTD_THREADS_FROM, "one");
    const lines = (await readFile(log, "utf8")).trim().split("\n");
    expect(
      lines.map((l) => (l.includes("-T0") ? "T0" : l.includes("--single-thread") ? "one" : l)),
    ).toEqual(["one", "T0", "one"]);
  });
});

describe("deltaLevelFor", () => {
  it("takes level 19 up to 120 MiB of NAR and level 9 above (bench:delta's kernel)", () => {
    expect(deltaLevelFor(120 * 1024 * 1024)).toBe(19);
    expect(deltaLevelFor(120 * 1024 * 1024 + 1)).toBe(9);
  });
});
