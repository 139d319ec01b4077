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
import { NIXSHIP_BIN, run } from "./support/cli.js";

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
async function plant(
  name: string,
  file: (path: string) => Promise<void>,
  size?: number,
): Promise<Planted> {
  const nar = buildNar(narNode.regular(`honest ${name}\n`));
  const narHash = Sha256.of(nar);
  const path = makeStorePath("output:out", narHash, name);
  const compressed = execFileSync("zstd", ["-q", "-c"], { input: nar });
  const fileHash = Sha256.of(compressed);
  const url = narKey(fileHash, "zstd");
  const info = signNarInfo(
    {
      storePath: path,
      url,
      compression: "zstd",
      fileHash,
      fileSize: size ?? compressed.length,
      narHash,
      narSize: nar.length,
      references: [],
      deriver: undefined,
      sigs: [],
      ca: undefined,
    },
    key,
  );
  const narinfo = join(cache, narInfoKey(path));
  await writeFile(narinfo, formatNarInfo(info));
  await file(join(cache, url));
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
      expect(r.code, args[0]).not.toBe(0);
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
