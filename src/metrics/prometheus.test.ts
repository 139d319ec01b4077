// The Prometheus client's reading of answers (pure), and its bounds over HTTP against a small
// local server standing in for a misbehaving one (the lab tests meet a real Prometheus).
import type { IncomingMessage, ServerResponse } from "node:http";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterEach, describe, expect, it } from "vitest";
import { type LocalServer, serveLocal } from "../../support/local-http.js";
import { ANSWER_LIMIT, answerOf, prometheusClient, QUERY_ATTEMPTS } from "./prometheus.js";

const vector = (...values: string[]) =>
  JSON.stringify({
    status: "success",
    data: { resultType: "vector", result: values.map((v) => ({ metric: {}, value: [1, v] })) },
  });

describe("answerOf", () => {
  it("reads one series' value, or a scalar", () => {
    expect(answerOf(200, vector("0.25"), "e")).toEqual({ value: 0.25 });
    expect(
      answerOf(
        200,
        JSON.stringify({ status: "success", data: { resultType: "scalar", result: [1, "3"] } }),
        "e",
      ),
    ).toEqual({ value: 3 });
  });

  it("takes an answer with warnings (partial data) for no value, saying them", () => {
    const partial = JSON.stringify({
      ...JSON.parse(vector("0.01")),
      warnings: ["remote store eu-1 did not answer: context deadline exceeded"],
    });
    expect(answerOf(200, partial, "e")).toEqual({
      value: null,
      why: "Prometheus answered with warnings, so its value may rest on partial data (remote store eu-1 did not answer: context deadline exceeded)",
    });
    // An empty list is no warning.
    expect(
      answerOf(200, JSON.stringify({ ...JSON.parse(vector("2")), warnings: [] }), "e"),
    ).toEqual({
      value: 2,
    });
    // Warnings not in a list (no Prometheus sends them so; a proxy might) are warnings still.
    expect(
      answerOf(200, JSON.stringify({ ...JSON.parse(vector("0")), warnings: "store down" }), "e"),
    ).toEqual({
      value: null,
      why: "Prometheus answered with warnings, so its value may rest on partial data (store down)",
    });
  });

  it("says why there is no value: no series, several, NaN, a refused query, no JSON", () => {
    // Nothing measured (a query's labels, or the scraping, to look at), apart from the
    // answers at fault themselves.
    expect(answerOf(200, vector(), "e")).toEqual({
      value: null,
      why: "the query answered no series",
      nothingMeasured: true,
    });
    expect(answerOf(200, vector("NaN"), "e")).toMatchObject({ nothingMeasured: true });
    expect(answerOf(200, vector("1", "2"), "e")).not.toHaveProperty("nothingMeasured");
    expect(answerOf(200, vector("1", "2"), "e")).toMatchObject({
      value: null,
      why: expect.stringMatching(/answered 2 series; .*aggregate it/),
    });
    expect(answerOf(200, vector("NaN"), "e")).toMatchObject({ value: null, why: /NaN/ });
    // A vector that is not Prometheus' shape says what it is, not "no series" or a TypeError.
    const malformed = (result: unknown) =>
      JSON.stringify({ status: "success", data: { resultType: "vector", result } });
    expect(answerOf(200, malformed({ oops: 1 }), "e")).toEqual({
      value: null,
      why: "the answer's data.result is not a list of series (it is an object): not Prometheus' own answer",
    });
    expect(answerOf(200, malformed([null]), "e")).toEqual({
      value: null,
      why: "the answer's series is not an object (it is null): not Prometheus' own answer",
    });
    // Not numbers as Prometheus writes them (JavaScript would read 16 and 0).
    for (const odd of ["0x10", "", "1_000", " 1"]) {
      expect(answerOf(200, vector(odd), "e")).toEqual({
        value: null,
        why: `the answer's value ${JSON.stringify(odd)} is not a number`,
      });
    }
    expect(
      answerOf(
        400,
        JSON.stringify({ status: "error", errorType: "bad_data", error: "parse error" }),
        "e",
      ),
    ).toEqual({ value: null, why: "Prometheus refused the query (bad_data: parse error)" });
    expect(answerOf(502, "<html>bad gateway</html>", "e")).toMatchObject({
      value: null,
      why: "e answered 502 with no JSON: <html>bad gateway</html>",
    });
    expect(answerOf(401, "Unauthorized", "e")).toMatchObject({
      why: expect.stringContaining("check prometheus.bearerTokenFile"),
    });
    expect(answerOf(200, JSON.stringify({ hello: "world" }), "e")).toMatchObject({
      value: null,
      why: expect.stringContaining("no Prometheus answer"),
    });
  });

  it("shows what Prometheus said on one line, with no character that reorders it", () => {
    const error = JSON.stringify({
      status: "error",
      errorType: "execution",
      error: "bad \u202etxt.exe\r\nbake1: bake: passed",
    });
    expect(answerOf(422, error, "e")).toEqual({
      value: null,
      why: "Prometheus refused the query (execution: bad \ufffdtxt.exe\ufffd bake1: bake: passed)",
    });
  });

  it("reads +Inf and -Inf as values (x/0: every request failed is above any maximum)", () => {
    expect(answerOf(200, vector("+Inf"), "e")).toEqual({ value: Number.POSITIVE_INFINITY });
    expect(answerOf(200, vector("-Inf"), "e")).toEqual({ value: Number.NEGATIVE_INFINITY });
    expect(answerOf(200, vector("1e-3"), "e")).toEqual({ value: 0.001 });
    expect(answerOf(200, vector("-2.5E2"), "e")).toEqual({ value: -250 });
  });
});

describe("prometheusClient", () => {
  let server: LocalServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  async function serve(
    handle: (req: IncomingMessage, res: ServerResponse) => void,
  ): Promise<string> {
    server = await serveLocal(handle);
    return server.url;
  }

  it("posts the query with the bearer token, and never says the token", async () => {
    const token = "s3cret-token-never-shown";
    const seen: { auth?: string; body: string }[] = [];
    const url = await serve((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => {
        body += c.toString();
      });
      req.on("end", () => {
        seen.push({
          ...(req.headers.authorization ? { auth: req.headers.authorization } : {}),
          body,
        });
        res.writeHead(req.url === "/api/v1/query" ? 401 : 404, { "content-type": "text/plain" });
        // A proxy that echoes what it was sent, token and all.
        res.end(`unauthorized ${req.headers.authorization ?? ""}`);
      });
    });
    const answer = await prometheusClient({ url, token, timeout: 5 }).query('up{host="web1"}');
    expect(seen).toEqual([{ auth: `Bearer ${token}`, body: "query=up%7Bhost%3D%22web1%22%7D" }]);
    expect(answer.value).toBeNull();
    expect(JSON.stringify(answer)).not.toContain(token);
    // A refusal's page, whatever it echoes, is not shown.
    expect(answer).toEqual({
      value: null,
      why: `${url}/api/v1/query answered 401 (refused: check prometheus.bearerTokenFile, and that the token may query); its page, no JSON, is not shown`,
    });
  });

  it("masks the token in any page it shows: as is, URL-encoded, in base64 or base64url at any offset", async () => {
    const token = "s3cr3t-T0KEN/+=~!abc";
    const url = await serve((req, res) => {
      const header = req.headers.authorization ?? "";
      res.writeHead(502, { "content-type": "text/html" });
      res.end(
        [
          header,
          encodeURIComponent(header),
          Buffer.from(header).toString("base64"),
          Buffer.from(`Authorization: ${header}`).toString("base64url"),
          Buffer.from(`x${token}`).toString("base64"),
          Buffer.from(`xy${token}`).toString("base64url"),
        ].join(" | "),
      );
    });
    const answer = await prometheusClient({ url, token, timeout: 5 }).query("up");
    const why = answer.value === null ? answer.why : "";
    expect(why).toMatch(
      /^\S+ answered 502 with no JSON: Bearer \[token\] \| Bearer%20\[token\] \| /,
    );
    // What is left around each mask decodes to no four characters of the token.
    for (const segment of why.split(" | ").slice(2)) {
      for (const piece of segment.split("[token]")) {
        const decoded = Buffer.from(piece, "base64").toString("latin1");
        for (let at = 0; at + 4 <= token.length; at++) {
          expect(decoded, segment).not.toContain(token.slice(at, at + 4));
        }
      }
    }
    expect(why.match(/\[token\]/g)).toHaveLength(6);
  });

  it("masks the token a proxy echoes escaped, as JSON or HTML write it, in what it decodes to too", async () => {
    const token = "k3y&s3cret<tok>/ab+c'd\"e==";
    const escapes: Record<string, (t: string) => string> = {
      json: (t) => JSON.stringify(t).slice(1, -1),
      "json with \\/": (t) => JSON.stringify(t).slice(1, -1).replaceAll("/", "\\/"),
      "go's html-safe json": (t) =>
        JSON.stringify(t)
          .slice(1, -1)
          .replaceAll("<", "\\u003c")
          .replaceAll(">", "\\u003e")
          .replaceAll("&", "\\u0026"),
    };
    for (const [name, escaped] of Object.entries(escapes)) {
      const url = await serve((req, res) => {
        const echoed = escaped((req.headers.authorization ?? "").replace(/^Bearer /, ""));
        res.writeHead(200, { "content-type": "application/json" });
        res.end(
          `{"status":"error","errorType":"unauthorized","error":"token ${echoed} is not allowed"}`,
        );
      });
      const answer = await prometheusClient({ url, token, timeout: 5 }).query("up");
      expect(answer, name).toEqual({
        value: null,
        why: "Prometheus refused the query (unauthorized: token [token] is not allowed)",
      });
      await server?.close();
      server = undefined;
    }
    const url = await serve((req, res) => {
      const header = (req.headers.authorization ?? "")
        .replaceAll("&", "&amp;")
        .replaceAll("<", "&lt;")
        .replaceAll(">", "&gt;")
        .replaceAll('"', "&quot;")
        .replaceAll("'", "&#39;");
      res.writeHead(502, { "content-type": "text/html" });
      res.end(`<html><body>bad gateway for ${header}</body></html>`);
    });
    const answer = await prometheusClient({ url, token, timeout: 5 }).query("up");
    expect(answer).toMatchObject({ value: null, why: /bad gateway for Bearer \[token\]</ });
  });

  it("asks again after a busy answer or a connection cut, within its timeout", async () => {
    let asked = 0;
    const url = await serve((req, res) => {
      asked++;
      if (asked === 1) {
        res.writeHead(503, { "content-type": "text/plain" }).end("Service Unavailable");
      } else if (asked === 2) {
        req.socket.destroy();
      } else {
        res.writeHead(200, { "content-type": "application/json" }).end(vector("0.01"));
      }
    });
    expect(await prometheusClient({ url, timeout: 10 }).query("up")).toEqual({ value: 0.01 });
    expect(asked).toBe(3);
  });

  it("asks a refused or bad query once, and says how often it asked one that stayed busy", async () => {
    let asked = 0;
    let status = 400;
    const url = await serve((_req, res) => {
      asked++;
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify({ status: "error", errorType: "bad_data", error: "parse error" }));
    });
    const client = prometheusClient({ url, timeout: 10 });
    expect(await client.query("up{")).toEqual({
      value: null,
      why: "Prometheus refused the query (bad_data: parse error)",
    });
    expect(asked).toBe(1);
    asked = 0;
    status = 503;
    expect(await client.query("up")).toEqual({
      value: null,
      why: `Prometheus refused the query (bad_data: parse error) (asked ${QUERY_ATTEMPTS} times)`,
    });
    expect(asked).toBe(QUERY_ATTEMPTS);
  });

  it("masks the token before an echo of it is cut to be shown: no part of it is said", async () => {
    const token = "SeCrEtToKeN123abc";
    // "bad_data: ", the padding, " Bearer ": 16, 10 and 4 characters of the token within the 300 shown.
    for (const pad of [266, 272, 278]) {
      const url = await serve((req, res) => {
        res.writeHead(400, { "content-type": "application/json" });
        // An error that quotes the request, its Authorization header past the shown length.
        const error = `${"A".repeat(pad)} ${req.headers.authorization ?? ""} ${encodeURIComponent(token)}`;
        res.end(JSON.stringify({ status: "error", errorType: "bad_data", error }));
      });
      const answer = await prometheusClient({ url, token, timeout: 5 }).query("up");
      const said = JSON.stringify(answer);
      for (let cut = 4; cut <= token.length; cut++) {
        expect(said, `${pad}: ${cut}`).not.toContain(token.slice(0, cut));
      }
      expect(answer).toMatchObject({
        value: null,
        why: expect.stringContaining("Prometheus refused"),
      });
      await server?.close();
      server = undefined;
    }
  });

  it("takes no value from a success body under a status that is not 200 (a proxy's replay)", async () => {
    const url = await serve((_req, res) => {
      res.writeHead(500, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          status: "success",
          data: { resultType: "vector", result: [{ metric: {}, value: [1, "0.5"] }] },
        }),
      );
    });
    const answer = await prometheusClient({ url, timeout: 5 }).query("up");
    expect(answer).toEqual({
      value: null,
      why: `${url}/api/v1/query answered 500 with a success body: not Prometheus' own answer (a proxy's or a cache's?), so no value`,
    });
  });

  it("refuses a redirect, and says to name the address it points at", async () => {
    const url = await serve((_req, res) => {
      res.writeHead(302, { location: "http://127.0.0.1:1/elsewhere" });
      res.end();
    });
    const answer = await prometheusClient({ url, token: "t0k", timeout: 5 }).query("up");
    expect(answer).toMatchObject({
      value: null,
      why: expect.stringContaining("give prometheus.url as the address it redirects to"),
    });
  });

  it("gives up past its deadline and past its size limit", async () => {
    const url = await serve((req, res) => {
      if (req.url === "/slow/api/v1/query") return; // never answers
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        `{"status":"success","data":{"resultType":"vector","result":[${"0,".repeat(ANSWER_LIMIT)}0]}}`,
      );
    });
    expect(await prometheusClient({ url: `${url}/slow`, timeout: 1 }).query("up")).toEqual({
      value: null,
      why: `${url}/slow/api/v1/query did not answer within 1s`,
    });
    expect(await prometheusClient({ url, timeout: 5 }).query("up")).toEqual({
      value: null,
      why: `${url}/api/v1/query answered more than ${ANSWER_LIMIT} bytes`,
    });
  });

  it("gives up past its deadline when the body stalls after the headers, however often memory is collected", async () => {
    // Collections while the body is awaited: the request fetch made may go with one of them.
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const url = await serve((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.write('{"status":'); // and nothing more
    });
    const collecting = setInterval(gc, 100);
    try {
      expect(await prometheusClient({ url, timeout: 1 }).query("up")).toEqual({
        value: null,
        why: `${url}/api/v1/query did not answer within 1s`,
      });
    } finally {
      clearInterval(collecting);
    }
  });

  it("says where it could not connect", async () => {
    // A port that was just let go: nothing listens there.
    const url = await serve(() => {});
    await server?.close();
    server = undefined;
    const answer = await prometheusClient({ url, timeout: 5 }).query("up");
    expect(answer).toMatchObject({
      value: null,
      why: expect.stringMatching(new RegExp(`^${url}/api/v1/query: .*ECONNREFUSED`)),
    });
  });
});
