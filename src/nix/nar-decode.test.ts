import { describe, expect, it } from "vitest";
import { BAD_NARS, nestedDirs } from "../../test/support/nar-corpus.js";
import { InputError } from "../errors.js";
import { decodeNar, type NarEvent } from "./nar-decode.js";
import { buildNar, narNode } from "./nar-write.js";

const { regular, symlink, directory } = narNode;

async function collect(source: Iterable<Uint8Array> | AsyncIterable<Uint8Array>) {
  const events: NarEvent[] = [];
  for await (const ev of decodeNar(source)) events.push(ev);
  return events;
}

/** Events with each file's data chunks merged, so differently chunked inputs compare equal. */
async function summary(source: Iterable<Uint8Array> | AsyncIterable<Uint8Array>) {
  const out: unknown[] = [];
  for (const ev of await collect(source)) {
    if (ev.kind === "data") {
      const last = out[out.length - 1] as { data?: string };
      last.data = (last.data ?? "") + ev.chunk.toString();
    } else if (ev.kind === "symlink") {
      out.push({ kind: ev.kind, path: ev.path, target: ev.target });
    } else {
      const { rawPath: _raw, ...rest } = ev;
      out.push({ ...rest });
    }
  }
  return out;
}

function* bytewise(buf: Buffer): Generator<Buffer> {
  for (let i = 0; i < buf.length; i++) yield buf.subarray(i, i + 1);
}

async function rejection(nar: Buffer): Promise<InputError> {
  try {
    await collect([nar]);
  } catch (err) {
    if (err instanceof InputError) return err;
    throw err;
  }
  throw new Error("the NAR was accepted");
}

const sample = buildNar(
  directory([
    ["bin", directory([["hi", regular("#!/bin/sh\necho hi\n", true)]])],
    ["empty", directory([])],
    ["empty.txt", regular("")],
    ["link", symlink("/tmp/outside")],
  ]),
);

describe("decodeNar", () => {
  it("yields one event per node, in archive order, with paths relative to the root", async () => {
    expect(await summary([sample])).toEqual([
      { kind: "directory", path: "" },
      { kind: "directory", path: "bin" },
      { kind: "file", path: "bin/hi", executable: true, size: 18, data: "#!/bin/sh\necho hi\n" },
      { kind: "directory", path: "empty" },
      { kind: "file", path: "empty.txt", executable: false, size: 0 },
      { kind: "symlink", path: "link", target: "/tmp/outside" },
    ]);
  });

  it("gives the same result however the input is chunked", async () => {
    const whole = await summary([sample]);
    expect(await summary(bytewise(sample))).toEqual(whole);
    expect(await summary([sample.subarray(0, 37), new Uint8Array(0), sample.subarray(37)])).toEqual(
      whole,
    );
  });

  it("keeps raw bytes for names and targets that are not UTF-8", async () => {
    const name = Buffer.from([0x66, 0xff]);
    const target = Buffer.from([0xfe, 0x2f, 0x61]);
    const events = await collect([buildNar(directory([[name, symlink(target)]]))]);
    const link = events[1];
    expect(
      link?.kind === "symlink" && link.rawPath.equals(name) && link.rawTarget.equals(target),
    ).toBe(true);
  });

  it("streams file contents in source-sized chunks, before the source is drained", async () => {
    const contents = Buffer.alloc(8 << 20, 7);
    const nar = buildNar(regular(contents));
    let pulled = 0;
    async function* source() {
      for (let i = 0; i < nar.length; i += 65536) {
        pulled++;
        yield nar.subarray(i, i + 65536);
      }
    }
    let firstDataAfter = -1;
    let largest = 0;
    let total = 0;
    for await (const ev of decodeNar(source())) {
      if (ev.kind !== "data") continue;
      if (firstDataAfter < 0) firstDataAfter = pulled;
      largest = Math.max(largest, ev.chunk.length);
      total += ev.chunk.length;
    }
    expect(firstDataAfter).toBe(1);
    expect(largest).toBeLessThanOrEqual(65536);
    expect(total).toBe(contents.length);
  });

  it("accepts the limits themselves: depth 63, 255-byte names, 4095-byte targets", async () => {
    await expect(collect([buildNar(nestedDirs(63))])).resolves.toHaveLength(65);
    const longName = directory([["n".repeat(255), symlink("t".repeat(4095))]]);
    await expect(collect([buildNar(longName)])).resolves.toHaveLength(2);
  });

  describe("rejects malformed NARs with the reason, the byte offset and the path", () => {
    it.each(BAD_NARS.map((b) => [b.rule, b] as const))("%s", async (_rule, bad) => {
      const err = await rejection(bad.nar);
      expect(err.code).toBe("bad-nar");
      expect(err.message).toMatch(bad.message);
    });
  });

  it("names the path inside the archive where the fault is", async () => {
    const nar = buildNar(directory([["sub", directory([["x", ["(", "type", "fifo", ")"]]])]]));
    expect((await rejection(nar)).message).toMatch(
      /^unknown node type "fifo" at byte \d+ \(in 'sub\/x'\)$/,
    );
  });

  it("rejects every truncation of a valid NAR as an unexpected end at that byte", async () => {
    for (let cut = 0; cut < sample.length; cut += 8) {
      const err = await rejection(sample.subarray(0, cut));
      expect(err.message).toMatch(new RegExp(`^unexpected end of NAR at byte ${cut}\\b`));
    }
  });

  it("lets go of the source when parsing fails or the consumer stops early", async () => {
    const nar = buildNar(
      directory([
        ["a", regular("x")],
        ["b", regular("y")],
      ]),
    );
    const withGarbage = Buffer.concat([buildNar(regular("bar")), Buffer.alloc(64)]);
    for (const [input, stopEarly] of [
      [withGarbage, false],
      [nar, true],
    ] as const) {
      let closed = false;
      const source = (async function* () {
        try {
          for (let i = 0; i < input.length; i += 16) yield input.subarray(i, i + 16);
        } finally {
          closed = true;
        }
      })();
      const run = async () => {
        for await (const ev of decodeNar(source)) if (stopEarly && ev.kind === "file") break;
      };
      if (stopEarly) await run();
      else await expect(run()).rejects.toThrow(/^trailing data after the root node at byte 120$/);
      expect(closed).toBe(true);
    }
  });

  it("rejects trailing data that arrives in a later chunk", async () => {
    const nar = buildNar(regular("bar"));
    await expect(collect([nar, new Uint8Array(0), Buffer.from([0])])).rejects.toThrow(
      /^trailing data after the root node at byte 120$/,
    );
  });
});
