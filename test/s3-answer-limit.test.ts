// An S3 answer the SDK reads whole (a listing, an error) is cut past ANSWER_LIMIT bytes, through
// the real AWS SDK against a server that answers at length; an object found is streamed to its
// reader as it is, however large (its reader bounds it).
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { S3Store } from "../src/store/s3-store.js";
import { ANSWER_LIMIT } from "../src/util/aws-response-limit.js";

const MiB = 1024 * 1024;
const LONG = ANSWER_LIMIT + 4 * MiB;
let server: Server;
let endpoint: string;
const requests: string[] = [];

/** Writes `size` bytes of `fill` between `head` and `tail`, as the client takes them. */
function answerAtLength(res: import("node:http").ServerResponse, head: string, tail: string): void {
  const chunk = Buffer.alloc(MiB, "a");
  let sent = 0;
  const more = () => {
    while (sent < LONG) {
      sent += chunk.length;
      if (!res.write(chunk)) {
        res.once("drain", more);
        return;
      }
    }
    res.end(tail);
  };
  res.write(head);
  more();
}

beforeAll(async () => {
  process.env.AWS_ACCESS_KEY_ID = "x";
  process.env.AWS_SECRET_ACCESS_KEY = "y";
  server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    res.on("error", () => {});
    if (req.url?.includes("list-type=2")) {
      res.writeHead(200, { "content-type": "application/xml" });
      answerAtLength(
        res,
        '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>',
        "</Name><IsTruncated>false</IsTruncated><KeyCount>0</KeyCount></ListBucketResult>",
      );
    } else if (req.url?.includes("/big.nar")) {
      res.writeHead(200, { "content-length": LONG + 2, etag: '"e"' });
      answerAtLength(res, "<", ">");
    } else {
      res.writeHead(500, { "content-type": "application/xml" });
      answerAtLength(res, "<Error><Code>InternalError</Code><Message>", "</Message></Error>");
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

const store = () =>
  new S3Store({ bucket: "b", region: "us-east-1", endpoint, retry: { maxAttempts: 1 } });

describe("an S3 answer at length", () => {
  it("a listing past the limit is cut, and said", async () => {
    const s = store();
    try {
      await expect(s.list("hosts/")).rejects.toThrow(
        /the answer is more than 16777216 bytes, far more than such an answer holds: cut there/,
      );
    } finally {
      await s.close();
    }
  });

  it("an error past the limit is cut too", async () => {
    const s = store();
    try {
      await expect(s.head("broken")).rejects.toBeDefined();
      await expect(s.delete("broken")).rejects.toThrow(/more than 16777216 bytes/);
    } finally {
      await s.close();
    }
  });

  it("an object found is streamed whole, past the limit", async () => {
    const s = store();
    try {
      const got = await s.get("big.nar");
      let bytes = 0;
      for await (const chunk of got?.body ?? []) bytes += (chunk as Buffer).length;
      expect(bytes).toBe(LONG + 2);
    } finally {
      await s.close();
    }
  });
});
