import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Sha256 } from "./hash.js";
import { dumpChunks, dumpPath, dumpPathStream } from "./nar-encode.js";
import { buildNar, narNode } from "./nar-write.js";

const { regular, symlink, directory } = narNode;

async function dump(path: string): Promise<{ nar: Buffer; chunks: Buffer[] }> {
  const chunks: Buffer[] = [];
  for await (const c of dumpPath(path)) chunks.push(c);
  return { nar: Buffer.concat(chunks), chunks };
}

let tmp: string;
beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), "nar-encode-"));
});
afterEach(() => {
  rmSync(tmp, { recursive: true, force: true });
});

describe("dumpPath", () => {
  it("dumps a file holding 'bar' as the known 120-byte NAR", async () => {
    writeFileSync(join(tmp, "foo"), "bar");
    const { nar } = await dump(join(tmp, "foo"));
    expect(nar).toHaveLength(120);
    expect(Sha256.of(nar).format("nix32")).toBe(
      "sha256:1xngcmsdkdvaycaqjfzvq4gr3gib56p2l8illglnsqzhpss47pxz",
    );
  });

  it("writes directories with entries in byte order and marks owner-executable files", async () => {
    const root = join(tmp, "root");
    mkdirSync(join(root, "sub/empty"), { recursive: true });
    writeFileSync(join(root, "b"), "B");
    writeFileSync(join(root, "a"), "");
    writeFileSync(join(root, "B"), "upper");
    writeFileSync(join(root, "\u{1F600}"), "emoji");
    writeFileSync(join(root, "\uFFFF"), "ffff");
    writeFileSync(join(root, "sub/run"), "x", { mode: 0o700 });
    writeFileSync(join(root, "sub/group-only"), "y");
    chmodSync(join(root, "sub/group-only"), 0o654);
    symlinkSync("../nowhere", join(root, "dangling"));
    const { nar } = await dump(root);
    // UTF-16 order would put the emoji (a surrogate pair) before U+FFFF; bytes do not.
    const expected = buildNar(
      directory([
        ["B", regular("upper")],
        ["a", regular("")],
        ["b", regular("B")],
        ["dangling", symlink("../nowhere")],
        [
          "sub",
          directory([
            ["empty", directory([])],
            ["group-only", regular("y")],
            ["run", regular("x", true)],
          ]),
        ],
        ["\uFFFF", regular("ffff")],
        ["\u{1F600}", regular("emoji")],
      ]),
    );
    expect(nar.equals(expected)).toBe(true);
  });

  it("dumps a symlink given as the root without following it", async () => {
    symlinkSync("/etc/passwd", join(tmp, "l"));
    expect((await dump(join(tmp, "l"))).nar.equals(buildNar(symlink("/etc/passwd")))).toBe(true);
  });

  it("dumps names that are not UTF-8 byte for byte", async () => {
    const name = Buffer.from([0x61, 0xff]);
    mkdirSync(join(tmp, "d"));
    writeFileSync(Buffer.concat([Buffer.from(join(tmp, "d/")), name]), "z");
    const { nar } = await dump(join(tmp, "d"));
    expect(nar.equals(buildNar(directory([[name, regular("z")]])))).toBe(true);
  });

  it("coalesces many small files into large chunks", async () => {
    const root = join(tmp, "many");
    mkdirSync(root);
    for (let i = 0; i < 1000; i++) writeFileSync(join(root, `f${i}`), `file ${i}\n`);
    const { nar, chunks } = await dump(root);
    expect(chunks.length).toBeLessThanOrEqual(Math.ceil(nar.length / (256 * 1024)) + 1);
  });

  it("streams a large file in bounded chunks whose bytes are never reused", async () => {
    const big = Buffer.alloc(5 * 1024 * 1024 + 3);
    for (let i = 0; i < big.length; i += 4096) big[i] = (i / 4096) & 0xff;
    writeFileSync(join(tmp, "big"), big);
    const { nar, chunks } = await dump(join(tmp, "big"));
    expect(Math.max(...chunks.map((c) => c.length))).toBeLessThanOrEqual(1024 * 1024);
    expect(nar.equals(buildNar(regular(big)))).toBe(true);
  });

  it("cuts fixed-size chunks, and recycles their buffers only when asked to", async () => {
    mkdirSync(join(tmp, "fixed"));
    const big = Buffer.alloc(300_000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
    writeFileSync(join(tmp, "fixed/big"), big);
    for (let i = 0; i < 50; i++) writeFileSync(join(tmp, `fixed/f${i}`), `small ${i}\n`);
    const { nar } = await dump(join(tmp, "fixed"));
    const size = 64 * 1024;
    const read = (reuse: boolean) => {
      const copies: Buffer[] = [];
      const memories = new Set<ArrayBufferLike>();
      for (const chunk of dumpChunks(join(tmp, "fixed"), { chunkSize: size, reuse })) {
        copies.push(Buffer.from(chunk));
        memories.add(chunk.buffer);
      }
      return { copies, memories };
    };
    for (const reuse of [false, true]) {
      const { copies } = read(reuse);
      expect(Buffer.concat(copies).equals(nar)).toBe(true);
      expect(copies.slice(0, -1).every((c) => c.length === size)).toBe(true);
    }
    const fresh = read(false);
    const recycled = read(true);
    expect(fresh.memories.size).toBe(fresh.copies.length);
    expect(recycled.memories.size).toBeLessThanOrEqual(2);
  });

  it("recycles buffers from one dump to the next, never into a dump still being read", async () => {
    const size = 64 * 1024;
    const trees = ["a", "b"].map((name, t) => {
      const root = join(tmp, `spare-${name}`);
      mkdirSync(root);
      const big = Buffer.alloc(200_000 + t * 7);
      for (let i = 0; i < big.length; i++) big[i] = (i * (t + 3)) & 0xff;
      writeFileSync(join(root, "big"), big);
      return root;
    });
    const expected = await Promise.all(trees.map(async (r) => (await dump(r)).nar));
    // One dump after another: the second is served the buffers the first gave back.
    const memories = new Set<ArrayBufferLike>();
    for (const [i, root] of trees.entries()) {
      const copies: Buffer[] = [];
      for (const chunk of dumpChunks(root, { chunkSize: size, reuse: true })) {
        copies.push(Buffer.from(chunk));
        memories.add(chunk.buffer);
      }
      expect(Buffer.concat(copies).equals(expected[i] as Buffer)).toBe(true);
    }
    expect(memories.size).toBeLessThanOrEqual(2);
    // Two dumps read in turn: the chunk one holds must not change while the other moves on.
    const iterators = trees.map((r) => dumpChunks(r, { chunkSize: size, reuse: true }));
    const got: Buffer[][] = [[], []];
    for (let more = true; more; ) {
      more = false;
      const held: { view: Buffer; copy: Buffer }[] = [];
      for (const [i, it] of iterators.entries()) {
        const next = it.next();
        if (next.done) continue;
        more = true;
        held.push({ view: next.value, copy: Buffer.from(next.value) });
        got[i]?.push(Buffer.from(next.value));
      }
      for (const { view, copy } of held) expect(view.equals(copy)).toBe(true);
    }
    expect(Buffer.concat(got[0] ?? []).equals(expected[0] as Buffer)).toBe(true);
    expect(Buffer.concat(got[1] ?? []).equals(expected[1] as Buffer)).toBe(true);
  });

  it("offers the same bytes as a Readable stream", async () => {
    mkdirSync(join(tmp, "s"));
    writeFileSync(join(tmp, "s/x"), "x".repeat(300_000));
    const streamed: Buffer[] = [];
    for await (const c of dumpPathStream(join(tmp, "s"))) streamed.push(c as Buffer);
    expect(Buffer.concat(streamed).equals((await dump(join(tmp, "s"))).nar)).toBe(true);
  });

  it("refuses special files, naming them", async () => {
    const root = join(tmp, "r");
    mkdirSync(root);
    const sock = join(root, "sock");
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(sock, resolve));
    try {
      await expect(dump(root)).rejects.toThrow(
        `cannot put '${sock}' in a NAR: it is a socket, not a regular file, directory or symlink`,
      );
    } finally {
      server.close();
    }
  });
});
