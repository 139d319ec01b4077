import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { describe, expect, it } from "vitest";
import { compressorFor } from "./zstd.js";
import { zstdDecompressor } from "./zstd-stream.js";

/**
 * `input` through a decompressor bounded at `max`, fed in `piece`-byte chunks, to a reader that
 * takes each chunk a turn of the event loop later when `slow`.
 */
async function decompress(input: Buffer, max: number, piece = 65536, slow = false) {
  const chunks: Buffer[] = [];
  let bytes = 0;
  const pieces = function* () {
    for (let at = 0; at < input.length; at += piece) yield input.subarray(at, at + piece);
  };
  await pipeline(
    Readable.from(pieces()),
    zstdDecompressor(max),
    new Writable({
      write(chunk: Buffer, _e, done) {
        bytes += chunk.length;
        if (chunks.length < 64) chunks.push(Buffer.from(chunk));
        if (slow) setImmediate(done);
        else done();
      },
    }),
  );
  return { bytes, head: Buffer.concat(chunks) };
}

/** What the zstd CLI makes of `data` with `args`. */
function zstdCli(data: Buffer, ...args: string[]): Buffer {
  return execFileSync("zstd", ["-q", "-c", ...args], { input: data, maxBuffer: 1 << 30 });
}

describe("zstdDecompressor", () => {
  it("gives back what the zstd CLI and the push's frames compressed, whatever the input's pieces", async () => {
    const data = Buffer.concat([randomBytes(300_000), Buffer.alloc(700_000, 7), randomBytes(5)]);
    for (const piece of [1, 7, 4096, 65536, 1 << 22]) {
      const { bytes, head } = await decompress(zstdCli(data, "-3"), data.length, piece);
      expect(bytes).toBe(data.length);
      expect(head.equals(data.subarray(0, head.length))).toBe(true);
    }
    // Frames one after the other, as the push writes them (4 MiB chunks, each its own frame).
    const framed = Buffer.concat([
      Buffer.from(compressorFor(3).compress(data.subarray(0, 400_000))),
      Buffer.from(compressorFor(3).compress(data.subarray(400_000))),
    ]);
    const whole = await decompress(framed, data.length);
    expect(whole.bytes).toBe(data.length);
    // Frames whose output fills the last output buffer exactly (4 MiB, as the push's).
    const exact = randomBytes(4 * 1024 * 1024);
    const two = Buffer.concat([
      Buffer.from(compressorFor(3).compress(exact)),
      Buffer.from(compressorFor(3).compress(exact)),
    ]);
    for (const piece of [65536, two.length]) {
      expect((await decompress(two, 2 * exact.length, piece)).bytes).toBe(2 * exact.length);
    }
  });

  it("refuses a stream cut inside a frame, an empty one, and bytes that are not zstd", async () => {
    const packed = zstdCli(randomBytes(200_000), "-3");
    await expect(decompress(packed.subarray(0, packed.length - 10), 1e6)).rejects.toMatchObject({
      code: "compressor-failed",
      message: "zstd data is not valid: the data ends inside a frame",
    });
    await expect(decompress(Buffer.alloc(0), 1e6)).rejects.toMatchObject({
      code: "compressor-failed",
      message: "zstd data is not valid: there is no data",
    });
    await expect(decompress(Buffer.from("not zstd at all"), 1e6)).rejects.toMatchObject({
      code: "compressor-failed",
      message: expect.stringMatching(/^zstd data is not valid: /),
    });
  });

  it("holds one buffer at a time for a slow reader, however far an input chunk expands", async () => {
    // 300 MB of zeros in a few KB: one input chunk stands for all of it.
    const zeros = zstdCli(Buffer.alloc(300_000_000), "-19");
    const before = process.memoryUsage().rss;
    const { bytes } = await decompress(zeros, 300_000_000, 1 << 22, true);
    expect(bytes).toBe(300_000_000);
    expect(process.memoryUsage().rss - before).toBeLessThan(64 * 1024 * 1024);
  });

  it("stops a bomb one output buffer past its bound, holding no more than that", async () => {
    // 200 MB of zeros in a few KB.
    const bomb = zstdCli(Buffer.alloc(200_000_000), "-19");
    expect(bomb.length).toBeLessThan(20_000);
    const before = process.memoryUsage().rss;
    await expect(decompress(bomb, 1_000_000)).rejects.toMatchObject({
      code: "compressor-failed",
      message: "zstd data is not valid: it decompresses to more than 1000000 bytes",
    });
    expect(process.memoryUsage().rss - before).toBeLessThan(64 * 1024 * 1024);
  });
});
