// The deployer's substituters asked once each, against a real local HTTP server: one whose URL
// carries a user and password is asked with them as Nix's curl sends them (Basic), and said
// without them in every check's text and --json; a file:// URL of another host is judged, not
// fatal.
import { once } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { judgeSubstituters, probeSubstituters } from "./substituters.js";

const PASSWORD = "s3cr3t-T0ken";
let server: Server;
let port: number;
const asked: { path: string; auth: string | undefined }[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    asked.push({ path: req.url ?? "", auth: req.headers.authorization });
    if (req.url?.startsWith("/moved/")) {
      res.writeHead(302, { location: "/elsewhere/nix-cache-info" }).end();
      return;
    }
    const good = `Basic ${Buffer.from(`bob:${PASSWORD}`).toString("base64")}`;
    if (req.headers.authorization !== good) {
      res.writeHead(401).end();
      return;
    }
    res.writeHead(200, { "content-type": "text/x-nix-cache-info" }).end("StoreDir: /nix/store\n");
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  port = (server.address() as AddressInfo).port;
});
afterAll(() => {
  server.close();
});

describe("substituters with credentials in their URL", () => {
  it("are asked with them as Basic authorization, and shown without them", async () => {
    const url = `http://bob:${PASSWORD}@127.0.0.1:${port}/?priority=40`;
    const reach = await probeSubstituters([url]);
    expect(reach).toEqual([{ url: `http://127.0.0.1:${port}/?priority=40`, result: "ok" }]);
    expect(asked.at(-1)).toEqual({
      path: "/nix-cache-info",
      auth: `Basic ${Buffer.from(`bob:${PASSWORD}`).toString("base64")}`,
    });
    const checks = judgeSubstituters(reach);
    expect(checks[0]).toMatchObject({ status: "ok" });
    expect(JSON.stringify(checks)).not.toContain(PASSWORD);
  });

  it("one that asks for credentials (a wrong password, or none: Nix's netrc-file may have them) is not judged, and never said with the password", async () => {
    const reach = await probeSubstituters([
      `http://bob:wrong-${PASSWORD}@127.0.0.1:${port}`,
      `http://127.0.0.1:${port}/`,
    ]);
    expect(reach).toEqual([
      { url: `http://127.0.0.1:${port}`, result: "guarded", status: 401 },
      { url: `http://127.0.0.1:${port}/`, result: "guarded", status: 401 },
    ]);
    const checks = judgeSubstituters(reach);
    expect(checks).toEqual([
      expect.objectContaining({
        status: "ok",
        detail: `ask for credentials, not judged (Nix may give them from its netrc-file): http://127.0.0.1:${port} (HTTP 401), http://127.0.0.1:${port}/ (HTTP 401)`,
      }),
    ]);
    expect(JSON.stringify(checks)).not.toContain(PASSWORD);
  });

  it("one that redirects is taken as Nix's curl takes it: it answers", async () => {
    expect(await probeSubstituters([`http://127.0.0.1:${port}/moved`])).toEqual([
      { url: `http://127.0.0.1:${port}/moved`, result: "ok" },
    ]);
  });

  it("a file:// URL of another host is no cache here, and the others are still asked", async () => {
    const reach = await probeSubstituters([
      "file://otherhost/srv/cache",
      `http://bob:${PASSWORD}@127.0.0.1:${port}`,
    ]);
    expect(reach.map((r) => r.result)).toEqual(["not-a-cache", "ok"]);
  });
});
