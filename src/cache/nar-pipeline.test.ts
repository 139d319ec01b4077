import { execFileSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Sha256 } from "../nix/hash.js";
import { dumpChunks } from "../nix/nar-encode.js";
import { FRAME_SIZE } from "./nar-check.js";
import { writeNar } from "./nar-pipeline.js";

function collector(): { sink: Writable; bytes: () => Buffer } {
  const parts: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      parts.push(chunk);
      done();
    },
  });
  return { sink, bytes: () => Buffer.concat(parts) };
}

describe("writeNar", () => {
  let dir: string;
  let nar: Buffer;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "nixship-nar-pipeline-"));
    // Compressible but not trivial text, more than two frames long.
    const lines = Array.from({ length: 600_000 }, (_, i) => `line ${i} ${(i * 7919) % 104729}\n`);
    await writeFile(join(dir, "data.txt"), lines.join(""));
    nar = Buffer.concat([...dumpChunks(dir)]);
    expect(nar.length).toBeGreaterThan(2 * FRAME_SIZE);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("compresses with xz, with both digests right", async () => {
    const { sink, bytes } = collector();
    // The lowest level: what is tested is the pipeline, not xz (-6 takes 15 s of CPU here).
    const digests = await writeNar(dir, sink, { compression: "xz", level: 0 });
    const out = bytes();
    expect(
      execFileSync("xz", ["-d", "-c", "-q"], { input: out, maxBuffer: 1 << 28 }).equals(nar),
    ).toBe(true);
    expect(digests.nar).toEqual({ hash: Sha256.of(nar), size: nar.length });
    expect(digests.file).toEqual({ hash: Sha256.of(out), size: out.length });
  });

  it("passes the NAR through uncompressed, with one digest for both", async () => {
    const { sink, bytes } = collector();
    const digests = await writeNar(dir, sink, { compression: "none" });
    expect(bytes().equals(nar)).toBe(true);
    expect(digests.file).toEqual(digests.nar);
  });

  it.each(["none", "xz"] as const)(
    "fails before ending the sink when the NAR differs from the expected digest (%s)",
    async (compression) => {
      const { sink } = collector();
      let ended = false;
      sink.on("finish", () => {
        ended = true;
      });
      await expect(
        writeNar(dir, sink, {
          compression,
          level: 0,
          expected: { hash: Sha256.of("something else"), size: nar.length },
          label: "/nix/store/x-test",
        }),
      ).rejects.toThrow(
        /\/nix\/store\/x-test: the NAR read from disk .* differs from what Nix recorded/,
      );
      expect(ended).toBe(false);
    },
  );

  it.each(["none", "xz"] as const)(
    "fails when the sink's consumer gives up, midway or at its end, rather than waiting (%s)",
    async (compression) => {
      // Closed without an error, as a consumer that stops reading closes it: neither 'drain'
      // nor 'finish' ever comes.
      const midway = new Writable({
        highWaterMark: 1024,
        write(_chunk, _enc, _done) {
          setTimeout(() => this.destroy(), 10);
        },
      });
      await expect(writeNar(dir, midway, { compression, level: 0 })).rejects.toThrow(
        /closed|Premature close/,
      );
      const atItsEnd = new Writable({
        write(_chunk, _enc, done) {
          done();
        },
        final(_done) {
          setTimeout(() => this.destroy(), 10);
        },
      });
      await expect(writeNar(dir, atItsEnd, { compression, level: 0 })).rejects.toThrow(
        /closed|Premature close/,
      );
    },
    20_000,
  );
});
