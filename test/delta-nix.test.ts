// Deltas against the real Nix: a delta published between two real store paths is a
// store path that Nix 2.8 and 2.26 substitute from a directory cache with signatures required,
// and its patch rebuilds the target's NAR from `nix-store --dump BASE`, hashing to the target
// narinfo's NarHash; a delta whose NAR was changed in the cache is refused by Nix.
import { createHash } from "node:crypto";
import { cp, mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deltaPathOf, parseDeltaInfo } from "../src/cache/delta-path.js";
import { publishDelta } from "../src/cache/delta-publish.js";
import { narInfoKey } from "../src/cache/layout.js";
import { readNarInfo } from "../src/cache/read.js";
import { parseSecretKey } from "../src/nix/keys.js";
import type { NarInfo } from "../src/nix/narinfo.js";
import type { StorePath } from "../src/nix/store-path.js";
import { openStore } from "../src/store/url.js";
import { nixship, run, runOk } from "../support/cli.js";
import { currentNixOk, makeCurrentNixRoot, runWithCurrentNix } from "../support/current-nix.js";

// Two versions of a small package: the same executable (bash, ~1.2 MB) and a text that names
// the version and the path itself; built by /bin/sh like the other fixtures.
const EXPRESSION = `
let
  app = version: derivation {
    name = "deltatest-app-\${version}";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    PATH = "/usr/bin:/bin";
    args = [ "-c" ''
      mkdir -p $out/bin $out/share
      cp /bin/bash $out/bin/app
      printf 'app \${version} installed at %s\\n' "$out" > $out/share/about
    '' ];
  };
in { base = app "1.0"; target = app "1.1"; }
`;

let work: string;
let cache: string;
let pub: string;
let base: StorePath;
let target: StorePath;
let deltaPath: StorePath;
let targetInfo: NarInfo;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-delta-nix-"));
  const file = join(work, "app.nix");
  await writeFile(file, EXPRESSION);
  const built = (await runOk("nix-build", ["--no-out-link", file, "-A", "base", "-A", "target"]))
    .trim()
    .split("\n");
  [base, target] = built as [StorePath, StorePath];
  const secretFile = join(work, "cache.sec");
  const gen = await nixship(["key", "generate", "--name", "delta-nix-1", "--out", secretFile]);
  expect(gen.code, gen.stderr).toBe(0);
  pub = gen.stdout.trim();
  cache = join(work, "cache");
  const push = await nixship([
    "push",
    base,
    target,
    "--to",
    `file://${cache}`,
    "--key",
    secretFile,
  ]);
  expect(push.code, push.stderr).toBe(0);

  const store = await openStore(`file://${cache}`);
  try {
    const key = parseSecretKey(await readFile(secretFile, "utf8"));
    const outcome = await publishDelta(store, key, { target, base });
    expect(outcome.kind).toBe("published");
    deltaPath = deltaPathOf(target, base);
    const info = await readNarInfo(store, target);
    if (info === undefined) throw new Error(`no narinfo for ${target}`);
    targetInfo = info;
  } finally {
    await store.close();
  }
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

function realiseArgs(from: string, storeDir: string | undefined, paths: readonly string[]) {
  return [
    "--realise",
    ...paths,
    ...(storeDir ? ["--store", storeDir] : []),
    "--option",
    "substituters",
    `file://${from}`,
    "--option",
    "require-sigs",
    "true",
    "--option",
    "trusted-public-keys",
    pub,
  ];
}

/** The NAR the realised delta in `deltaDir` rebuilds from the base's NAR file, as a host does. */
async function rebuild(baseNar: string, deltaDir: string): Promise<Buffer> {
  const out = `${baseNar}.target`;
  await runOk("zstd", [
    "-d",
    "-q",
    "--long=31",
    `--patch-from=${baseNar}`,
    join(deltaDir, "delta.zst"),
    "-o",
    out,
  ]);
  return readFile(out);
}

function narHashHex(nar: Buffer): string {
  return createHash("sha256").update(nar).digest("hex");
}

/** The delta's files: its info names the pair, its narinfo the cache's signed lines alone. */
async function checkDeltaDir(deltaDir: string): Promise<void> {
  const info = parseDeltaInfo(await readFile(join(deltaDir, "delta-info"), "utf8"));
  expect(info).toMatchObject({ engine: "zstd-patch", target, base });
  const cached = await readFile(join(cache, narInfoKey(target)), "utf8");
  const signed = cached
    .split("\n")
    .filter((l) => /^(StorePath|NarHash|NarSize|References|Sig): /.test(l));
  expect(await readFile(join(deltaDir, "narinfo"), "utf8")).toBe(`${signed.join("\n")}\n`);
}

describe("a delta path, substituted by the real Nix", () => {
  it("Nix 2.8 realises it with signatures required, and it rebuilds the target's NAR from the base's dump", async () => {
    const storeDir = join(work, "store-2.8");
    await runOk("nix-store", realiseArgs(cache, storeDir, [deltaPath]));
    const deltaDir = join(storeDir, deltaPath);
    await checkDeltaDir(deltaDir);
    const baseNar = join(work, "base-2.8.nar");
    await runOk("sh", ["-c", 'nix-store --dump "$0" > "$1"', base, baseNar]);
    const nar = await rebuild(baseNar, deltaDir);
    expect(nar.length).toBe(targetInfo.narSize);
    expect(narHashHex(nar)).toBe(Buffer.from(targetInfo.narHash.bytes).toString("hex"));
  });

  it("Nix 2.26 does too, the base realised from the cache into its own store", async () => {
    const nixRoot = await makeCurrentNixRoot();
    try {
      await currentNixOk(nixRoot, "nix-store", realiseArgs(cache, undefined, [base, deltaPath]));
      const deltaDir = join(nixRoot, deltaPath.slice("/nix".length));
      await checkDeltaDir(deltaDir);
      const baseNar = join(work, "base-2.26.nar");
      await currentNixOk(nixRoot, "sh", ["-c", 'nix-store --dump "$0" > "$1"', base, baseNar]);
      const nar = await rebuild(baseNar, deltaDir);
      expect(nar.length).toBe(targetInfo.narSize);
      expect(narHashHex(nar)).toBe(Buffer.from(targetInfo.narHash.bytes).toString("hex"));
    } finally {
      await rm(nixRoot, { recursive: true, force: true });
    }
  });

  it("a delta whose NAR was changed in the cache is refused by Nix 2.8 and 2.26", async () => {
    const flipped = join(work, "cache-flipped");
    await cp(cache, flipped, { recursive: true });
    const store = await openStore(`file://${flipped}`);
    const info = await readNarInfo(store, deltaPath);
    await store.close();
    if (info === undefined) throw new Error("no delta narinfo");
    const nar = await open(join(flipped, info.url), "r+");
    try {
      // A byte in the middle of the NAR (inside delta.zst): the NAR still parses.
      const at = Math.floor(info.narSize / 2);
      const byte = Buffer.alloc(1);
      await nar.read(byte, 0, 1, at);
      byte[0] = (byte[0] as number) ^ 0xff;
      await nar.write(byte, 0, 1, at);
    } finally {
      await nar.close();
    }
    const storeDir = join(work, "store-flipped");
    const r = await run("nix-store", realiseArgs(flipped, storeDir, [deltaPath]));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/hash mismatch/);
    const valid = await run("nix-store", ["--store", storeDir, "--check-validity", deltaPath]);
    expect(valid.code).not.toBe(0);

    // Nix 2.26 too.
    const nixRoot = await makeCurrentNixRoot();
    try {
      const current = await runWithCurrentNix(
        nixRoot,
        "nix-store",
        realiseArgs(flipped, undefined, [deltaPath]),
      );
      expect(current.code).not.toBe(0);
      expect(current.stderr).toMatch(/hash mismatch/);
      const there = await runWithCurrentNix(nixRoot, "nix-store", ["--check-validity", deltaPath]);
      expect(there.code).not.toBe(0);
    } finally {
      await rm(nixRoot, { recursive: true, force: true });
    }
  });
});
