// drained: a full writable is waited on until it drains, and no longer once it closes or fails.
import { PassThrough, Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { drained, finishedWriting, writeDrained } from "./drained.js";

const closed = () => new Error("closed early");

/** A writable that holds every write until `release` is called. */
function slowSink() {
  let pending: (() => void) | undefined;
  const sink = new Writable({
    highWaterMark: 4,
    write(_chunk, _enc, done) {
      pending = done;
    },
  });
  return { sink, release: () => pending?.() };
}

describe("drained", () => {
  it("resolves once the sink wants more", async () => {
    const { sink, release } = slowSink();
    expect(sink.write(Buffer.alloc(16))).toBe(false);
    const waiting = drained(sink, closed);
    release();
    await expect(waiting).resolves.toBeUndefined();
  });

  it("fails when the sink closes before it drains (its reader gave up)", async () => {
    const { sink } = slowSink();
    sink.write(Buffer.alloc(16));
    const waiting = drained(sink, closed);
    sink.destroy();
    await expect(waiting).rejects.toThrow("closed early");
  });

  it("fails with the sink's own error", async () => {
    const { sink } = slowSink();
    sink.write(Buffer.alloc(16));
    const waiting = drained(sink, closed);
    sink.destroy(Object.assign(new Error("no space left on device"), { code: "ENOSPC" }));
    await expect(waiting).rejects.toMatchObject({ code: "ENOSPC" });
  });

  it("fails at once on a sink already destroyed, which would never drain", async () => {
    const sink = new PassThrough({ highWaterMark: 4 });
    sink.destroy();
    await expect(writeDrained(sink, Buffer.alloc(16), closed)).rejects.toThrow("closed early");
    await expect(drained(sink, closed)).rejects.toThrow("closed early");
  });
});

describe("finishedWriting", () => {
  it("resolves once the ended sink has taken everything", async () => {
    const { sink, release } = slowSink();
    sink.end(Buffer.alloc(16));
    const waiting = finishedWriting(sink, closed);
    release();
    await expect(waiting).resolves.toBeUndefined();
    await expect(finishedWriting(sink, closed)).resolves.toBeUndefined();
  });

  it("fails when the sink closes after its end but before 'finish' (its commit never came)", async () => {
    const sink = new Writable({
      write(_chunk, _enc, done) {
        done();
      },
      final(_done) {
        setTimeout(() => this.destroy(), 10);
      },
    });
    sink.end(Buffer.alloc(16));
    await expect(finishedWriting(sink, closed)).rejects.toThrow("closed early");
  });
});
