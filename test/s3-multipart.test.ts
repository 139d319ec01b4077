// Large NARs go to S3 as multipart uploads with at most upload-concurrency parts in
// flight, in the whole store, as the server sees it; and stock Nix reads what was pushed. Real
// s3rver behind a counting proxy, which holds each part until the store has sent all it may.
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { readAll } from "../src/store/helpers.js";
import { S3Store } from "../src/store/s3-store.js";
import { nixCopyFrom, nixship, runOk } from "../support/cli.js";
import { type CountingProxy, startCountingProxy } from "../support/counting-proxy.js";
import { type S3Server, startS3Server } from "../support/s3-server.js";
import { startCacheServer } from "../support/serve.js";
import { closureMeta } from "./support/fixture-closure.js";

const MiB = 1024 * 1024;
/** S3Store's part size. */
const PART = 8 * MiB;
/** Random bytes do not compress, so the NAR stays large enough for 6 parts even as zstd. */
const RANDOM_PATH = `
derivation {
  name = "nixship-multipart-random";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" "head -c ${41 * MiB} /dev/urandom > $out" ];
  PATH = "/usr/bin:/bin";
}
`;

let work: string;
let s3: S3Server;
let proxy: CountingProxy | undefined;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-s3-multipart-"));
  s3 = await startS3Server();
});
afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
});
afterAll(async () => {
  await s3?.close();
  await rm(work, { recursive: true, force: true });
});

/**
 * A proxy that holds each part until `limit` parts are in flight, then 200 ms more (so a part
 * beyond the limit, if the store sent one, would arrive and be seen), or until 2 s passed (the
 * last parts of an upload, fewer than the limit).
 */
async function holdingParts(limit: number): Promise<CountingProxy> {
  const started = await startCountingProxy(s3.endpoint, {
    intercept: async (r) => {
      if (r.kind !== "multipart-part") return undefined;
      const deadline = Date.now() + 2_000;
      while (started.inFlight("multipart-part") < limit && Date.now() < deadline) await sleep(10);
      await sleep(200);
      return undefined;
    },
  });
  proxy = started;
  return started;
}

describe("multipart uploads to S3", () => {
  it("push sends a large NAR in 8 MiB parts, upload-concurrency at once, and Nix reads it back", async () => {
    const expr = join(work, "random.nix");
    await writeFile(expr, RANDOM_PATH);
    const path = (await runOk("nix-build", ["--no-out-link", expr])).trim();
    const secret = join(work, "k.sec");
    const pub = (
      await nixship(["key", "generate", "--name", "s3-multipart-1", "--out", secret])
    ).stdout.trim();

    const p = await holdingParts(2);
    const url = `s3://${s3.bucket}/mp?region=us-east-1&endpoint=${p.endpoint}&upload-concurrency=2`;
    const push = await nixship(["push", path, "--to", url, "--key", secret, "--json"]);
    expect(push.code, push.stderr).toBe(0);
    const summary = JSON.parse(push.stdout);
    expect(summary.pushed).toBe(1);
    const counts = p.counts();
    expect(counts.requests["multipart-part"]).toBe(Math.ceil(summary.fileBytes / PART));
    expect(counts.requests).toMatchObject({ "multipart-create": 1, "multipart-complete": 1 });
    expect(counts.maxInFlight["multipart-part"]).toBe(2);
    expect(summary.store.requests).toEqual(counts.requests);
    expect(summary.store.retries).toBe(0);

    const server = await startCacheServer(
      `s3://${s3.bucket}/mp?region=us-east-1&endpoint=${s3.endpoint}`,
    );
    try {
      const store = join(work, "store");
      const r = await nixCopyFrom(server.url, store, pub, path);
      expect(r.code, r.stderr).toBe(0);
      expect(await closureMeta(path, store)).toEqual(await closureMeta(path));
    } finally {
      await server.stop();
    }
  });

  it("bounds the parts in flight across the whole store, whatever the puts at once", async () => {
    const p = await holdingParts(3);
    const store = new S3Store({
      bucket: s3.bucket,
      prefix: "two-at-once",
      region: "us-east-1",
      endpoint: p.endpoint,
      uploadConcurrency: 3,
    });
    try {
      const bodies = [randomBytes(3 * PART + 1), randomBytes(3 * PART + 1)];
      const results = await Promise.all(
        bodies.map((body, i) =>
          store.put(`big-${i}`, Readable.from([body]), { size: body.length }),
        ),
      );
      for (const result of results) expect(result.status).toBe("written");
      const counts = p.counts();
      // Each body is 4 parts; one upload at a time, 3 of its parts at once (not 6).
      expect(counts.requests["multipart-part"]).toBe(8);
      expect(counts.maxInFlight["multipart-part"]).toBe(3);
      for (const [i, body] of bodies.entries()) {
        const stored = await readAll(store, `big-${i}`, 4 * PART);
        expect(sha256(stored)).toBe(sha256(body));
      }
    } finally {
      await store.close();
    }
  });
});

function sha256(bytes: Uint8Array | undefined): string {
  return createHash("sha256")
    .update(bytes ?? new Uint8Array())
    .digest("hex");
}
