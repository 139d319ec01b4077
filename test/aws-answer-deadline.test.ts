// An AWS endpoint (S3, SSM) that sends its answer's headers a byte at a time, each byte within
// the connection's idle timeout, is stopped by each attempt's answer deadline
// (util/aws-timeouts.ts) instead of holding the request for ever; an upload's deadline grows
// with its body. Through the real AWS SDK, against local servers that answer that way.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { SSMClient } from "@aws-sdk/client-ssm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SsmCommands } from "../src/delivery/ssm-client.js";
import { readAll } from "../src/store/helpers.js";
import { S3Store } from "../src/store/s3-store.js";
import { answerDeadlineMs, awsRequestHandler } from "../src/util/aws-timeouts.js";
import { type LyingS3, startLyingS3, trickleHeaders } from "./support/lying-s3.js";

// Each byte comes 100 ms after the last, well within the 900 ms idle timeout (a loaded machine
// may hold the test's own server back for some hundred ms): only the answer deadline of one
// second ends the wait (the trickle itself lasts a minute, past this file's tests' timeout).
const TIMEOUTS = { connectMs: 2_000, idleMs: 900, answerMs: 1_000 };

let s3: LyingS3;

beforeAll(async () => {
  process.env.AWS_ACCESS_KEY_ID = "x";
  process.env.AWS_SECRET_ACCESS_KEY = "y";
  s3 = await startLyingS3({
    stalls: { "slow.narinfo": "headers", "gone.narinfo": "absent" },
    putDelays: { "late.narinfo": 2_500, "late.nar": 2_500 },
  });
});
afterAll(() => s3.stop());

const store = (timeouts = TIMEOUTS) =>
  new S3Store({
    bucket: s3.bucket,
    region: "us-east-1",
    endpoint: s3.endpoint,
    retry: { maxDelayMs: 1 },
    timeouts,
  });

describe("an S3 answer whose headers trickle", () => {
  for (const op of ["head", "get"] as const) {
    it(`ends a ${op} at its deadline, naming the store, the object and the fix`, async () => {
      const s = store();
      const before = s3.requests.get("stalled") ?? 0;
      try {
        await expect(s[op]("slow.narinfo")).rejects.toMatchObject({
          code: "store-s3-failed",
          message: expect.stringMatching(
            new RegExp(
              `S3 ${op} of "slow.narinfo" in bucket "lies" at http://127\\.0\\.0\\.1:\\d+ failed after 3 attempts .*TimeoutError: the server had not answered 1 s after the request was sent`,
            ),
          ),
          hint: "check that the endpoint in the store URL is right and the server is reachable",
        });
        // Retried as a request that got no answer, each attempt with a deadline of its own.
        expect((s3.requests.get("stalled") ?? 0) - before).toBe(3);
      } finally {
        await s.close();
      }
    });
  }
});

describe("an S3 answer whose body the SDK reads whole, and which trickles", () => {
  it("ends the read of an absent key once its body falls behind, and takes the 404 for what it is", async () => {
    // Its status comes at once, yet on a loaded machine not always within one second: a few
    // seconds for it, so that the one request is not retried as unanswered.
    const s = store({ ...TIMEOUTS, answerMs: 4_000 });
    const before = s3.requests.get("stalled") ?? 0;
    const started = Date.now();
    try {
      // The answer's grace, then 128 KiB a second: a byte every 100 ms is far behind. The
      // status came: the key is absent, and is not asked again.
      await expect(readAll(s, "gone.narinfo", 1024)).resolves.toBeUndefined();
      expect((s3.requests.get("stalled") ?? 0) - before).toBe(1);
      // Not the minute the body's trickle lasts.
      expect(Date.now() - started).toBeLessThan(30_000);
    } finally {
      await s.close();
    }
  }, 60_000);

  it("ends a listing whose body falls behind, naming the store and what came", async () => {
    const listing = await startLyingS3({ trickleListing: true });
    const s = new S3Store({
      bucket: listing.bucket,
      region: "us-east-1",
      endpoint: listing.endpoint,
      retry: { maxDelayMs: 1 },
      timeouts: TIMEOUTS,
    });
    try {
      await expect(s.list("")).rejects.toMatchObject({
        message: expect.stringMatching(
          /^S3 list of "" in bucket "lies" at http:\/\/127\.0\.0\.1:\d+ failed.*ListObjectsV2Command: the answer's body came too slowly \(\d+ bytes in 2 s after its headers; one read whole must come at 128 KiB a second past its first 1 s\): stopped/,
        ),
      });
      expect(listing.requests.get("list")).toBe(1);
    } finally {
      await s.close();
      await listing.stop();
    }
  }, 60_000);
});

describe("an upload's answer deadline grows with its body", () => {
  it("a body of 96 KiB has 3 s more than an empty one", () => {
    expect(answerDeadlineMs(TIMEOUTS, 0)).toBe(1_000);
    expect(answerDeadlineMs(TIMEOUTS, 96 * 1024)).toBe(4_000);
    expect(answerDeadlineMs(TIMEOUTS, 96 * 1024 + 1)).toBe(5_000);
  });

  it("an answer 2.5 s after a 96 KiB body is taken; after an empty one it is late", async () => {
    // The connection is idle while the server waits: the idle timeout must not end it first.
    const s = store({ ...TIMEOUTS, idleMs: 10_000 });
    try {
      await expect(s.put("late.nar", new Uint8Array(96 * 1024))).resolves.toMatchObject({
        status: "written",
      });
      await expect(s.put("late.narinfo", new Uint8Array(0))).rejects.toThrow(
        /S3 put of "late.narinfo" .*had not answered 1 s after the request was sent/,
      );
    } finally {
      await s.close();
    }
  });
});

describe("an SSM answer whose headers trickle", () => {
  let server: Server;
  let endpoint: string;
  let sends = 0;
  let lookups = 0;

  beforeAll(async () => {
    // SendCommand's answer trickles; the list a lost send is looked for in answers at once,
    // listing no command.
    server = createServer((req, res) => {
      req.resume();
      if (req.headers["x-amz-target"] === "AmazonSSM.ListCommands") {
        lookups++;
        res.writeHead(200, { "content-type": "application/x-amz-json-1.1" });
        res.end(JSON.stringify({ Commands: [] }));
        return;
      }
      sends++;
      trickleHeaders(res);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );

  it("ends SendCommand at its deadline, sends it once, and says it may be running when SSM lists it not", async () => {
    const client = new SSMClient({
      region: "us-east-1",
      endpoint,
      requestHandler: awsRequestHandler(TIMEOUTS),
      maxAttempts: 2,
    });
    const ssm = new SsmCommands({
      settings: { documentName: "nixship-activate", region: "us-east-1", commandTimeout: 60 },
      client,
      pollInterval: 1,
    });
    try {
      await expect(ssm.send({ InstanceIds: ["i-1"] })).rejects.toMatchObject({
        code: "ssm-send-unknown",
        // A second for the answer, and one for the few bytes of JSON the request sends.
        message: expect.stringContaining(
          "SSM: TimeoutError: the server had not answered 2 s after the request was sent",
        ),
      });
      // Not repeated, though the client would retry (maxAttempts 2): it may have run.
      expect(sends).toBe(1);
      expect(lookups).toBeGreaterThan(1);
    } finally {
      client.destroy();
    }
  });
});
