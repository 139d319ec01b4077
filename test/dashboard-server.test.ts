import { once } from "node:events";
// The dashboard's server against a real directory store: pages, the JSON API in the
// shapes the CLI prints, /metrics parsed by a Prometheus text parser, token auth, read-only,
// bounded event streams and requests per client, and a poll that costs LISTs when nothing
// changed. The browser's side is dashboard-browser.test.ts.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import type { Server } from "node:http";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { closeCacheServer } from "../src/cache/serve.js";
import { RequestBuckets } from "../src/dashboard/limits.js";
import { FleetPoller } from "../src/dashboard/poller.js";
import {
  createDashboardApp,
  listenDashboard,
  MAX_UNSENT,
  RENDERED_CHARACTERS,
  RENDERED_PAGES,
  RenderedPages,
} from "../src/dashboard/server.js";
import { loadFleet } from "../src/fleet/load-fleet.js";
import { writeStatus } from "../src/status/status-store.js";
import type { ObjectStore } from "../src/store/object-store.js";
import { openStore } from "../src/store/url.js";
import { guardConnections } from "../src/util/server-connections.js";
import { nixship } from "../support/cli.js";
import {
  type DashboardFleet,
  hostRecord,
  publishAgentRelease,
  SYSTEM_HAND,
  SYSTEM_V1,
  writeDashboardFleet,
  writeRolloutRecord,
  writeSsmRecords,
} from "../support/dashboard-store.js";

const DELTA = {
  paths: 12,
  bytes: 40_000,
  narBytes: 900_000,
  wholePaths: 3,
  wholeNarBytes: 5_000,
  failed: 0,
};
const PLANTED = `<script>window.__planted = 1</script><img src=x onerror="window.__planted = 2">`;
let work: string;
let store: ObjectStore;
let storeUrl: string;
let fleet: DashboardFleet;
let poller: FleetPoller;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-dashboard-"));
  storeUrl = `file://${join(work, "cache")}`;
  store = await openStore(storeUrl);
  fleet = await writeDashboardFleet(work, storeUrl, { ssm: 4, agent: 2 });
  await writeSsmRecords(store, 4);
  // s1 failed (and went back) with a planted error; s2 drifts (runs a system nixship never left there).
  await writeStatus(
    store,
    hostRecord("s1", "ssm", {
      state: "failed",
      phase: "switch",
      error: PLANTED,
      rolledBack: true,
      current: SYSTEM_V1,
    }),
  );
  await writeStatus(store, hostRecord("s2", "ssm", { current: SYSTEM_HAND }));
  // s3 and a0 got the systems they run by delta.
  await writeStatus(store, hostRecord("s3", "ssm", { delta: DELTA }));
  const seq = await publishAgentRelease(store, fleet, 2);
  await writeStatus(store, hostRecord("a0", "agent", { channel: "prod", seq, delta: DELTA }));
  await writeRolloutRecord(store, ["s0", "s1", "s2", "s3"]);
  poller = new FleetPoller(await loadFleet(fleet.fleetFile), store, { interval: 200 });
  const first = await poller.pollOnce();
  expect(first.error).toBeUndefined();
});

afterAll(async () => {
  await poller?.stop();
  await store?.close();
  await rm(work, { recursive: true, force: true });
});

/** Whether `value` is the body of /api/hosts: `{ hosts: [rows] }`. */
const isHostsBody = (value: unknown): boolean =>
  typeof value === "object" &&
  value !== null &&
  Object.keys(value).length === 1 &&
  Array.isArray((value as { hosts?: unknown }).hosts);

const appOf = (options: Partial<Parameters<typeof createDashboardApp>[0]> = {}) =>
  createDashboardApp({ poller, fleetName: "test-fleet", ...options }).app;

describe("pages", () => {
  it("the hosts page lists every host with its state and system, store text escaped", async () => {
    const res = await appOf().request("/");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-security-policy")).toContain("script-src 'self'");
    const page = await res.text();
    for (const host of ["s0", "s1", "s2", "s3", "a0", "a1"]) {
      expect(page).toContain(`data-host="${host}"`);
    }
    expect(page).toMatch(/<tr class="rolled-back" data-host="s1">/);
    expect(page).toMatch(/<tr class="drifting" data-host="s2">/);
    expect(page).toMatch(
      /<tr class="in-step" data-host="s0">[\s\S]*?example-web-system-v2 <code>0v2bpy0w<\/code>/,
    );
    expect(page).toMatch(/<tr class="unreported" data-host="a1">/);
    expect(page).not.toContain("<script>window.__planted");
    expect(page).not.toContain("<img src=x");
    expect(page).toContain("&lt;script&gt;window.__planted = 1&lt;/script&gt;");
  });

  it("filters by tag, state and name", async () => {
    const app = appOf();
    const hostsOf = async (query: string) =>
      [
        ...(await (await app.request(`/?${query}`)).text()).matchAll(
          /<tr class="[^"]+" data-host="([^"]+)">/g,
        ),
      ].map((m) => m[1]);
    expect(await hostsOf("tag=web")).toEqual(["s0", "s2"]);
    expect(await hostsOf("state=drifting")).toEqual(["s2"]);
    expect(await hostsOf("q=A")).toEqual(["a0", "a1"]);
    expect(await hostsOf("tag=db&state=rolled-back")).toEqual(["s1"]);
    expect(await hostsOf("state=failed")).toEqual([]);
  });

  it("releases, the rollout and a host page", async () => {
    const app = appOf();
    const releases = await (await app.request("/releases")).text();
    expect(releases).toMatch(/Channel prod/);
    expect(releases).toMatch(
      /<a href="\/releases\/prod\/1">1<\/a> <span class="badge in-step">current<\/span>/,
    );
    // It names two hosts: a0 reported success for it (its record left a marker), a1 nothing.
    expect(releases).toMatch(/<td>2<\/td>\s*<td>1<\/td><td>0<\/td><td>1<\/td>/);
    const release = await (await app.request("/releases/prod/1")).text();
    expect(release).toContain("Release 1 of channel prod");
    expect(release).toMatch(/href="\/hosts\/a1"/);
    const rollout = await (await app.request("/rollout")).text();
    expect(rollout).toMatch(/Wave 1 \(canary\)[\s\S]*data-host="s0"[\s\S]*Wave 2 \(main\)/);
    const host = await (await app.request("/hosts/s1")).text();
    expect(host).toContain("Host s1");
    expect(host).toContain("&lt;script&gt;");
    expect(host).not.toContain("<script>window");
    expect((await app.request("/hosts/nope")).status).toBe(404);
    // The icon every browser asks for: none, and no error in its console.
    const icon = await app.request("/favicon.ico");
    expect(icon.status).toBe(204);
    expect(await icon.text()).toBe("");
    // How the host got the system it runs.
    expect(await (await app.request("/hosts/s3")).text()).toContain(
      "<dt>Fetched</dt><dd>12 paths by delta (40.0 kB for 900.0 kB of NARs), 3 whole</dd>",
    );
  });
});

describe("JSON API", () => {
  it("/api/hosts is what `status --stored --json` prints for the same store", async () => {
    const api = (await (await appOf().request("/api/hosts")).json()) as { hosts: unknown[] };
    const cli = await nixship(["status", "--stored", "--json", "--fleet", fleet.fleetFile]);
    expect(cli.stderr).toBe("");
    expect(api).toEqual(JSON.parse(cli.stdout));
    expect(api.hosts).toHaveLength(6);
  });

  it("/api/releases/CHANNEL is what `release list --json` prints but the store's location, with the board's trust", async () => {
    const { currentTrust, trust, ...api } = (await (
      await appOf().request("/api/releases/prod")
    ).json()) as { currentTrust: unknown; trust: unknown };
    expect(currentTrust).toEqual({ status: "trusted", key: "dash-release-1" });
    expect(trust).toEqual({ 1: { status: "trusted", key: "dash-release-1" } });
    const cli = await nixship([
      "release",
      "list",
      "--channel",
      "prod",
      "--store",
      storeUrl,
      "--json",
    ]);
    expect(cli.code, cli.stderr).toBe(0);
    // The store's location is the operator's alone (store-location.ts): no answer names it.
    const { store, ...listed } = JSON.parse(cli.stdout) as { store: string };
    expect(store).toBe(storeUrl);
    expect(api).toEqual(listed);
    // Asked again in the same poll, it reads nothing.
    const app = appOf();
    await app.request("/api/releases/prod");
    const before = { ...poller.requests };
    const again = (await (await app.request("/api/releases/prod")).json()) as object;
    expect(again).toMatchObject(api);
    expect(poller.requests).toEqual(before);
  });

  it("a bad channel name is 400 and an unknown channel 404, each with a message", async () => {
    const bad = await appOf().request("/api/releases/..%2Fetc");
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toMatch(
      /^channel name "\.\.\/etc" must match/,
    );
    const unknown = await appOf().request("/api/releases/staging");
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toEqual({ error: "no channel staging in the store" });
    expect((await appOf().request("/releases/..%2Fx/1")).status).toBe(404);
    expect((await appOf().request("/releases/prod/not-a-number")).status).toBe(404);
  });
});

describe("/metrics", () => {
  it("parses as Prometheus text, and its counts are the store's", async () => {
    const res = await appOf().request("/metrics");
    expect(res.headers.get("content-type")).toContain("text/plain");
    const families = parsePrometheusTextFormat(await res.text());
    const value = (name: string, labels: Record<string, string> = {}) => {
      const family = families.find((f) => f.name === name);
      const sample = family?.metrics.find((m) =>
        Object.entries(labels).every(([k, v]) => m.labels?.[k] === v),
      );
      return sample === undefined ? undefined : Number(sample.value);
    };
    expect(value("nixship_hosts", { state: "in-step", mode: "ssm" })).toBe(2);
    expect(value("nixship_hosts", { state: "rolled-back", mode: "ssm" })).toBe(1);
    expect(value("nixship_hosts", { state: "failed", mode: "ssm" })).toBe(0);
    expect(value("nixship_hosts", { state: "drifting", mode: "ssm" })).toBe(1);
    expect(value("nixship_hosts", { state: "unreported", mode: "agent" })).toBe(1);
    expect(value("nixship_hosts_drifting")).toBe(1);
    expect(value("nixship_channel_release_seq", { channel: "prod" })).toBe(1);
    const expiry = value("nixship_channel_release_expiry_seconds", { channel: "prod" }) ?? 0;
    expect(expiry).toBeGreaterThan(0);
    expect(value("nixship_rollout_state", { state: "succeeded" })).toBe(1);
    expect(value("nixship_rollout_hosts", { state: "confirmed" })).toBe(4);
    // What s3 and a0 fetched by delta, summed.
    expect(value("nixship_hosts_fetched_by_delta")).toBe(2);
    expect(value("nixship_fetched_paths", { by: "delta" })).toBe(24);
    expect(value("nixship_fetched_paths", { by: "whole" })).toBe(6);
    expect(value("nixship_fetched_bytes", { kind: "delta" })).toBe(80_000);
    expect(value("nixship_fetched_bytes", { kind: "delta_nar" })).toBe(1_800_000);
    expect(value("nixship_fetched_bytes", { kind: "whole_nar" })).toBe(10_000);
    const total = families
      .find((f) => f.name === "nixship_hosts")
      ?.metrics.reduce((sum, m) => sum + Number(m.value), 0);
    expect(total).toBe(6);
  });
});

describe("safety", () => {
  it("is read-only: anything but GET and HEAD is 405", async () => {
    for (const method of ["POST", "PUT", "DELETE", "PATCH"]) {
      const res = await appOf().request("/api/hosts", { method });
      expect(res.status, method).toBe(405);
    }
  });

  it("with a token, a request without it or with a wrong one is 401", async () => {
    const app = appOf({ token: "correct-horse-battery" });
    expect((await app.request("/api/hosts")).status).toBe(401);
    expect((await app.request("/metrics")).status).toBe(401);
    const wrong = await app.request("/", {
      headers: { authorization: "Bearer correct-horse-batterY" },
    });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get("www-authenticate")).toContain("Basic");
    const ok = await app.request("/api/hosts", {
      headers: { authorization: "Bearer correct-horse-battery" },
    });
    expect(ok.status).toBe(200);
    const basic = Buffer.from("me:correct-horse-battery").toString("base64");
    expect((await app.request("/", { headers: { authorization: `Basic ${basic}` } })).status).toBe(
      200,
    );
  });

  it("bounds the requests of one client", async () => {
    const app = appOf({ buckets: new RequestBuckets({ rate: 0.5, burst: 3 }) });
    const statuses = [];
    for (let i = 0; i < 5; i++) statuses.push((await app.request("/api/hosts")).status);
    expect(statuses).toEqual([200, 200, 200, 429, 429]);
    expect(
      Number((await app.request("/api/hosts")).headers.get("retry-after")),
    ).toBeGreaterThanOrEqual(1);
  });

  it("bounds the event streams, and tells an open one when the snapshot changes", async () => {
    const dashboard = createDashboardApp({ poller, fleetName: "t", maxEventStreams: 1 });
    const { server, url } = await listenDashboard(dashboard, "127.0.0.1", 0);
    const aborter = new AbortController();
    try {
      const first = await fetch(`${url}/api/events`, { signal: aborter.signal });
      expect(first.headers.get("content-type")).toContain("text/event-stream");
      const reader = (first.body as ReadableStream<Uint8Array>).getReader();
      const versions: number[] = [];
      const readEvents = (async () => {
        let text = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          text += Buffer.from(value).toString("utf8");
          for (const m of text.matchAll(/event: snapshot\ndata: (\d+)/g))
            versions.push(Number(m[1]));
          text = text.slice(text.lastIndexOf("\n\n") + 2);
        }
      })().catch(() => {});
      const second = await fetch(`${url}/api/events`);
      expect(second.status).toBe(503);
      await second.body?.cancel();
      const before = poller.snapshot?.version ?? 0;
      await writeStatus(store, hostRecord("s3", "ssm", { state: "applying", phase: "copy" }));
      await poller.pollOnce();
      await expect.poll(() => versions.at(-1), { timeout: 3000 }).toBe(before + 1);
      aborter.abort();
      await readEvents;
    } finally {
      aborter.abort();
      await closeCacheServer(server as Server);
    }
  });
});

describe("what the audit of the dashboard found", () => {
  it("refuses a client that has not read past MAX_UNSENT bytes of its answers", async () => {
    const dashboard = createDashboardApp({ poller, fleetName: "t" });
    const held = { unsent: MAX_UNSENT + 1 };
    dashboard.connections = { open: () => 1, shed: () => 0, unsent: () => held.unsent };
    const refused = await dashboard.app.request("/");
    expect(refused.status).toBe(429);
    expect(await refused.text()).toBe(
      "this client has not read the answers it asked for; read them first\n",
    );
    held.unsent = MAX_UNSENT;
    expect((await dashboard.app.request("/")).status).toBe(200);
  });

  it("closes a connection whose answer moves no byte for the idle timeout", async () => {
    // An event stream whose keep-alive comes only every 60 s, from a poller that does not poll
    // (the file's own tells streams of the snapshots its tests make): idle past 500 ms.
    const still = new FleetPoller(await loadFleet(fleet.fleetFile), store, { interval: 60_000 });
    await still.pollOnce();
    const dashboard = createDashboardApp({ poller: still, fleetName: "t", keepAlive: 60 });
    const { server, url } = await listenDashboard(dashboard, "127.0.0.1", 0, { idleTimeout: 500 });
    try {
      const { port } = new URL(url);
      const socket = connect(Number(port), "127.0.0.1");
      socket.on("error", () => {});
      await once(socket, "connect");
      // It reads what comes (and so sees the close), but the server sends nothing more.
      socket.resume();
      socket.write(`GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
      const started = Date.now();
      await once(socket, "close");
      expect(Date.now() - started).toBeLessThan(20_000);
    } finally {
      await closeCacheServer(server);
      await still.stop();
    }
  });

  it("counts the bytes of answers a client has not read", async () => {
    const server = createServer((_req, res) => res.end(Buffer.alloc(32 * 1024 * 1024, 1)));
    const guard = guardConnections(server);
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    try {
      const socket = connect((server.address() as AddressInfo).port, "127.0.0.1");
      socket.on("error", () => {});
      socket.pause();
      await once(socket, "connect");
      socket.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
      const until = Date.now() + 10_000;
      // 32 MiB does not fit in the kernel's buffers: the rest waits in the server's.
      while (guard.unsent("127.0.0.1") === 0 && Date.now() < until) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(guard.unsent("127.0.0.1")).toBeGreaterThan(1024 * 1024);
      expect(guard.unsent("127.0.0.2")).toBe(0);
      socket.destroy();
    } finally {
      await closeCacheServer(server);
    }
  });

  it("keeps the pages it rendered within RENDERED_PAGES and RENDERED_CHARACTERS", () => {
    const pages = new RenderedPages();
    for (let i = 0; i < RENDERED_PAGES + 5; i++) pages.set(`p${i}`, "x");
    expect(pages.get("p0")).toBeUndefined();
    expect(pages.get(`p${RENDERED_PAGES + 4}`)).toBe("x");
    const big = "y".repeat(RENDERED_CHARACTERS / 2);
    pages.set("big1", big);
    pages.set("big2", big);
    pages.set("big3", big);
    expect([pages.get("big1"), pages.get("big2") === big, pages.get("big3") === big]).toEqual([
      undefined,
      true,
      true,
    ]);
    pages.set("huge", "z".repeat(RENDERED_CHARACTERS + 1));
    expect(pages.get("huge")).toBeUndefined();
  });

  it("a HEAD of /api/events takes no live-page slot: one stream is still open to a GET after many", async () => {
    const dashboard = createDashboardApp({ poller, fleetName: "t", maxEventStreams: 1 });
    const { server, url } = await listenDashboard(dashboard, "127.0.0.1", 0);
    try {
      for (let i = 0; i < 10; i++) {
        const head = await fetch(`${url}/api/events`, { method: "HEAD" });
        expect(head.status).toBe(200);
        expect(head.headers.get("content-type")).toContain("text/event-stream");
      }
      const aborter = new AbortController();
      const live = await fetch(`${url}/api/events`, { signal: aborter.signal });
      expect(live.status).toBe(200);
      aborter.abort();
      await live.body?.cancel().catch(() => {});
    } finally {
      await closeCacheServer(server as Server);
    }
  });

  it("serialises every host's row once per snapshot, not once per request", async () => {
    const app = appOf();
    const stringify = vi.spyOn(JSON, "stringify");
    try {
      const first = await (await app.request("/api/hosts")).text();
      const built = stringify.mock.calls.filter((c) => isHostsBody(c[0])).length;
      for (let i = 0; i < 5; i++)
        expect(await (await app.request("/api/hosts")).text()).toBe(first);
      expect(stringify.mock.calls.filter((c) => isHostsBody(c[0])).length).toBe(built);
      expect(built).toBe(1);
    } finally {
      stringify.mockRestore();
    }
  });

  it("refuses what another site's page loads without a link being followed (no Origin sent)", async () => {
    const app = appOf();
    const crossSite = { "sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors" };
    expect((await app.request("/api/events", { headers: crossSite })).status).toBe(403);
    const sameSite = { "sec-fetch-site": "same-site", "sec-fetch-mode": "cors" };
    expect((await app.request("/api/hosts", { headers: sameSite })).status).toBe(403);
    // A link followed from elsewhere, the dashboard's own pages, and clients that say nothing.
    const link = { "sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate" };
    expect((await app.request("/", { headers: link })).status).toBe(200);
    const own = { "sec-fetch-site": "same-origin", "sec-fetch-mode": "cors" };
    expect((await app.request("/api/hosts", { headers: own })).status).toBe(200);
    expect((await app.request("/api/hosts")).status).toBe(200);
  });
});

describe("polling", () => {
  it("a poll where nothing changed costs LISTs only; a changed record costs one GET", async () => {
    await poller.pollOnce();
    const quiet = await poller.pollOnce();
    expect(quiet.error).toBeUndefined();
    expect(quiet.changed).toBe(false);
    expect(quiet.requests.get).toBe(0);
    expect(quiet.requests.head).toBe(0);
    expect(quiet.requests.list).toBeGreaterThan(0);
    await writeStatus(store, hostRecord("s0", "ssm", { generation: 3 }));
    const changed = await poller.pollOnce();
    expect(changed.changed).toBe(true);
    expect(changed.requests.get).toBe(1);
  });
});

describe("nixship dashboard", () => {
  it("refuses a non-loopback address without a token, and a token file others may read", async () => {
    const open = await nixship(["dashboard", "--fleet", fleet.fleetFile, "--listen", "0.0.0.0:0"]);
    expect(open.code).toBe(2);
    expect(open.stderr).toMatch(
      /--listen 0\.0\.0\.0 can be reached from other machines, and the dashboard has no token/,
    );
    const tokenFile = join(work, "token");
    await writeFile(tokenFile, "s3cret-dashboard-token\n", { mode: 0o644 });
    const exposed = await nixship([
      ...[
        "dashboard",
        "--fleet",
        fleet.fleetFile,
        "--listen",
        "0.0.0.0:0",
        "--token-file",
        tokenFile,
      ],
    ]);
    expect(exposed.code).toBe(2);
    expect(exposed.stderr).toMatch(/may be read by others/);
    expect(exposed.stderr).not.toContain("s3cret-dashboard-token");
  });
});
