// A NAR read from a store that sends a byte within each idle timeout ends at its deadline
// (cache/read.ts streamVerifiedNar): its bytes were bounded by the signed NarSize, and now its
// time is too. Through the real AWS SDK, against a local server that sends the body that way.
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { streamVerifiedNar } from "../src/cache/read.js";
import { Sha256 } from "../src/nix/hash.js";
import type { NarInfo } from "../src/nix/narinfo.js";
import type { StorePath } from "../src/nix/store-path.js";
import { S3Store } from "../src/store/s3-store.js";
import { readDeadlineMs } from "../src/util/deadline.js";
import { type LyingS3, startLyingS3 } from "./support/lying-s3.js";

let s3: LyingS3;

beforeAll(async () => {
  process.env.AWS_ACCESS_KEY_ID = "x";
  process.env.AWS_SECRET_ACCESS_KEY = "y";
  s3 = await startLyingS3({ stalls: { "nar/trickle.nar": "trickle" } });
});
afterAll(() => s3.stop());

const info: NarInfo = {
  storePath: `/nix/store/${"a".repeat(32)}-slow` as StorePath,
  url: "nar/trickle.nar",
  compression: "none",
  fileHash: undefined,
  fileSize: 1024 * 1024,
  narHash: Sha256.of("x"),
  narSize: 1024 * 1024,
  references: [],
  deriver: undefined,
  sigs: [],
  ca: undefined,
};

describe("a NAR that comes a byte at a time", () => {
  it("is stopped at its deadline, naming the path, the NAR and the fix", async () => {
    // A byte every 100 ms, within the 300 ms idle timeout: only the read's deadline ends it.
    const store = new S3Store({
      bucket: s3.bucket,
      region: "us-east-1",
      endpoint: s3.endpoint,
      timeouts: { connectMs: 2_000, idleMs: 300, answerMs: 5_000 },
    });
    let received = 0;
    const sink = new Writable({
      write: (chunk: Buffer, _e, done) => {
        received += chunk.length;
        done();
      },
    });
    try {
      await expect(
        streamVerifiedNar(store, info, sink, { deadlineMs: 1_500 }),
      ).rejects.toMatchObject({
        code: "store-read-timeout",
        message: `${info.storePath}: nar/trickle.nar (1048576 bytes at most) was not all read in 2 s: stopped`,
        hint: "the store (or a proxy on the way) answers too slowly; try again, or check it",
      });
      // The bytes did come, slowly: it is the time that ended the read.
      expect(received).toBeGreaterThan(0);
    } finally {
      await store.close();
    }
  });

  it("has, unless told, a minute and a second per 128 KiB it may hold", () => {
    expect(readDeadlineMs(info.fileSize ?? 0)).toBe(68_000);
  });
});
