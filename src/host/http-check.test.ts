// httpCheck against a real HTTP server (node:http): what a failed check says of the answer it
// got, its status and the start of its body, bounded and without control characters.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { httpCheck } from "./http-check.js";

let server: Server;
let base: string;

/** Requests each route had. */
const hits = new Map<string, number>();

const routes: Record<string, (res: import("node:http").ServerResponse) => void> = {
  "/ok": (res) => res.writeHead(200).end("fine\n"),
  "/counted": (res) => res.writeHead(503).end("starting\n"),
  "/not-ready": (res) => res.writeHead(503).end("database not ready\n"),
  "/empty": (res) => res.writeHead(500).end(),
  "/moved": (res) => res.writeHead(302, { location: "/ok" }).end("see /ok\n"),
  // A service that answers, but only after 5.5 s.
  "/slow": (res) => {
    setTimeout(() => res.writeHead(200).end("fine at last\n"), 5500);
  },
  // A service that takes the request and never answers.
  "/silent": () => {},
  "/lines": (res) => res.writeHead(500).end('first "line"\nsecond\tline\n'),
  // A body that starts and then never goes on: the deadline ends the read, what came is shown.
  "/stalled": (res) => {
    res.writeHead(503);
    res.write("warming up");
  },
  // Control characters first, then a body that never ends: only its start may be read.
  "/endless": (res) => {
    res.writeHead(502);
    res.write("\u001b[31mred\u001b[0m \u009b2J \u0007");
    const more = () => {
      while (!res.destroyed && res.write("x".repeat(16384))) {}
    };
    res.on("drain", more);
    more();
  },
};

beforeAll(async () => {
  server = createServer((req, res) => {
    hits.set(req.url ?? "", (hits.get(req.url ?? "") ?? 0) + 1);
    const route = routes[req.url ?? ""];
    if (route) route(res);
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

describe("httpCheck", () => {
  it("with retry false, takes the first answer as final: one request, whatever time is left", async () => {
    const url = `${base}/counted`;
    expect(await httpCheck(url, 200, 30, undefined, { retry: false })).toEqual({
      ok: false,
      url,
      status: 503,
      message: `${url}: expected status 200, got status 503: "starting" (retry false: the first answer counts)`,
    });
    expect(hits.get("/counted")).toBe(1);
    // A refused connection, too: a port just closed.
    const gone = createServer();
    await new Promise<void>((resolve) => gone.listen(0, "127.0.0.1", resolve));
    const port = (gone.address() as AddressInfo).port;
    await new Promise((resolve) => gone.close(resolve));
    const refused = await httpCheck(`http://127.0.0.1:${port}/`, 200, 30, undefined, {
      retry: false,
    });
    expect(refused.message).toMatch(/got no answer \(.*ECONNREFUSED.*\) \(retry false/);
  });

  it("passes on the expected status", async () => {
    expect(await httpCheck(`${base}/ok`, 200, 1)).toEqual({
      ok: true,
      url: `${base}/ok`,
      status: 200,
      message: `${base}/ok answered 200`,
    });
  });

  it("a failed check reports the last status and the start of the body", async () => {
    const url = `${base}/not-ready`;
    expect(await httpCheck(url, 200, 1)).toEqual({
      ok: false,
      url,
      status: 503,
      message: `${url}: expected status 200 within 1s, got status 503: "database not ready"`,
    });
  });

  it("follows no redirect, and says so, naming where it leads", async () => {
    const url = `${base}/moved`;
    const okBefore = hits.get("/ok") ?? 0;
    expect(await httpCheck(url, 200, 1, undefined, { retry: false })).toEqual({
      ok: false,
      url,
      status: 302,
      message: `${url}: expected status 200, got status 302: redirect to "/ok", not followed; "see /ok" (retry false: the first answer counts)`,
    });
    expect(hits.get("/ok") ?? 0).toBe(okBefore);
  });

  it("shows a body of several lines on one line, quoted, and an empty body not at all", async () => {
    const lines = await httpCheck(`${base}/lines`, 200, 1);
    expect(lines.message).toBe(
      `${base}/lines: expected status 200 within 1s, got status 500: "first \\"line\\"\\nsecond\\tline"`,
    );
    const empty = await httpCheck(`${base}/empty`, 200, 1);
    expect(empty.message).toBe(`${base}/empty: expected status 200 within 1s, got status 500`);
  });

  it("reads only the start of an endless body: 200 characters shown, control characters replaced", async () => {
    const url = `${base}/endless`;
    const result = await httpCheck(url, 200, 1);
    expect(result).toMatchObject({ ok: false, status: 502 });
    const prefix = `${url}: expected status 200 within 1s, got status 502: "`;
    expect(result.message.startsWith(prefix)).toBe(true);
    const shown = result.message.slice(prefix.length);
    // 200 characters of the body, the closing quote, and "…": there is more.
    expect(shown).toBe(`${"\ufffd[31mred\ufffd[0m \ufffd2J \ufffd".padEnd(200, "x")}"…`);
  });

  it("over https, checks the server's certificate: one no CA vouches for is no answer", async () => {
    // A certificate of its own (openssl, one day): the deployer's trust store has no CA for it.
    const dir = mkdtempSync(join(tmpdir(), "nixship-https-check-"));
    try {
      execFileSync(
        "openssl",
        [
          ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"],
          ...["-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem")],
          ...["-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        ],
        { stdio: "ignore" },
      );
      let asked = 0;
      const tls = createHttpsServer(
        { key: readFileSync(join(dir, "key.pem")), cert: readFileSync(join(dir, "cert.pem")) },
        (_req, res) => {
          asked++;
          res.writeHead(200).end("fine\n");
        },
      );
      await new Promise<void>((resolve) => tls.listen(0, "127.0.0.1", resolve));
      const url = `https://127.0.0.1:${(tls.address() as AddressInfo).port}/ok`;
      try {
        const result = await httpCheck(url, 200, 1, undefined, { retry: false });
        expect(result).toMatchObject({ ok: false, status: undefined });
        expect(result.message).toMatch(/got no answer \(.*certificate.*\)/);
        expect(asked).toBe(0);
      } finally {
        tls.closeAllConnections();
        await new Promise((resolve) => tls.close(resolve));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a body that stalls is read until the deadline, and what came is shown", async () => {
    const url = `${base}/stalled`;
    const result = await httpCheck(url, 200, 1, undefined, { retry: false });
    expect(result).toEqual({
      ok: false,
      url,
      status: 503,
      message: `${url}: expected status 200, got status 503: "warming up" (retry false: the first answer counts)`,
    });
  });

  it("a service that answers within the check's timeout passes, however slowly", async () => {
    const result = await httpCheck(`${base}/slow`, 200, 10, undefined, { retry: false });
    expect(result).toMatchObject({ ok: true, status: 200 });
  }, 15_000);

  it("a service that never answers fails at the check's timeout, garbage collections or not", async () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const collecting = setInterval(gc, 20);
    try {
      const url = `${base}/silent`;
      const result = await httpCheck(url, 200, 2);
      expect(result).toMatchObject({ ok: false, status: undefined });
      expect(result.message).toMatch(/^.*\/silent: expected status 200 within 2s, got no answer/);
    } finally {
      clearInterval(collecting);
    }
  }, 15_000);

  it("a server that never answers is reported as no answer", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const result = await httpCheck(`http://127.0.0.1:${port}/health`, 200, 1);
    expect(result).toMatchObject({ ok: false, status: undefined });
    expect(result.message).toMatch(/got no answer \(.*ECONNREFUSED.*\)$/);
  });
});
