import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NixshipError } from "../errors.js";
import { Sha256 } from "../nix/hash.js";
import { dumpChunks } from "../nix/nar-encode.js";
import { FRAME_SIZE } from "./nar-check.js";
import { narFile } from "./nar-file.js";
import { InlineNarWriter, NarPool, type NarWriter } from "./nar-pool.js";
import { ZstdFrameCompressor } from "./zstd.js";

let work: string;
let tree: string;
let nar: Buffer;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-zstd-nar-"));
  tree = join(work, "tree");
  await mkdir(join(tree, "sub"), { recursive: true });
  // Compressible but not trivial text, more than two frames long, beside a small file.
  const lines = Array.from({ length: 600_000 }, (_, i) => `line ${i} ${(i * 7919) % 104729}\n`);
  await writeFile(join(tree, "data.txt"), lines.join(""));
  await writeFile(join(tree, "sub", "small"), "small\n");
  await symlink("../data.txt", join(tree, "sub", "link"));
  nar = Buffer.concat([...dumpChunks(tree)]);
  expect(nar.length).toBeGreaterThan(2 * FRAME_SIZE);
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const unzstd = (bytes: Buffer): Buffer =>
  execFileSync("zstd", ["-d", "-c", "-q"], { input: bytes, maxBuffer: 1 << 28 });

describe("narFile", () => {
  it("writes frames that the zstd CLI decompresses to exactly the NAR, with both digests", () => {
    const out = join(work, "a.nar.zst");
    let heard = 0;
    const digests = narFile(tree, out, new ZstdFrameCompressor(3), (n) => {
      heard += n;
    });
    const file = readFileSync(out);
    expect(unzstd(file).equals(nar)).toBe(true);
    expect(digests.nar).toEqual({ hash: Sha256.of(nar), size: nar.length });
    expect(digests.file).toEqual({ hash: Sha256.of(file), size: file.length });
    expect(heard).toBe(nar.length);
  });

  it("writes the NAR itself without a compressor, its one digest serving as both", () => {
    const out = join(work, "plain.nar");
    const digests = narFile(tree, out, undefined);
    expect(readFileSync(out).equals(nar)).toBe(true);
    expect(digests.nar).toEqual({ hash: Sha256.of(nar), size: nar.length });
    expect(digests.file).toEqual(digests.nar);
  });

  it("honours the compression level", () => {
    // Ignoring the level would give identical output. (Level 1 is no good probe: on text
    // like this its different strategy can beat 3-9.)
    const standard = narFile(tree, join(work, "l3.nar.zst"), new ZstdFrameCompressor(3));
    const strong = narFile(tree, join(work, "l9.nar.zst"), new ZstdFrameCompressor(9));
    expect(strong.file.size).toBeLessThan(standard.file.size);
    expect(unzstd(readFileSync(join(work, "l9.nar.zst"))).equals(nar)).toBe(true);
  });

  it("refuses to overwrite an existing file", () => {
    const out = join(work, "taken");
    execFileSync("touch", [out]);
    expect(() => narFile(tree, out, new ZstdFrameCompressor(3))).toThrow(/EEXIST/);
    expect(readFileSync(out).length).toBe(0);
  });

  it("removes its output when serialising fails", () => {
    const out = join(work, "missing.nar.zst");
    expect(() => narFile(join(work, "no-such-dir"), out, new ZstdFrameCompressor(3))).toThrow(
      /ENOENT/,
    );
    expect(existsSync(out)).toBe(false);
  });
});

const writers: [string, (threads: number) => NarWriter][] = [
  ["NarPool", (threads) => new NarPool(threads)],
  ["InlineNarWriter", () => new InlineNarWriter()],
];

describe("NAR writers", () => {
  for (const [name, make] of writers) {
    it(`${name}: writes the zstd NARs of paths into the files it is given`, async () => {
      const outDir = join(work, `${name}-out`);
      await mkdir(outDir);
      const pool = make(2);
      try {
        let heard = 0;
        const outs = [1, 2, 3].map((i) => join(outDir, `${i}.nar.zst`));
        const results = await Promise.all(
          outs.map((out) =>
            pool.write({ path: tree, out, level: 3, label: "/nix/store/x-tree" }, (n) => {
              heard += n;
            }),
          ),
        );
        expect(heard).toBe(3 * nar.length);
        for (const [i, r] of results.entries()) {
          expect(r.nar).toEqual({ hash: Sha256.of(nar), size: nar.length });
          const file = readFileSync(outs[i] as string);
          expect(r.file).toEqual({ hash: Sha256.of(file), size: file.length });
          expect(unzstd(file).equals(nar)).toBe(true);
        }
      } finally {
        await pool.close();
      }
    });

    it(`${name}: writes uncompressed NARs when the job has no level`, async () => {
      const out = join(work, `${name}-plain.nar`);
      const pool = make(1);
      try {
        const r = await pool.write({ path: tree, out, level: undefined, label: "x" });
        expect(readFileSync(out).equals(nar)).toBe(true);
        expect(r.file).toEqual({ hash: Sha256.of(nar), size: nar.length });
      } finally {
        await pool.close();
      }
    });

    it(`${name}: stops a NAR past the bytes the job allows, and removes its file`, async () => {
      const out = join(work, `${name}-bounded.nar`);
      const pool = make(1);
      try {
        const failed = pool.write({
          path: tree,
          out,
          level: undefined,
          label: "x",
          maxNarBytes: nar.length - 1,
        });
        await expect(failed).rejects.toMatchObject({
          code: "nar-too-large",
          message: expect.stringContaining(`past the ${nar.length - 1} bytes`),
        });
        expect(existsSync(out)).toBe(false);
        const exact = await pool.write({
          path: tree,
          out,
          level: undefined,
          label: "x",
          maxNarBytes: nar.length,
        });
        expect(exact.nar.size).toBe(nar.length);
      } finally {
        await pool.close();
      }
    });

    it(`${name}: rejects with an error that names the path, and keeps working afterwards`, async () => {
      const outDir = join(work, `${name}-errors`);
      await mkdir(outDir);
      const pool = make(1);
      try {
        const failed = pool.write({
          path: join(work, "absent"),
          out: join(outDir, "absent.nar.zst"),
          level: 3,
          label: "/nix/store/x-absent",
        });
        await expect(failed).rejects.toThrow(NixshipError);
        await expect(failed).rejects.toThrow(/cannot serialise \/nix\/store\/x-absent: .*ENOENT/);
        const out = join(outDir, "tree.nar.zst");
        const ok = await pool.write({ path: tree, out, level: 3, label: "/nix/store/x-tree" });
        expect(ok.nar.size).toBe(nar.length);
        expect(await readdir(outDir)).toEqual(["tree.nar.zst"]);
      } finally {
        await pool.close();
      }
    });
  }
});

describe("NarPool", () => {
  it("fails every waiting job, clearly, when a worker thread dies", async () => {
    const pool = new NarPool(1);
    const jobs = [1, 2].map((i) =>
      pool.write({ path: tree, out: join(work, `dies-${i}`), level: 3, label: "x" }),
    );
    await pool.close();
    for (const job of jobs) await expect(job).rejects.toThrow(/NAR worker thread exited/);
  });
});
