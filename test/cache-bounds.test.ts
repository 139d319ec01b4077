// Bounded reads of a hostile cache (a directory cache written by an attacker who holds no key,
// around a narinfo an honest key signed): a decompression bomb, a body far larger than its
// FileSize, and a narinfo of 1.5 GB. Each ends with the specific error, writes nothing outside
// its target, and keeps the process small. Sizes of the large objects are sparse files: the
// disk holds none of it, and only a reader that reads them would notice.
import { execFileSync } from "node:child_process";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { narInfoKey, narKey } from "../src/cache/layout.js";
import { Sha256 } from "../src/nix/hash.js";
import { formatPublicKey, generateSecretKey, publicKeyOf } from "../src/nix/keys.js";
import { buildNar, narNode } from "../src/nix/nar-write.js";
import { formatNarInfo, signNarInfo } from "../src/nix/narinfo.js";
import { makeStorePath } from "../src/nix/store-path.js";
import { NIXSHIP_BIN, run } from "../support/cli.js";

/** Resident memory the CLI may reach on any of these (it starts at about 70 MB). */
const RSS_BOUND_KB = 200 * 1024;

let work: string;
let cache: string;
let trusted: string;
const key = generateSecretKey("honest-1");

interface Planted {
  readonly path: string;
  readonly narinfo: string;
}

/** A signed narinfo for a one-file NAR, whose stored file is then replaced by `file`. */
async function plant(name: string, file: (path: string) => Promise<void>): Promise<Planted> {
  const path = await plantContent(name, "zstd", (nar) =>
    execFileSync("zstd", ["-q", "-c"], { input: nar }),
  );
  const narinfo = join(cache, narInfoKey(path));
  await file(join(cache, narUrl(narinfo)));
  return { path, narinfo };
}

/** Runs the CLI under GNU time; its exit code, output and peak RSS in kB. */
async function measured(args: string[]) {
  const r = await run("/usr/bin/time", ["-f", "rss=%M", process.execPath, NIXSHIP_BIN, ...args]);
  const rss = Number(/rss=(\d+)\s*$/.exec(r.stderr)?.[1] ?? Number.NaN);
  return { ...r, rss };
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-bounds-"));
  cache = join(work, "cache");
  await mkdir(join(cache, "nar"), { recursive: true });
  await writeFile(join(cache, "nix-cache-info"), "StoreDir: /nix/store\n");
  trusted = formatPublicKey(publicKeyOf(key));
});
afterAll(() => rm(work, { recursive: true, force: true }));

describe("a hostile cache", () => {
  it("a decompression bomb: fetch stops past NarSize, restores nothing, stays small", async () => {
    const bomb = await plant("bomb", async (file) => {
      // 13 KB of zstd that decompresses to 400 MB of zeros, under a narinfo whose FileSize
      // matches it (the attacker rewrote the file, not the signed narinfo's NarHash/NarSize).
      const zeros = execFileSync("sh", ["-c", "head -c 400000000 /dev/zero | zstd -q -19 -c"]);
      await writeFile(file, zeros);
    });
    // FileSize is outside what the signature covers: the attacker makes it match the bomb,
    // so the stream gets past the size check and has to be stopped by NarSize.
    rewriteFileSize(bomb.narinfo, statSync(join(cache, narUrl(bomb.narinfo))).size);
    const target = join(work, "restored-bomb");
    const r = await measured([
      "fetch",
      bomb.path,
      "--from",
      `file://${cache}`,
      "--trusted-key",
      trusted,
      "--restore",
      target,
      "--json",
    ]);
    expect(r.code, r.stderr).toBe(1);
    const { error } = JSON.parse(r.stdout) as { error: { code: string; message: string } };
    // Stopped by NarSize as the bytes came, not found out after 400 MB were written.
    expect(error.code).toBe("nar-mismatch");
    expect(error.message).toMatch(
      new RegExp(
        `^${bomb.path}: nar/\\w+\\.nar\\.zst decompresses to more than the \\d+ bytes its narinfo's NarSize says$`,
      ),
    );
    expect(r.rss).toBeLessThan(RSS_BOUND_KB);
    // Nothing of it left, the staging directory included.
    expect((await readdir(work)).filter((f) => f.includes("restored"))).toEqual([]);
  });

  it("a body far larger than FileSize: verify says so without reading it", async () => {
    const big = await plant("big-body", async (file) => {
      await writeFile(file, "");
      await truncate(file, 2 * 1024 * 1024 * 1024);
    });
    const r = await measured([
      "verify",
      "--cache",
      `file://${cache}`,
      "--trusted-key",
      trusted,
      big.path,
      "--json",
    ]);
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout) as {
      problems: { path: string; kind: string; message: string }[];
    };
    expect(report.problems).toContainEqual({
      path: big.path,
      kind: "file-mismatch",
      message: expect.stringContaining("is 2147483648 bytes, but the narinfo says FileSize"),
    });
    expect(r.rss).toBeLessThan(RSS_BOUND_KB);
  });

  it("a 1.5 GB narinfo: fetch and verify refuse it by its size, staying small", async () => {
    const huge = await plant("huge-narinfo", async () => {});
    await truncate(huge.narinfo, 1.5 * 1024 * 1024 * 1024);
    for (const args of [
      ["verify", "--cache", `file://${cache}`, "--trusted-key", trusted, huge.path, "--json"],
      [
        "fetch",
        huge.path,
        "--from",
        `file://${cache}`,
        "--trusted-key",
        trusted,
        "--restore",
        join(work, "restored-huge"),
        "--json",
      ],
    ]) {
      const r = await measured(args);
      // The cache's content, not the user's input: the operation failed (exit 1).
      expect(r.code, args[0]).toBe(1);
      expect(r.stdout + r.stderr).toContain("the most nixship reads of such an object");
      expect(r.stdout + r.stderr).not.toMatch(/bug in nixship/i);
      expect(r.rss, args[0]).toBeLessThan(RSS_BOUND_KB);
    }
  });
});

function narUrl(narinfo: string): string {
  return /^URL: (.*)$/m.exec(readFileSync(narinfo, "utf8"))?.[1] ?? "";
}

/** The attacker cannot re-sign, but FileSize is outside the signature's fingerprint. */
function rewriteFileSize(narinfo: string, size: number): void {
  const text = readFileSync(narinfo, "utf8");
  writeFileSync(narinfo, text.replace(/^FileSize: \d+$/m, `FileSize: ${size}`));
}

/**
 * A signed narinfo for a one-file NAR whose stored file (named by its own FileHash, with its
 * own FileSize: neither is covered by the signature) is `body(nar)`, under `compression`.
 */
async function plantContent(
  name: string,
  compression: "none" | "bzip2" | "zstd",
  body: (nar: Buffer) => Buffer,
  omitCompression = false,
): Promise<string> {
  const nar = buildNar(narNode.regular(`honest ${name}\n`));
  const narHash = Sha256.of(nar);
  const path = makeStorePath("output:out", narHash, name);
  const file = body(nar);
  const fileHash = Sha256.of(file);
  const url = narKey(fileHash, compression);
  const info = signNarInfo(
    {
      storePath: path,
      url,
      compression,
      fileHash,
      fileSize: file.length,
      narHash,
      narSize: nar.length,
      references: [],
      deriver: undefined,
      sigs: [],
      ca: undefined,
    },
    key,
  );
  let text = formatNarInfo(info);
  // Nix reads a narinfo without Compression as bzip2.
  if (omitCompression) text = text.replace(/^Compression: .*\n/m, "");
  await writeFile(join(cache, narInfoKey(path)), text);
  await writeFile(join(cache, url), file);
  return path;
}

describe("bad content under a valid signature gets the specific error", () => {
  const junk = () => Buffer.from("this is not compressed data at all\n");

  it("a corrupt uncompressed NAR: nar-mismatch from fetch (restore and import) and verify", async () => {
    const path = await plantContent("corrupt-nar", "none", (nar) =>
      Buffer.concat([nar.subarray(0, 20), Buffer.alloc(nar.length - 20, 7)]),
    );
    const restore = join(work, "restored-corrupt");
    for (const mode of [
      ["--restore", restore],
      ["--import", "--store", join(work, "store")],
    ]) {
      const r = await measured([
        "fetch",
        path,
        "--from",
        `file://${cache}`,
        "--trusted-key",
        trusted,
        ...mode,
        "--json",
      ]);
      expect(r.code, mode[0]).toBe(1);
      const { error } = JSON.parse(r.stdout) as {
        error: { code: string; message: string; hint?: string };
      };
      expect(error.code, mode[0]).toBe("nar-mismatch");
      expect(error.message).toContain(path);
      expect(error.hint ?? "").not.toMatch(/bug in nixship/);
    }
    expect((await readdir(work)).filter((f) => f.includes("restored-corrupt"))).toEqual([]);
    const v = await measured([
      "verify",
      "--cache",
      `file://${cache}`,
      "--trusted-key",
      trusted,
      path,
      "--json",
    ]);
    expect(JSON.parse(v.stdout).problems).toContainEqual(
      expect.objectContaining({ path, kind: "nar-mismatch" }),
    );
  });

  it("data that does not decompress (bzip2, zstd, or no Compression line): bad-compression", async () => {
    const cases = [
      await plantContent("junk-bzip2", "bzip2", junk),
      await plantContent("junk-zstd", "zstd", junk),
      await plantContent("junk-default", "bzip2", junk, true),
    ];
    for (const path of cases) {
      const v = await measured([
        "verify",
        "--cache",
        `file://${cache}`,
        "--trusted-key",
        trusted,
        path,
        "--json",
      ]);
      expect(v.code).toBe(1);
      expect(JSON.parse(v.stdout).problems).toEqual([
        {
          path,
          kind: "bad-compression",
          message: expect.stringMatching(
            new RegExp(
              `^${path}: nar/\\w+\\.nar(\\.bz2|\\.zst) does not decompress as (bzip2|zstd)`,
            ),
          ),
        },
      ]);
      const f = await measured([
        "fetch",
        path,
        "--from",
        `file://${cache}`,
        "--trusted-key",
        trusted,
        "--restore",
        join(work, "restored-junk"),
        "--json",
      ]);
      expect(f.code).toBe(1);
      expect((JSON.parse(f.stdout) as { error: { code: string } }).error.code).toBe(
        "bad-compression",
      );
    }
  });
});
