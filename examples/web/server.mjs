// The example web service: a tiny HTTP server on 0.0.0.0:80 that reports which example system
// runs it. Run as `node server.mjs SYSTEM`, where SYSTEM is the toplevel store path; its
// settings come from SYSTEM/etc/example-web.json. As it starts it reads its secret token,
// /run/keys/web-token, when the host has one (nixship installs secrets before the switch), and
// serves only the token's SHA-256 at /secret, never the token.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";

const log = (message) => console.log(`${new Date().toISOString()} example-web: ${message}`);

const system = process.argv[2];
if (!system) {
  log("usage: node server.mjs SYSTEM");
  process.exit(2);
}
let config;
try {
  config = JSON.parse(readFileSync(`${system}/etc/example-web.json`, "utf8"));
} catch (err) {
  log(`cannot read the configuration of ${system}: ${err.message}`);
  process.exit(1);
}
const { name, version, health, start } = config;
if (start !== "ok") {
  // web-failing: the stand-in for a unit that fails as it starts.
  log(`${name} (${system}) failed to start: its configuration says start=${start}`);
  process.exit(1);
}

// Read once, as a service reads its credentials when it starts.
let tokenDigest = null;
try {
  tokenDigest = createHash("sha256").update(readFileSync("/run/keys/web-token")).digest("hex");
} catch (err) {
  if (err.code !== "ENOENT") log(`cannot read /run/keys/web-token: ${err.code ?? err.message}`);
}

const routes = {
  "/secret": () => [200, "application/json", `${JSON.stringify({ sha256: tokenDigest })}\n`],
  "/": () => [200, "text/plain", `example web system ${name}\n`],
  "/version": () => [200, "application/json", `${JSON.stringify({ name, version, system })}\n`],
  "/health": () =>
    health === "ok" ? [200, "text/plain", "ok\n"] : [500, "text/plain", "unhealthy\n"],
};

const server = createServer((req, res) => {
  const path = new URL(req.url ?? "/", "http://localhost").pathname;
  const route = req.method === "GET" || req.method === "HEAD" ? routes[path] : undefined;
  const [status, type, body] = route ? route() : [404, "text/plain", "not found\n"];
  res.writeHead(status, { "content-type": `${type}; charset=utf-8`, connection: "close" });
  res.end(body);
});
server.on("error", (err) => {
  log(`${name} cannot serve: ${err.message}`);
  process.exit(1);
});
server.listen(80, "0.0.0.0", () => log(`${name} (${system}) listening on 0.0.0.0:80`));

// Detached from the session that started it: a hangup is not a reason to stop.
process.on("SIGHUP", () => {});
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    log(`${name} stopping on ${signal}`);
    process.exit(0);
  });
}
