import { once } from "node:events";
import { mkdtemp, rm, symlink } from "node:fs/promises";
import { get as httpGet, type Server } from "node:http";
import { type AddressInfo, connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Sha256 } from "../nix/hash.js";
import { FsStore } from "../store/fs-store.js";
import { readGot } from "../store/helpers.js";
import type { ObjectStore } from "../store/object-store.js";
import { wrapStore } from "../store/wrap-store.js";
import { NARINFO_LIMIT } from "./read.js";
import {
  closeCacheServer,
  createCacheServer,
  logServerFailures,
  type ServedRequest,
} from "./serve.js";

const NARINFO = "0123456789abcdfghijklmnpqrsvwxyz.narinfo";
const NAR = `nar/${"1".repeat(52)}.nar.zst`;
const NARINFO_TEXT = [
  "StorePath: /nix/store/0123456789abcdfghijklmnpqrsvwxyz-x",
  `URL: ${NAR}`,
  "Compression: zstd",
  `NarHash: ${Sha256.of("x").format("nix32")}`,
  "NarSize: 300000",
  "References: ",
  "Sig: test:c2ln",
  "",
].join("\n");
/** NARINFO_TEXT as the server sends it: its URL carries its NAR's bound (nar-bound.ts). */
const NARINFO_SERVED = NARINFO_TEXT.replace(
  `URL: ${NAR}`,
  `URL: ${NAR}?nar-size=300000&compression=zstd`,
);
// A delta path's NAR (docs/deltas.md), and a skip note hosts have no business reading.
const DELTA_NAR = `delta/${"3".repeat(52)}.nar`;
const SKIP_NOTE = `delta/skip/${"4".repeat(32)}-${"5".repeat(32)}.json`;

async function listen(server: Server): Promise<string> {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe("cache server", () => {
  let dir: string;
  let open: Server;
  let guarded: Server;
  let openUrl: string;
  let guardedUrl: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "nixship-serve-"));
    const store = new FsStore(dir);
    await store.put(NARINFO, Buffer.from(NARINFO_TEXT));
    await store.put(NAR, Buffer.alloc(300_000, 7));
    await store.put("releases/secret.json", Buffer.from("{}"));
    await store.put(DELTA_NAR, Buffer.from("delta NAR"));
    await store.put(SKIP_NOTE, Buffer.from("{}"));
    open = createCacheServer({ store });
    guarded = createCacheServer({ store, token: "s3cret" });
    openUrl = await listen(open);
    guardedUrl = await listen(guarded);
  });
  afterAll(async () => {
    open.close();
    guarded.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("serves narinfos and NARs with their sizes and types", async () => {
    const info = await fetch(`${openUrl}/${NARINFO}`);
    expect(info.status).toBe(200);
    expect(info.headers.get("content-type")).toBe("text/x-nix-narinfo");
    expect(await info.text()).toBe(NARINFO_SERVED);
    const nar = await fetch(`${openUrl}/${NAR}`);
    expect(nar.headers.get("content-length")).toBe("300000");
    expect(Buffer.from(await nar.arrayBuffer()).equals(Buffer.alloc(300_000, 7))).toBe(true);
  });

  it("answers a narinfo that does not parse with a 404 (no such path: Nix asks no more), and logs why", async () => {
    const planted = "zyxwvsrqpnmlkjihgfdcba9876543211.narinfo";
    const store = new FsStore(dir);
    await store.put(planted, Buffer.from("garbage\n"));
    const said: { status: number; error?: string }[] = [];
    const server = createCacheServer({ store, onRequest: (e) => said.push(e) });
    const url = await listen(server);
    try {
      const r = await fetch(`${url}/${planted}`);
      expect(r.status).toBe(404);
      expect(said).toEqual([
        expect.objectContaining({
          status: 404,
          error: `${planted}, line 1: expected 'Key: value', got 'garbage'`,
        }),
      ]);
    } finally {
      server.close();
      await store.delete(planted);
    }
  });

  it("answers a narinfo larger than any narinfo with a 502, never sending it", async () => {
    const planted = "zyxwvsrqpnmlkjihgfdcba9876543210.narinfo";
    const store = new FsStore(dir);
    await store.put(planted, Buffer.alloc(NARINFO_LIMIT + 1, 65));
    const said: { status: number; error?: string }[] = [];
    const server = createCacheServer({ store, onRequest: (e) => said.push(e) });
    const url = await listen(server);
    try {
      const r = await fetch(`${url}/${planted}`);
      expect(r.status).toBe(502);
      expect(await r.text()).toBe(
        "the cache's store could not be read; the server's log says why\n",
      );
      expect(said).toEqual([
        expect.objectContaining({
          status: 502,
          error: expect.stringContaining(
            `${planted} is ${NARINFO_LIMIT + 1} bytes, over ${NARINFO_LIMIT} bytes`,
          ),
        }),
      ]);
    } finally {
      server.close();
      await store.delete(planted);
    }
  });

  it("serves the NARs of delta paths, not the deltas' skip notes", async () => {
    const nar = await fetch(`${openUrl}/${DELTA_NAR}`);
    expect(nar.status).toBe(200);
    expect(nar.headers.get("content-type")).toBe("application/x-nix-nar");
    expect(await nar.text()).toBe("delta NAR");
    expect((await fetch(`${openUrl}/${SKIP_NOTE}`)).status).toBe(404);
    expect((await fetch(`${openUrl}/delta/${"3".repeat(52)}.nar.zst`)).status).toBe(404);
  });

  it("answers HEAD without a body", async () => {
    const head = await fetch(`${openUrl}/${NAR}`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("content-length")).toBe("300000");
    expect((await head.arrayBuffer()).byteLength).toBe(0);
    expect((await fetch(`${openUrl}/${"2".repeat(32)}.narinfo`, { method: "HEAD" })).status).toBe(
      404,
    );
  });

  it("synthesises nix-cache-info when the store has none", async () => {
    const r = await fetch(`${openUrl}/nix-cache-info`);
    expect(r.status).toBe(200);
    expect(await r.text()).toBe("StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n");
  });

  it.each([
    `/${"2".repeat(32)}.narinfo`,
    "/releases/secret.json",
    "/..%2f..%2fetc%2fpasswd",
    "/nar/../releases/secret.json",
    "/",
    "/%E0%A4%A.narinfo",
  ])("404s %s (absent or not a cache object)", async (path) => {
    expect((await fetch(`${openUrl}${path}`)).status).toBe(404);
  });

  it("refuses other methods", async () => {
    expect((await fetch(`${openUrl}/${NARINFO}`, { method: "PUT", body: "x" })).status).toBe(405);
  });

  it("requires the token when one is set, as Bearer or as a Basic password", async () => {
    expect((await fetch(`${guardedUrl}/${NARINFO}`)).status).toBe(401);
    const wrong = await fetch(`${guardedUrl}/${NARINFO}`, {
      headers: { authorization: "Bearer nope" },
    });
    expect(wrong.status).toBe(401);
    const bearer = await fetch(`${guardedUrl}/${NARINFO}`, {
      headers: { authorization: "Bearer s3cret" },
    });
    expect(bearer.status).toBe(200);
    const basic = Buffer.from("nix:s3cret").toString("base64");
    const viaNetrc = await fetch(`${guardedUrl}/${NARINFO}`, {
      headers: { authorization: `Basic ${basic}` },
    });
    expect(viaNetrc.status).toBe(200);
  });

  it("answers a store failure with a 502 that names nothing of the store; the error goes to onRequest", async () => {
    const broken = "1123456789abcdfghijklmnpqrsvwxyz.narinfo";
    // A link where the object should be: the store refuses to read through it, naming its path.
    await symlink("/etc/hostname", join(dir, broken));
    const seen: { status: number; error?: string }[] = [];
    const server = createCacheServer({
      store: new FsStore(dir),
      onRequest: (entry) => seen.push(entry),
    });
    const url = await listen(server);
    try {
      const res = await fetch(`${url}/${broken}`);
      expect(res.status).toBe(502);
      const body = await res.text();
      expect(body).toBe("the cache's store could not be read; the server's log says why\n");
      expect(body).not.toContain(dir);
      expect(seen).toHaveLength(1);
      expect(seen[0]?.status).toBe(502);
      expect(seen[0]?.error).toBeTruthy();
    } finally {
      server.close();
    }
  });

  it("tells nothing of a client that closes once it holds every byte (Nix 2.8 may)", async () => {
    // The store's stream gives every byte at once and ends 300 ms later: the client has the
    // whole answer, and closes, before the server's pipeline ends.
    const inner = new FsStore(dir);
    const late = wrapStore(inner, {
      get: (async (key: string) => {
        const got = await inner.get(key);
        if (got === undefined || !key.startsWith("nar/")) return got;
        const bytes = await readGot(got, key, 1024 * 1024);
        const body = new Readable({ read() {} });
        body.push(bytes);
        setTimeout(() => body.push(null), 300);
        return { ...got, body };
      }) as ObjectStore["get"],
    });
    const seen: { status: number; error?: string }[] = [];
    const server = createCacheServer({ store: late, onRequest: (entry) => seen.push(entry) });
    const url = new URL(await listen(server));
    try {
      const received = await new Promise<number>((resolve, reject) => {
        const req = httpGet(`${url.origin}/${NAR}`, (res) => {
          const length = Number(res.headers["content-length"]);
          let got = 0;
          res.on("data", (chunk: Buffer) => {
            got += chunk.length;
            if (got >= length) {
              req.destroy();
              resolve(got);
            }
          });
        });
        req.on("error", (err) => (err.message === "socket hang up" ? undefined : reject(err)));
      });
      expect(received).toBe(300_000);
      await waitFor(async () => seen.length === 1, 5_000, "the request told");
      expect(seen).toEqual([{ method: "GET", key: `/${NAR}`, status: 200 }]);
    } finally {
      server.close();
    }
  });

  it("lets go of a client that stops reading a NAR midway, and of connections that send nothing", async () => {
    const big = `nar/${"2".repeat(52)}.nar.zst`;
    await new FsStore(dir).put(big, Buffer.alloc(48 * 1024 * 1024, 9));
    const seen: { key: string; status: number }[] = [];
    const server = createCacheServer({
      store: new FsStore(dir),
      idleTimeoutMs: 500,
      onRequest: (entry) => seen.push(entry),
    });
    const url = new URL(await listen(server));
    const connections = () =>
      new Promise<number>((resolve, reject) =>
        server.getConnections((err, n) => (err ? reject(err) : resolve(n))),
      );
    try {
      // Three clients ask for the NAR and never read past what the kernel buffers; two connect
      // and send nothing.
      const clients = Array.from({ length: 5 }, (_, i) => {
        const socket = connect(Number(url.port), url.hostname);
        socket.on("error", () => {});
        socket.pause();
        if (i < 3) socket.write(`GET /${big} HTTP/1.1\r\nHost: x\r\n\r\n`);
        return socket;
      });
      await waitFor(async () => (await connections()) === 5, 10_000, "5 connections");
      await waitFor(async () => (await connections()) === 0, 20_000, "no connection left");
      for (const c of clients) c.destroy();
      // Each stalled answer is told as the store's stream cut short (once its pipeline has
      // ended, which may come after the connection is gone).
      const told = () => seen.filter((e) => e.key === `/${big}`).map((e) => e.status);
      await waitFor(async () => told().length === 3, 10_000, "three answers told");
      expect(told()).toEqual([502, 502, 502]);
    } finally {
      server.close();
    }
  }, 40_000);
});

describe("cache server's NAR streams, at most maxNarStreams at once", () => {
  const BIG = `nar/${"5".repeat(52)}.nar.zst`;
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "nixship-serve-slots-"));
    const store = new FsStore(dir);
    await store.put(NARINFO, Buffer.from(NARINFO_TEXT));
    await store.put(NAR, Buffer.alloc(300_000, 7));
    await store.put(DELTA_NAR, Buffer.from("delta NAR"));
    // Far more than the kernel buffers for a client that does not read.
    await store.put(BIG, Buffer.alloc(48 * 1024 * 1024, 9));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("answers narinfos and HEADs while stalled clients hold every stream; the next NAR waits for one to leave", async () => {
    const gets = watchNarGets(new FsStore(dir));
    const server = createCacheServer({ store: gets.store, maxNarStreams: 2 });
    const url = new URL(await listen(server));
    const stalled: Socket[] = [];
    try {
      stalled.push(...(await stallTwo(server, url, BIG)));
      const info = await fetch(`${url.origin}/${NARINFO}`);
      expect(info.status).toBe(200);
      expect(await info.text()).toBe(NARINFO_SERVED);
      const head = await fetch(`${url.origin}/${BIG}`, { method: "HEAD" });
      expect(head.status).toBe(200);
      const thirdAsked = requestsSeen(server, 1);
      const third = fetch(`${url.origin}/${NAR}`);
      await thirdAsked;
      // It waits its turn: the store has not been asked for it.
      expect(gets.called()).toBe(2);
      stalled[0]?.destroy();
      const nar = await third;
      expect(nar.status).toBe(200);
      expect(Buffer.from(await nar.arrayBuffer()).equals(Buffer.alloc(300_000, 7))).toBe(true);
      expect(gets.called()).toBe(3);
    } finally {
      for (const socket of stalled) socket.destroy();
      await closeCacheServer(server);
    }
  }, 60_000);

  it("answers a NAR request that waited past its deadline with a 503 (Nix retries it), and tells onRequest why", async () => {
    const seen: ServedRequest[] = [];
    const server = createCacheServer({
      store: new FsStore(dir),
      maxNarStreams: 2,
      narSlotWaitMs: 200,
      onRequest: (entry) => seen.push(entry),
    });
    const url = new URL(await listen(server));
    const stalled: Socket[] = [];
    try {
      stalled.push(...(await stallTwo(server, url, BIG)));
      const busy = await fetch(`${url.origin}/${NAR}`);
      expect(busy.status).toBe(503);
      expect(busy.headers.get("retry-after")).toBe("1");
      expect(await busy.text()).toBe(
        "the cache is sending as many NARs as it may at once; try again\n",
      );
      expect(seen).toEqual([
        {
          method: "GET",
          key: `/${NAR}`,
          status: 503,
          error: "waited 200 ms for one of the 2 NAR streams it may send at once",
        },
      ]);
    } finally {
      for (const socket of stalled) socket.destroy();
      await closeCacheServer(server);
    }
  }, 60_000);

  it("gives back the turn of a NAR the store failed to get: after more failures than turns, NARs still stream", async () => {
    const broken = `nar/${"6".repeat(52)}.nar.zst`;
    const gets = watchNarGets(new FsStore(dir), { held: true, failing: broken });
    const server = createCacheServer({ store: gets.store, maxNarStreams: 2 });
    const url = new URL(await listen(server));
    try {
      for (let i = 0; i < 3; i++) {
        expect((await fetch(`${url.origin}/${broken}`)).status).toBe(502);
      }
      // Three at once: two stream and one waits, none of them kept out by a failure's turn.
      const allAsked = requestsSeen(server, 3);
      const nars = Array.from({ length: 3 }, () => fetch(`${url.origin}/${NAR}`));
      await allAsked;
      gets.letThrough();
      for (const nar of await Promise.all(nars)) {
        expect(nar.status).toBe(200);
        expect((await nar.arrayBuffer()).byteLength).toBe(300_000);
      }
      expect(gets.most()).toBe(2);
    } finally {
      await closeCacheServer(server);
    }
  }, 60_000);

  it("never has more NAR gets open in the store at once than it may stream", async () => {
    const gets = watchNarGets(new FsStore(dir), { held: true });
    const server = createCacheServer({ store: gets.store, maxNarStreams: 2 });
    const url = new URL(await listen(server));
    try {
      const allAsked = requestsSeen(server, 6);
      const keys = [NAR, DELTA_NAR, NAR, DELTA_NAR, NAR, DELTA_NAR];
      const answers = keys.map((key) => fetch(`${url.origin}/${key}`));
      await allAsked;
      gets.letThrough();
      const lengths = await Promise.all(
        answers.map(async (answer) => {
          const res = await answer;
          expect(res.status).toBe(200);
          return (await res.arrayBuffer()).byteLength;
        }),
      );
      expect(lengths).toEqual(keys.map((key) => (key === NAR ? 300_000 : "delta NAR".length)));
      expect(gets.called()).toBe(6);
      expect(gets.most()).toBe(2);
    } finally {
      await closeCacheServer(server);
    }
  }, 60_000);
});

/** A client that asks for `key` and reads no further than the kernel buffers. */
function stallOn(url: URL, key: string): Socket {
  const socket = connect(Number(url.port), url.hostname);
  socket.on("error", () => {});
  socket.pause();
  socket.write(`GET /${key} HTTP/1.1\r\nHost: x\r\n\r\n`);
  return socket;
}

/**
 * Resolves once `server` has been sent `n` more requests. Its own handler runs first: by then
 * each has taken its turn to stream, or its place in line, or asked the store.
 */
/** Two clients that ask for `key` and stop reading, once the server has both requests. */
async function stallTwo(server: Server, url: URL, key: string): Promise<Socket[]> {
  const bothAsked = requestsSeen(server, 2);
  const sockets = [stallOn(url, key), stallOn(url, key)];
  await bothAsked;
  return sockets;
}

function requestsSeen(server: Server, n: number): Promise<void> {
  let seen = 0;
  return new Promise((resolve) => {
    const count = () => {
      seen++;
      if (seen < n) return;
      server.off("request", count);
      resolve();
    };
    server.on("request", count);
  });
}

/**
 * `inner` with its gets of NARs watched: how many were called, and the most open at once (from
 * the call until the body closes, as an S3 GET holds its socket). With `held`, each waits for
 * letThrough(); the get of `failing` rejects.
 */
function watchNarGets(
  inner: ObjectStore,
  options: { readonly held?: boolean; readonly failing?: string } = {},
): {
  readonly store: ObjectStore;
  readonly called: () => number;
  readonly most: () => number;
  readonly letThrough: () => void;
} {
  let called = 0;
  let open = 0;
  let most = 0;
  let letThrough = () => {};
  const gate = options.held
    ? new Promise<void>((resolve) => {
        letThrough = resolve;
      })
    : Promise.resolve();
  const getNar = async (key: string) => {
    if (key === options.failing) throw new Error("the store failed");
    await gate;
    return await inner.get(key);
  };
  const get = async (key: string) => {
    if (key.endsWith(".narinfo") || key === "nix-cache-info") return inner.get(key);
    called++;
    open++;
    most = Math.max(most, open);
    const got = await getNar(key).catch((err: unknown) => {
      open--;
      throw err;
    });
    if (got === undefined) open--;
    else got.body.once("close", () => open--);
    return got;
  };
  return {
    store: wrapStore(inner, { get: get as ObjectStore["get"] }),
    called: () => called,
    most: () => most,
    letThrough: () => letThrough(),
  };
}

/** Polls `ok` every 50 ms until it holds; fails naming `what` after `ms`. */
async function waitFor(ok: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const until = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > until) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("logServerFailures", () => {
  it("writes each failure the client was not told of as one line, and nothing for the rest", () => {
    const lines: string[] = [];
    const log = logServerFailures((line) => lines.push(line), "agent: ");
    log({ method: "GET", key: "/x.narinfo", status: 200 });
    log({ method: "GET", key: "/nar/a\u001b[2J.nar", status: 502, error: "cut" });
    log({ method: "GET", key: "/b.narinfo", status: 404, error: "URL 'x\u001b]0;owned\u0007'" });
    expect(lines).toEqual([
      "agent: GET /nar/a\ufffd[2J.nar: 502: cut\n",
      "agent: GET /b.narinfo: 404: URL 'x\ufffd]0;owned\ufffd'\n",
    ]);
  });
});
