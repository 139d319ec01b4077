// A small malicious S3 responder, for the tests of what nixship does when a store lies: it
// answers ListObjectsV2 with a page that claims more follow but ignores StartAfter, and
// serves fixed objects for GET and HEAD, or stalls on them. It counts the requests it gets.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Writable } from "node:stream";

export interface LyingS3 {
  readonly endpoint: string;
  readonly bucket: string;
  /** Requests by kind: "list", "get", "head", "put", "stalled", "other". */
  readonly requests: Map<string, number>;
  stop(): Promise<void>;
}

export interface LyingS3Options {
  /** Objects served by key (GET and HEAD). */
  readonly objects?: Readonly<Record<string, string>>;
  /** The keys every ListObjectsV2 page names, whatever its StartAfter. */
  readonly listedKeys?: readonly string[];
  /** Answer every HEAD with this status and no body (as a failing proxy would). */
  readonly headStatus?: number;
  /**
   * GETs of these keys stall, the connection held open: "answer" sends nothing at all; "body"
   * sends the headers of a 1 MiB object and its first 1,000 bytes, then nothing more;
   * "headers" (HEAD too) sends its status line, then a header a byte every 100 ms, for at most
   * a minute; "trickle" sends the headers of a 1 MiB object, then a byte of it every 100 ms,
   * for at most a minute; "absent" answers 404 at once, then sends its error's body a byte
   * every 100 ms, for at most a minute (a body the SDK reads whole).
   */
  readonly stalls?: Readonly<Record<string, "answer" | "body" | "headers" | "trickle" | "absent">>;
  /** Every ListObjectsV2 answers 200 at once, then sends its body a byte every 100 ms. */
  readonly trickleListing?: boolean;
  /** PUTs of these keys are answered (200) this many ms after their body has all come. */
  readonly putDelays?: Readonly<Record<string, number>>;
}

/** Writes a status line, then a header one byte every 100 ms, until the client goes or a minute. */
export function trickleHeaders(res: ServerResponse): void {
  const socket = res.socket;
  if (socket === null) return;
  socket.write("HTTP/1.1 200 OK\r\nx-slow: ");
  trickle(socket);
}

/** Writes a byte to `out` every 100 ms, until it is closed or a minute has passed. */
function trickle(out: Writable): void {
  let sent = 0;
  const timer = setInterval(() => {
    if (out.destroyed || ++sent > 600) clearInterval(timer);
    else out.write("x");
  }, 100);
  out.once("close", () => clearInterval(timer));
}

const xmlEscape = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

export async function startLyingS3(options: LyingS3Options): Promise<LyingS3> {
  const bucket = "lies";
  const requests = new Map<string, number>();
  const count = (kind: string) => requests.set(kind, (requests.get(kind) ?? 0) + 1);
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://x");
    const key = decodeURIComponent(url.pathname.replace(`/${bucket}`, "").replace(/^\//, ""));
    if (req.method === "PUT" && options.putDelays?.[key] !== undefined) {
      count("put");
      const delay = options.putDelays[key];
      req.on("end", () =>
        setTimeout(() => {
          res.setHeader("etag", '"e"');
          res.end();
        }, delay),
      );
      req.resume();
      return;
    }
    req.resume();
    if (req.method === "GET" && url.searchParams.get("list-type") === "2") {
      count("list");
      if (options.trickleListing) {
        res.setHeader("content-type", "application/xml");
        res.write('<?xml version="1.0" encoding="UTF-8"?>');
        trickle(res);
        return;
      }
      const listed = options.listedKeys ?? [];
      const contents = listed
        .map(
          (k) =>
            `<Contents><Key>${xmlEscape(k)}</Key><Size>1</Size><ETag>"e"</ETag><LastModified>2026-01-01T00:00:00.000Z</LastModified></Contents>`,
        )
        .join("");
      res.setHeader("content-type", "application/xml");
      res.end(
        `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>${bucket}</Name><Prefix>${xmlEscape(url.searchParams.get("prefix") ?? "")}</Prefix><KeyCount>${listed.length}</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>${contents}</ListBucketResult>`,
      );
      return;
    }
    if (req.method === "HEAD" && options.headStatus !== undefined) {
      count("head");
      res.statusCode = options.headStatus;
      res.end();
      return;
    }
    const stall = options.stalls?.[key];
    if (stall === "headers" && (req.method === "GET" || req.method === "HEAD")) {
      count("stalled");
      trickleHeaders(res);
      return;
    }
    if (stall === "absent" && (req.method === "GET" || req.method === "HEAD")) {
      count("stalled");
      res.statusCode = 404;
      res.setHeader("content-type", "application/xml");
      res.write('<?xml version="1.0" encoding="UTF-8"?>');
      trickle(res);
      return;
    }
    if (stall !== undefined && req.method === "GET") {
      count("stalled");
      if (stall === "body" || stall === "trickle") {
        res.setHeader("content-length", 1024 * 1024);
        res.setHeader("etag", '"e"');
        if (stall === "body") res.write(Buffer.alloc(1000, 120));
        else trickle(res);
      }
      return;
    }
    const body = options.objects?.[key];
    if ((req.method === "GET" || req.method === "HEAD") && body !== undefined) {
      count(req.method === "GET" ? "get" : "head");
      res.setHeader("content-length", Buffer.byteLength(body));
      res.setHeader("etag", '"e"');
      res.end(req.method === "GET" ? body : undefined);
      return;
    }
    count("other");
    res.statusCode = 404;
    res.setHeader("content-type", "application/xml");
    res.end(
      `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>no</Message></Error>`,
    );
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    requests,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
