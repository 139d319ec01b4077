// The spool's temporary file on a full disk: the kernel's own ENOSPC, from /dev/full, which
// stands in for the file the spool creates (no real part here fills a disk at will). The
// write fails the spool with that error; before, it was an unhandled 'error' event.
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { describe, expect, it, vi } from "vitest";

vi.mock("node:fs", async (original) => {
  const fs = await original<typeof import("node:fs")>();
  return {
    ...fs,
    createWriteStream: ((path: string, options?: Parameters<typeof fs.createWriteStream>[1]) =>
      fs.createWriteStream(
        String(path).includes("nixship-spool-") ? "/dev/full" : path,
        options,
      )) as typeof fs.createWriteStream,
  };
});

const { Spool } = await import("./spool.js");

describe("Spool", () => {
  it("keeps a small NAR in memory", async () => {
    const spool = new Spool(1 << 20);
    await pipeline(Readable.from([Buffer.from("a small NAR")]), spool);
    expect(spool.contents()).toEqual(Buffer.from("a small NAR"));
    await spool.dispose();
  });

  it("fails with the disk's error when its temporary file cannot be written", async () => {
    const spool = new Spool(1024);
    const chunks = Array.from({ length: 64 }, () => Buffer.alloc(256 * 1024, 7));
    await expect(pipeline(Readable.from(chunks), spool)).rejects.toMatchObject({
      code: "ENOSPC",
    });
    await spool.dispose();
  }, 10_000);
});
