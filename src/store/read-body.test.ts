// A small object's read is bounded in size and in time: a store that sends a byte now and then,
// each within its connection's idle timeout, no longer holds the reader for ever.
import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { readDeadlineMs } from "../util/deadline.js";
import { readBody } from "./helpers.js";

/** A body that sends one byte every `everyMs`, for ever (until destroyed). */
function trickle(everyMs: number): Readable {
  let timer: NodeJS.Timeout | undefined;
  const body = new Readable({
    read() {
      timer = setTimeout(() => body.push("x"), everyMs);
    },
    destroy(err, done) {
      clearTimeout(timer);
      done(err);
    },
  });
  return body;
}

describe("readBody", () => {
  it("stops a body that trickles past its deadline, saying how much came", async () => {
    const body = trickle(20);
    const started = Date.now();
    const err = await readBody(body, "channels/prod", 1024, 400).catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: "store-read-timeout",
      message: expect.stringMatching(
        /^channels\/prod: \d+ bytes read in 0 s, and the store had not sent all of it: stopped$/,
      ),
    });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(body.destroyed).toBe(true);
  });

  it("reads a body that ends within it, and refuses one past its size", async () => {
    expect(
      (await readBody(Readable.from([Buffer.from("ab"), "c"]), "k", 10, 1_000)).toString(),
    ).toBe("abc");
    await expect(readBody(Readable.from([Buffer.alloc(11)]), "k", 10, 1_000)).rejects.toMatchObject(
      {
        code: "object-too-large",
      },
    );
  });

  it("gives a small object a minute, and a second per 128 KiB it may hold", () => {
    expect(readDeadlineMs(64 * 1024)).toBe(61_000);
    expect(readDeadlineMs(32 * 1024 * 1024)).toBe(316_000);
  });
});
