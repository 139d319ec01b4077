// The NAR layer against the real Nix: our dump must equal `nix-store --dump` byte for byte,
// and each side must restore what the other wrote.
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dumpPath } from "../src/nix/nar-encode.js";
import { formatNarListing, listNar } from "../src/nix/nar-list.js";
import { restoreNar } from "../src/nix/nar-restore.js";

const MAX_BUFFER = 256 * 1024 * 1024;

function nix(args: string[], input?: Buffer): Buffer {
  const r = spawnSync(args[0] as string, args.slice(1), { input, maxBuffer: MAX_BUFFER });
  if (r.status !== 0) throw new Error(`${args.join(" ")} failed: ${r.stderr?.toString()}`);
  return r.stdout;
}

const nixDump = (path: string) => nix(["nix-store", "--dump", path]);

async function ourDump(path: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of dumpPath(path)) chunks.push(c);
  return Buffer.concat(chunks);
}

/** Every path under `root` with its permission bits, to compare two restored trees. */
function modes(root: string): string[] {
  const walk = (path: Buffer, rel: string): string[] => {
    const st = lstatSync(path);
    const line = `${(st.mode & 0o7777).toString(8)} ${rel}`;
    if (!st.isDirectory()) return [line];
    const names = readdirSync(path, { encoding: "buffer" }).sort(Buffer.compare);
    const sub = names.flatMap((n) =>
      walk(Buffer.concat([path, Buffer.from("/"), n]), `${rel}/${n}`),
    );
    return [line, ...sub];
  };
  return walk(Buffer.from(root), ".");
}

function buildTree(root: string): void {
  const w = (p: string, data: string | Buffer, mode = 0o644) => {
    writeFileSync(join(root, p), data);
    chmodSync(join(root, p), mode);
  };
  mkdirSync(join(root, "bin"), { recursive: true });
  mkdirSync(join(root, "share/doc/deep/deeper/deepest"), { recursive: true });
  mkdirSync(join(root, "empty-dir"));
  w("bin/hello", "#!/bin/sh\necho hello\n", 0o755);
  w("bin/owner-only-exec", "x", 0o700);
  w("bin/group-exec-only", "y", 0o654);
  w("empty-file", "");
  w("share/doc/deep/deeper/deepest/readme", "deep\n");
  w("big.bin", randomBytes(20 * 1024 * 1024 + 5));
  for (let n = 1; n <= 17; n++) w(`share/pad-${String(n).padStart(2, "0")}`, "p".repeat(n));
  // Byte order differs from UTF-16 order: the emoji is a surrogate pair (0xD83D…) in
  // UTF-16, below U+FFFF, but its UTF-8 (F0 9F…) sorts above U+FFFF's (EF BF BF).
  for (const name of ["\u{1F600}", "\uFFFF", "é", "Z", "a", "A", "a-b", "a.b", "a_b", "a b"]) {
    w(`share/${name}`, name);
  }
  writeFileSync(Buffer.from(join(root, "share/not-utf8-\xff"), "latin1"), "latin1 name");
  symlinkSync("hello", join(root, "bin/relative-link"));
  symlinkSync("/nix/store/does-not-exist", join(root, "dangling"));
  symlinkSync("../..", join(root, "share/doc/up"));
  symlinkSync("\u{1F600}", join(root, "emoji-link"));
}

describe("NAR layer against nix-store", () => {
  let tmp: string;
  let tree: string;
  let nixNar: Buffer;

  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), "nar-nix-"));
    tree = join(tmp, "tree");
    mkdirSync(tree);
    buildTree(tree);
    nixNar = nixDump(tree);
  });
  afterAll(() => {
    rmSync(tmp, { recursive: true, force: true });
  });

  it("dumps a tree byte for byte as nix-store --dump does", async () => {
    const ours = await ourDump(tree);
    expect(ours.length).toBe(nixNar.length);
    expect(ours.equals(nixNar)).toBe(true);
  });

  it("dumps a single file, an executable and a symlink as the root like nix", async () => {
    for (const p of ["empty-file", "bin/hello", "big.bin", "dangling", "bin/relative-link"]) {
      expect((await ourDump(join(tree, p))).equals(nixDump(join(tree, p)))).toBe(true);
    }
  });

  it("restores nix's NAR to a tree nix dumps back identically, with nix's modes", async () => {
    const ours = join(tmp, "restored-by-us");
    const theirs = join(tmp, "restored-by-nix");
    await restoreNar([nixNar], ours);
    nix(["nix-store", "--restore", theirs], nixNar);
    expect(nixDump(ours).equals(nixNar)).toBe(true);
    expect(modes(ours)).toEqual(modes(theirs));
  });

  it("writes NARs that nix-store --restore accepts and that round-trip", async () => {
    const target = join(tmp, "nix-restored-ours");
    nix(["nix-store", "--restore", target], await ourDump(tree));
    expect(nixDump(target).equals(nixNar)).toBe(true);
  });

  it("restores a root file and a root symlink like nix", async () => {
    for (const p of ["bin/hello", "dangling"]) {
      const nar = nixDump(join(tree, p));
      const target = join(tmp, `root-${p.replace("/", "-")}`);
      await restoreNar([nar], target);
      expect(nixDump(target).equals(nar)).toBe(true);
    }
  });

  it("lists a NAR exactly as `nix nar ls -lR` does", async () => {
    const narFile = join(tmp, "tree.nar");
    writeFileSync(narFile, nixNar);
    const expected = nix(["nix", "nar", "ls", "-lR", narFile, "/"]).toString();
    expect(formatNarListing(await listNar([nixNar]))).toBe(expected);
  });
});
