// The served cache holds each NAR to its signed NarSize (nar-bound.ts): the narinfo it serves
// carries the bound in its URL, and a NAR that decompresses past it is cut before any byte
// past it could be decompressed by the client.
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InputError } from "../errors.js";
import { Sha256 } from "../nix/hash.js";
import { parseNarInfo } from "../nix/narinfo.js";
import { FsStore } from "../store/fs-store.js";
import { boundNarInfo, narBoundOf } from "./nar-bound.js";
import { createCacheServer, type ServedRequest } from "./serve.js";

const MiB = 1024 * 1024;
const NARINFO = "0123456789abcdfghijklmnpqrsvwxyz.narinfo";

function narInfoText(url: string, compression: string, narSize: number): string {
  return [
    "StorePath: /nix/store/0123456789abcdfghijklmnpqrsvwxyz-x",
    `URL: ${url}`,
    `Compression: ${compression}`,
    `FileHash: ${Sha256.of("file").format("nix32")}`,
    "FileSize: 123",
    `NarHash: ${Sha256.of("x").format("nix32")}`,
    `NarSize: ${narSize}`,
    "References: ",
    "System: x86_64-linux",
    "Sig: test:c2ln",
    "",
  ].join("\n");
}

function compress(command: string, data: Buffer): Buffer {
  return execFileSync(command, ["-q", "-c", "-1"], { input: data, maxBuffer: 64 * MiB });
}

/** What `command -d` makes of `data`, however far it gets (a cut stream ends in an error). */
function decompressedLength(command: string, data: Buffer): number {
  return spawnSync(command, ["-q", "-d", "-c"], { input: data, maxBuffer: 1024 * MiB }).stdout
    .length;
}

describe("boundNarInfo", () => {
  it("puts the signed NarSize and the Compression in the URL and keeps every other line", () => {
    const text = narInfoText(`nar/${"1".repeat(52)}.nar.zst`, "zstd", 1000);
    const served = boundNarInfo(text, "k");
    expect(served).toBe(text.replace(".nar.zst\n", ".nar.zst?nar-size=1000&compression=zstd\n"));
    // What Nix signs is untouched.
    const before = parseNarInfo(text);
    const after = parseNarInfo(served);
    expect([after.narHash, after.narSize, after.references, after.sigs]).toEqual([
      before.narHash,
      before.narSize,
      before.references,
      before.sigs,
    ]);
  });

  it.each([
    `nar/${"1".repeat(52)}.nar.zst?nar-size=999999999999`,
    `nar/${"1".repeat(52)}.nar.zst#`,
    `http://elsewhere/nar/${"1".repeat(52)}.nar.zst`,
    `file:///nar/${"1".repeat(52)}.nar.zst`,
    `nar/${"1".repeat(52)}.nar.zst `,
    `nar/${"e".repeat(52)}.nar.zst`,
    `narinfo/${"1".repeat(52)}.nar`,
  ])("refuses a URL that is no NAR key of the cache: %s", (url) => {
    expect(() => boundNarInfo(narInfoText(url, "zstd", 7), "k.narinfo")).toThrow(
      `k.narinfo: URL '${url}' is no NAR key of this cache`,
    );
  });

  it("serves a delta's NAR key, and drops a line whose key Nix would read as another", () => {
    const text = narInfoText(`delta/${"1".repeat(52)}.nar`, "none", 7).replace(
      "System: x86_64-linux\n",
      `System: x86_64-linux\nURL:nar/${"2".repeat(52)}.nar#: y\n`,
    );
    // Read here as an unknown key "URL:nar/…#"; Nix would take its value as the URL.
    expect(parseNarInfo(text).extra?.map(([k]) => k)).toContain(`URL:nar/${"2".repeat(52)}.nar#`);
    const served = boundNarInfo(text, "k");
    expect(served).not.toContain("#");
    expect(served).toContain(`URL: delta/${"1".repeat(52)}.nar?nar-size=7&compression=none\n`);
    expect(served).toContain("System: x86_64-linux\n");
  });

  it("says an xz or bzip2 NAR is sent uncompressed, without the stored file's hash and size", () => {
    const served = boundNarInfo(narInfoText(`nar/${"1".repeat(52)}.nar.xz`, "xz", 10), "k");
    const info = parseNarInfo(served);
    expect(info.compression).toBe("none");
    expect([info.fileHash, info.fileSize]).toEqual([undefined, undefined]);
    expect(info.url).toBe(`nar/${"1".repeat(52)}.nar.xz?nar-size=10&compression=xz`);
  });

  it("refuses a narinfo it cannot bound, naming it", () => {
    expect(() => boundNarInfo("StorePath: x\n", "abc.narinfo")).toThrow(/abc\.narinfo/);
  });
});

describe("narBoundOf", () => {
  it("reads the bound, and nothing from a URL without one", () => {
    expect(narBoundOf(new URLSearchParams("nar-size=12&compression=xz"))).toEqual({
      narSize: 12,
      compression: "xz",
    });
    expect(narBoundOf(new URLSearchParams(""))).toBeUndefined();
  });

  it.each([
    "nar-size=0&compression=zstd",
    "nar-size=-1&compression=zstd",
    "nar-size=1e9&compression=zstd",
    "nar-size=99999999999999999999&compression=zstd",
    "nar-size=12&compression=gzip",
    "nar-size=12",
    "compression=zstd",
  ])("refuses %s", (query) => {
    expect(() => narBoundOf(new URLSearchParams(query))).toThrow(InputError);
  });
});

describe("a served NAR held to its signed NarSize", () => {
  let dir: string;
  let server: Server;
  let url: string;
  const seen: ServedRequest[] = [];
  const nar = (n: string, ext: string) => `nar/${n.repeat(52)}${ext}`;
  /** 512 KiB of noise and 64 MiB of zeros, under a narinfo that signs 1 MiB. */
  const bomb = nar("1", ".nar.zst");
  const honest = nar("2", ".nar.zst");
  const plainBomb = nar("3", ".nar");
  const xzHonest = nar("4", ".nar.xz");
  const xzBomb = nar("5", ".nar.xz");
  /** The honest NAR, then 4 MiB of a skippable frame, which decompresses to nothing. */
  const padded = nar("6", ".nar.zst");
  const content = Buffer.alloc(MiB, 7);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "nixship-nar-bound-"));
    const store = new FsStore(dir);
    const zeros = Buffer.alloc(64 * MiB);
    // The noise goes out in chunks before the zeros: a bomb cut after some of it was sent.
    const noisyBomb = Buffer.concat([randomBytes(MiB / 2), zeros]);
    await store.put(bomb, compress("zstd", noisyBomb));
    await store.put(honest, compress("zstd", content));
    await store.put(plainBomb, Buffer.alloc(2 * MiB, 1));
    await store.put(xzHonest, compress("xz", content));
    await store.put(xzBomb, compress("xz", zeros));
    const skippable = Buffer.alloc(8 + 4 * MiB);
    skippable.writeUInt32LE(0x184d2a50, 0);
    skippable.writeUInt32LE(4 * MiB, 4);
    await store.put(padded, Buffer.concat([compress("zstd", content), skippable]));
    await store.put(NARINFO, Buffer.from(narInfoText(honest, "zstd", MiB)));
    server = createCacheServer({ store, onRequest: (e) => seen.push(e) });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** The narinfo's URL for `key` as the server would serve it, signing `narSize`. */
  function boundUrl(key: string, compression: string, narSize: number): string {
    return parseNarInfo(boundNarInfo(narInfoText(key, compression, narSize), "k")).url;
  }

  /** Every byte the server sent for `path` before it ended or cut the answer. */
  async function received(path: string): Promise<{ bytes: Buffer; complete: boolean }> {
    const chunks: Buffer[] = [];
    try {
      const res = await fetch(`${url}/${path}`);
      expect(res.status).toBe(200);
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        chunks.push(Buffer.from(chunk));
      }
      return { bytes: Buffer.concat(chunks), complete: true };
    } catch {
      return { bytes: Buffer.concat(chunks), complete: false };
    }
  }

  it("cuts a zstd bomb before anything past the signed size could be decompressed", async () => {
    seen.length = 0;
    const got = await received(boundUrl(bomb, "zstd", MiB));
    expect(got.complete).toBe(false);
    expect(got.bytes.length).toBeGreaterThan(0);
    expect(decompressedLength("zstd", got.bytes)).toBeLessThanOrEqual(MiB);
    expect(seen).toEqual([
      expect.objectContaining({
        status: 502,
        error: `${bomb} decompresses to more than the ${MiB} bytes its signed narinfo says: cut there (a NAR replaced by someone who cannot sign, or a corrupt upload)`,
      }),
    ]);
  });

  it("cuts a zstd NAR padded with what decompresses to nothing at what its signed size compresses to", async () => {
    seen.length = 0;
    const got = await received(boundUrl(padded, "zstd", MiB));
    expect(got.complete).toBe(false);
    expect(got.bytes.length).toBeLessThan(2 * MiB);
    expect(seen).toEqual([
      expect.objectContaining({
        status: 502,
        error: expect.stringContaining(
          `${padded} is stored as more than ${MiB + MiB / 64 + 64 * 1024} bytes, more than a NAR of ${MiB} bytes compresses to`,
        ),
      }),
    ]);
  });

  it("sends the same NAR whole to a client that did not ask for a bound", async () => {
    const got = await received(bomb);
    expect(got.complete).toBe(true);
    expect(decompressedLength("zstd", got.bytes)).toBe(64 * MiB + MiB / 2);
  });

  it("sends an honest zstd NAR as stored, with its length", async () => {
    const res = await fetch(`${url}/${boundUrl(honest, "zstd", MiB)}`);
    const bytes = Buffer.from(await res.arrayBuffer());
    expect(res.headers.get("content-length")).toBe(String(bytes.length));
    expect(execFileSync("zstd", ["-q", "-d", "-c"], { input: bytes }).equals(content)).toBe(true);
  });

  it("cuts an uncompressed NAR at its signed size", async () => {
    const got = await received(boundUrl(plainBomb, "none", MiB));
    expect(got.complete).toBe(false);
    expect(got.bytes.length).toBeLessThanOrEqual(MiB);
  });

  it("sends an xz NAR decompressed, and cuts an xz bomb at the signed size", async () => {
    const res = await fetch(`${url}/${boundUrl(xzHonest, "xz", MiB)}`);
    expect(res.headers.get("content-length")).toBeNull();
    expect(Buffer.from(await res.arrayBuffer()).equals(content)).toBe(true);
    const got = await received(boundUrl(xzBomb, "xz", MiB));
    expect(got.complete).toBe(false);
    expect(got.bytes.length).toBeLessThanOrEqual(MiB);
  });

  it("answers HEAD of an xz NAR sent decompressed, and of a narinfo, without a length", async () => {
    const head = await fetch(`${url}/${boundUrl(xzHonest, "xz", MiB)}`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("content-length")).toBeNull();
    const asStored = await fetch(`${url}/${boundUrl(honest, "zstd", MiB)}`, { method: "HEAD" });
    expect(asStored.headers.get("content-length")).not.toBeNull();
    const narInfo = await fetch(`${url}/${NARINFO}`, { method: "HEAD" });
    expect(narInfo.status).toBe(200);
    expect(narInfo.headers.get("content-length")).toBeNull();
  });

  it("refuses a NAR request whose bound does not parse, saying why", async () => {
    const res = await fetch(`${url}/${honest}?nar-size=lots&compression=zstd`);
    expect(res.status).toBe(400);
    expect(await res.text()).toBe("nar-size 'lots' is not a size\n");
  });
});
