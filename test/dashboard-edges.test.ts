// The dashboard at its edges, over a real directory store and the real server on
// loopback, spoken to over real HTTP: a foreign Host or Origin gets no fleet data (DNS
// rebinding), a release signed by a key the fleet does not trust is marked, a rollout record
// dated in the future is not the newest, and no client can starve the others: event streams per
// client, fair shares for floods from many addresses, a budget of its own for requests without
// the token, timeouts for slow and silent connections, 20,000 idle connections shed, and release
// pages that cost a bounded number of store reads whatever the number of requests. The browser's
// side is dashboard-browser.test.ts.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { Agent, request, type Server } from "node:http";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeCacheServer } from "../src/cache/serve.js";
import { MAX_STREAMS_PER_CLIENT, RequestBuckets } from "../src/dashboard/limits.js";
import { FleetPoller } from "../src/dashboard/poller.js";
import {
  createDashboardApp,
  type DashboardApp,
  type DashboardOptions,
  listenDashboard,
  type ServerTimeouts,
} from "../src/dashboard/server.js";
import { FUTURE_SKEW } from "../src/dashboard/snapshot.js";
import { loadFleet } from "../src/fleet/load-fleet.js";
import { generateSecretKey } from "../src/nix/keys.js";
import { publishRelease } from "../src/release/release-store.js";
import {
  ROLLOUT_PREFIX,
  ROLLOUT_QUIET_SECONDS,
  type RolloutHost,
  type RolloutRecord,
} from "../src/status/rollout.js";
import { writeRollout } from "../src/status/rollout-store.js";
import { writeStatus } from "../src/status/status-store.js";
import type { ObjectStore } from "../src/store/object-store.js";
import { openStore } from "../src/store/url.js";
import { countReads, wrapStore } from "../src/store/wrap-store.js";
import { MAX_CONNECTIONS } from "../src/util/server-connections.js";
import { nixship } from "../support/cli.js";
import {
  DASHBOARD_CACHE_KEY,
  type DashboardFleet,
  hostRecord,
  publishAgentRelease,
  SYSTEM_V1,
  writeDashboardFleet,
  writeRolloutRecord,
  writeSsmRecords,
} from "../support/dashboard-store.js";

const HOLD = fileURLToPath(new URL("./support/hold-connections.mjs", import.meta.url));
const TOKEN = "correct-horse-battery-staple";
/** Buckets wide enough that a test's own requests are never what limits them. */
const wide = () => new RequestBuckets({ rate: 1e6, burst: 1e6, serverRate: 1e9 });

let work: string;
let store: ObjectStore;
let fleet: DashboardFleet;
let poller: FleetPoller;
let forgedSeq: number;
const servers: Server[] = [];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-dashboard-edges-"));
  store = await openStore(`file://${join(work, "cache")}`);
  fleet = await writeDashboardFleet(work, `file://${join(work, "cache")}`, { ssm: 4, agent: 2 });
  await writeSsmRecords(store, 4);
  await publishAgentRelease(store, fleet, 2);
  // A bucket writer signs the next release with a key of its own and points the channel at it.
  const forged = await publishRelease(store, {
    channel: "prod",
    hosts: { a0: { path: SYSTEM_V1 }, a1: { path: SYSTEM_V1 } } as never,
    kind: "deploy",
    action: "switch",
    health: { http: [], commands: [] },
    confirmTimeout: 30,
    key: generateSecretKey("forger-1"),
  });
  forgedSeq = forged.release.seq;
  // The real newest rollout, and one dated a year ahead (id 0…0f: it must not be taken).
  await writeRolloutRecord(store, ["s0", "s1", "s2", "s3"], { id: "aaaaaaaaaaaa" });
  const ahead = new Date(Date.now() + 365 * 86_400_000).toISOString();
  await writeRolloutRecord(store, ["s0"], {
    id: "ffffffffffff",
    state: "failed",
    startedAt: ahead,
    updatedAt: ahead,
  });
  poller = new FleetPoller(await loadFleet(fleet.fleetFile), store, { interval: 60_000 });
  const first = await poller.pollOnce();
  expect(first.error).toBeUndefined();
});

afterAll(async () => {
  for (const s of servers) await closeCacheServer(s);
  await poller?.stop();
  await store?.close();
  await rm(work, { recursive: true, force: true });
});

async function listen(
  options: Partial<DashboardOptions> = {},
  timeouts: ServerTimeouts = {},
  on: FleetPoller = poller,
): Promise<{ dashboard: DashboardApp; port: number; url: string }> {
  const dashboard = createDashboardApp({ poller: on, fleetName: "edges", ...options });
  const { server, url } = await listenDashboard(dashboard, "127.0.0.1", 0, timeouts);
  servers.push(server);
  return { dashboard, port: Number(new URL(url).port), url };
}

interface Answer {
  readonly status: number;
  readonly body: string;
  readonly type: string;
}

/**
 * One GET over real HTTP with the given headers and source address. An event stream is not
 * read to its end: its status and first bytes are enough.
 */
function get(
  port: number,
  path: string,
  options: {
    headers?: Record<string, string>;
    localAddress?: string;
    agent?: Agent;
  } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        path,
        headers: { host: `127.0.0.1:${port}`, ...options.headers },
        localAddress: options.localAddress,
        agent: options.agent ?? false,
        timeout: 30_000,
      },
      (res) => {
        const type = res.headers["content-type"] ?? "";
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          body += chunk;
          if (type.includes("event-stream") || body.length > 1_000_000) {
            res.destroy();
            resolve({ status: res.statusCode ?? 0, body, type });
          }
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body, type }));
        res.on("error", () => resolve({ status: res.statusCode ?? 0, body, type }));
      },
    );
    req.on("timeout", () => req.destroy(new Error(`GET ${path} took over 30 s`)));
    req.on("error", reject);
    req.end();
  });
}

/** An event stream held open from `localAddress` until `close` is called; its status first. */
function holdStream(
  port: number,
  localAddress: string,
): Promise<{ status: number; close: () => void }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        path: "/api/events",
        headers: { host: `127.0.0.1:${port}` },
        localAddress,
        agent: false,
      },
      (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, close: () => req.destroy() });
      },
    );
    req.on("error", reject);
    req.end();
  });
}

async function metricsOf(port: number): Promise<ReturnType<typeof parsePrometheusTextFormat>> {
  return parsePrometheusTextFormat((await get(port, "/metrics")).body);
}

function metricValue(
  families: ReturnType<typeof parsePrometheusTextFormat>,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const sample = families
    .find((f) => f.name === name)
    ?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
  return sample === undefined ? undefined : Number(sample.value);
}

/** Resolves when the socket is closed, or with false after `ms`. */
function closedWithin(socket: Socket, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    if (socket.destroyed) return resolve(true);
    const timer = setTimeout(() => resolve(false), ms);
    socket.once("close", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

describe("DNS rebinding: Host and Origin", () => {
  it("a foreign Host gets 421 and no fleet data on any page, the API, /metrics and the event stream", async () => {
    const { port } = await listen();
    for (const path of ["/", "/api/hosts", "/metrics", "/api/events", "/releases", "/hosts/s0"]) {
      for (const host of [
        "attacker.example",
        `attacker.example:${port}`,
        `127.0.0.1:${port + 1}`,
      ]) {
        const answer = await get(port, path, { headers: { host } });
        expect(answer.status, `${path} as ${host}`).toBe(421);
        expect(answer.body).toMatch(
          /answers only as http:\/\/127\.0\.0\.1:\d+ or http:\/\/localhost/,
        );
        for (const leak of ["s0", "a0", "nixship_hosts", "event:", "prod"]) {
          expect(answer.body, `${path} as ${host}`).not.toContain(leak);
        }
      }
    }
    // Its own names are answered.
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, "localhost:9000"]) {
      const answer = await get(port, "/api/hosts", { headers: { host } });
      expect(answer.status, host).toBe(200);
      expect(answer.body).toContain('"host":"s0"');
    }
  });

  it("an event stream asked for by another site's page (its Origin) is refused", async () => {
    const { port } = await listen();
    const foreign = await get(port, "/api/events", {
      headers: { origin: "http://attacker.example" },
    });
    expect(foreign.status).toBe(403);
    expect(foreign.body).not.toContain("event:");
    const renamed = await get(port, "/api/events", {
      headers: { origin: `http://localhost:${port}` },
    });
    expect(renamed.status).toBe(403);
    const own = await get(port, "/api/events", {
      headers: { origin: `http://127.0.0.1:${port}` },
    });
    expect(own.status).toBe(200);
    expect(own.type).toContain("text/event-stream");
    expect((await get(port, "/api/events")).status).toBe(200);
  });
});

describe("trust in what the store says", () => {
  it("a release signed by a key the fleet does not trust is marked in the API, the pages and /metrics", async () => {
    const { port } = await listen();
    const board = JSON.parse((await get(port, "/api/releases")).body) as {
      channels: {
        channel: string;
        currentSeq: number;
        currentTrust: { status: string; problem?: string };
        releases: { seq: number; current: boolean; trust: { status: string } }[];
      }[];
    };
    const prod = board.channels.find((c) => c.channel === "prod");
    expect(prod?.currentSeq).toBe(forgedSeq);
    expect(prod?.currentTrust.status).toBe("untrusted");
    expect(prod?.currentTrust.problem).toMatch(
      /signed by key 'forger-1', which is not trusted \(trusted: dash-release-1\)/,
    );
    expect(prod?.releases.map((r) => [r.seq, r.current, r.trust.status])).toEqual([
      [forgedSeq, true, "untrusted"],
      [forgedSeq - 1, false, "trusted"],
    ]);
    const list = JSON.parse((await get(port, "/api/releases/prod")).body) as {
      currentTrust: { status: string };
      trust: Record<string, { status: string }>;
    };
    expect(list.currentTrust.status).toBe("untrusted");
    expect(list.trust[String(forgedSeq)]?.status).toBe("untrusted");

    const page = (await get(port, "/releases")).body;
    expect(page).toMatch(/class="problem untrusted-current" role="alert">/);
    expect(page).not.toMatch(/Current release <strong>/);
    expect(page).toMatch(/<span class="badge failed">current, untrusted<\/span>/);
    const release = (await get(port, `/releases/prod/${forgedSeq}`)).body;
    expect(release).toMatch(/class="problem untrusted-release"/);
    expect(release).toContain("forger-1");

    const families = await metricsOf(port);
    expect(metricValue(families, "nixship_channel_release_trusted", { channel: "prod" })).toBe(0);
    expect(metricValue(families, "nixship_channel_release_seq", { channel: "prod" })).toBe(
      undefined,
    );
  });

  it(`a rollout record dated more than ${FUTURE_SKEW / 60_000} minutes ahead is not the newest, and is named`, async () => {
    const { port } = await listen();
    const api = JSON.parse((await get(port, "/api/rollout")).body) as {
      rollout: { status: string; record: { id: string } };
    };
    expect(api.rollout.status).toBe("found");
    expect(api.rollout.record.id).toBe("aaaaaaaaaaaa");
    const page = (await get(port, "/rollout")).body;
    expect(page).toContain("Rollout aaaaaaaaaaaa");
    expect(page).toMatch(/class="problem future-rollout">A rollout record dated in the future/);
    expect(page).toContain("ffffffffffff");
    expect(poller.snapshot?.futureRollout?.key).toMatch(/-ffffffffffff\.json$/);
    // A host's history passes over it too.
    const host = JSON.parse((await get(port, "/api/hosts/s0")).body) as {
      rollouts: { id: string }[];
    };
    expect(host.rollouts.map((r) => r.id)).toEqual(["aaaaaaaaaaaa"]);
  });

  it("a host's record dated in the future is not its last sighting, and is named", async () => {
    await writeStatus(store, hostRecord("s3", "ssm", { updatedAt: "2031-01-01T00:00:00.000Z" }));
    await poller.pollOnce();
    const { port } = await listen();
    const page = (await get(port, "/?q=s3")).body;
    const row = /<tr class="[^"]*" data-host="s3">[\s\S]*?<\/tr>/.exec(page)?.[0] ?? "";
    // The last cell is when it was last seen: the year-2031 time is named, not taken.
    const seen = [...row.matchAll(/<td>([\s\S]*?)<\/td>/g)].at(-1)?.[1] ?? "";
    expect(seen).toContain('class="error future-time"');
    expect(seen).toContain("dated in the future: 2031-01-01T00:00:00.000Z");
    expect(seen).not.toMatch(/<time datetime="2031/);
  });
});

describe("no client can starve the others", () => {
  it(`one address holds at most ${MAX_STREAMS_PER_CLIENT} event streams; another is still served`, async () => {
    const { port, dashboard } = await listen({ buckets: wide() });
    const held: { close: () => void }[] = [];
    try {
      for (let i = 0; i < MAX_STREAMS_PER_CLIENT; i++) {
        const stream = await holdStream(port, "127.0.0.1");
        expect(stream.status).toBe(200);
        held.push(stream);
      }
      const refused = await get(port, "/api/events", { localAddress: "127.0.0.1" });
      expect(refused.status).toBe(503);
      expect(refused.body).toMatch(/at most 8 live pages from one address/);
      const other = await holdStream(port, "127.0.0.2");
      expect(other.status).toBe(200);
      held.push(other);
      expect(dashboard.streams()).toBe(MAX_STREAMS_PER_CLIENT + 1);
    } finally {
      for (const h of held) h.close();
    }
  });

  it("a flood from 40 other loopback addresses leaves a viewer at 127.0.0.1 served", async () => {
    // The server's budget is set low (50 a second) so that the flood is past it for certain.
    const { port } = await listen({ buckets: new RequestBuckets({ serverRate: 50 }) });
    const flooders = Array.from({ length: 40 }, (_, i) => `127.0.0.${i + 2}`);
    const PER_ADDRESS = 40;
    const statuses = new Map<number, number>();
    const viewer: number[] = [];
    const deadline = Date.now() + 120_000;
    let flooding = true;
    const flood = Promise.all(
      flooders.map(async (address) => {
        const agent = new Agent({ keepAlive: true, maxSockets: 1, localAddress: address });
        try {
          for (let i = 0; i < PER_ADDRESS && Date.now() < deadline; i++) {
            const { status } = await get(port, "/api/hosts", { localAddress: address, agent });
            statuses.set(status, (statuses.get(status) ?? 0) + 1);
          }
        } finally {
          agent.destroy();
        }
      }),
    ).finally(() => {
      flooding = false;
    });
    // The viewer loads a page about 3 times a second while the flood runs (at least 3 times).
    while ((flooding || viewer.length < 3) && viewer.length < 50 && Date.now() < deadline) {
      viewer.push((await get(port, "/", { localAddress: "127.0.0.1" })).status);
      await new Promise((r) => setTimeout(r, 300));
    }
    await flood;
    const total = [...statuses.values()].reduce((a, b) => a + b, 0);
    expect(total).toBe(flooders.length * PER_ADDRESS);
    expect(statuses.get(429) ?? 0).toBeGreaterThan(0);
    expect(viewer.length).toBeGreaterThanOrEqual(3);
    expect(viewer).toEqual(viewer.map(() => 200));
  });

  it("with a token, a flood without it from the same address does not spend the user's budget", async () => {
    const { port } = await listen({ token: TOKEN });
    const anonymous: number[] = [];
    for (let i = 0; i < 200; i++) anonymous.push((await get(port, "/api/hosts")).status);
    expect(anonymous.slice(0, 10).every((s) => s === 401)).toBe(true);
    expect(anonymous.filter((s) => s === 429).length).toBeGreaterThan(150);
    const user: number[] = [];
    for (let i = 0; i < 6; i++) {
      user.push(
        (await get(port, "/api/hosts", { headers: { authorization: `Bearer ${TOKEN}` } })).status,
      );
    }
    expect(user).toEqual([200, 200, 200, 200, 200, 200]);
  });

  it("slow and silent connections are closed: no request, half a request, an idle keep-alive", async () => {
    const { port } = await listen(
      {},
      { headersTimeout: 500, keepAliveTimeout: 300, checkInterval: 100 },
    );
    const silent = connect(port, "127.0.0.1");
    const slow = connect(port, "127.0.0.1", () => slow.write("GET / HTTP/1.1\r\nHost: 127"));
    let slowAnswer = "";
    slow.on("data", (d: Buffer) => {
      slowAnswer += d.toString();
    });
    const idle = connect(port, "127.0.0.1", () =>
      idle.write(`GET /assets/style.css HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`),
    );
    let idleAnswer = "";
    idle.on("data", (d: Buffer) => {
      idleAnswer += d.toString();
    });
    for (const s of [silent, slow, idle]) s.on("error", () => {});
    // Read what comes (nothing, for the silent one): a paused socket may never see the
    // server's FIN, and so never close.
    silent.resume();
    const [a, b, c] = await Promise.all([
      closedWithin(silent, 15_000),
      closedWithin(slow, 15_000),
      closedWithin(idle, 15_000),
    ]);
    expect([a, b, c]).toEqual([true, true, true]);
    expect(slowAnswer).toMatch(/^HTTP\/1\.1 408/);
    expect(idleAnswer).toMatch(/^HTTP\/1\.1 200/);
  });

  it(`a short token is refused, naming where it came from and how to make one`, async () => {
    expect(() => createDashboardApp({ poller, fleetName: "t", token: "x" })).toThrow(
      /the dashboard's token holds a token of 1 characters; the dashboard needs at least 16/,
    );
    const file = join(work, "short-token");
    await writeFile(file, "abc123\n", { mode: 0o600 });
    const run = await nixship(["dashboard", "--fleet", fleet.fleetFile, "--token-file", file]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`--token-file ${file} holds a token of 6 characters`);
    expect(run.stderr).toContain(`head -c 32 /dev/urandom | base64 > ${file}`);
    expect(run.stderr).not.toContain("abc123");
  });
});

describe("store reads", () => {
  it("3,000 requests for release and host pages cost a bounded number of store reads", async () => {
    const counted = countReads(store);
    const own = new FleetPoller(await loadFleet(fleet.fleetFile), counted.store, {
      interval: 60_000,
    });
    try {
      await own.pollOnce();
      const { port } = await listen({ buckets: wide() }, {}, own);
      const before = { ...counted.counts };
      const agent = new Agent({ keepAlive: true, maxSockets: 8 });
      const paths = [
        `/releases/prod/${forgedSeq}`,
        `/releases/prod/${forgedSeq - 1}`,
        "/api/releases/prod",
        "/hosts/s0",
        "/api/hosts/s1",
      ];
      const answers: number[] = [];
      try {
        for (let i = 0; i < 3000; i += 30) {
          const batch = Array.from(
            { length: 30 },
            (_, j) => paths[(i + j) % paths.length] as string,
          );
          answers.push(
            ...(await Promise.all(batch.map((p) => get(port, p, { agent })))).map((a) => a.status),
          );
        }
      } finally {
        agent.destroy();
      }
      expect(answers).toHaveLength(3000);
      expect(answers.every((s) => s === 200)).toBe(true);
      const reads = {
        list: counted.counts.list - before.list,
        get: counted.counts.get - before.get,
      };
      console.log(`3,000 requests cost ${reads.list} LIST and ${reads.get} GET`);
      // One read of each page in this poll: two release files and their markers, the
      // channel's listing (its channel file and release files), two hosts' rollouts (one LIST
      // each, the records read once) and s0's last change (its two systems' narinfos).
      expect(reads.get).toBeLessThanOrEqual(12);
      expect(reads.list).toBeLessThanOrEqual(12);
      // The next poll: each is read once more, not once per request.
      await own.pollOnce();
      const after = { ...counted.counts };
      for (let i = 0; i < 300; i++) await get(port, paths[i % paths.length] as string);
      expect(counted.counts.get - after.get).toBeLessThanOrEqual(6);
      expect(counted.counts.list - after.list).toBeLessThanOrEqual(12);
    } finally {
      await own.stop();
    }
  });
});

describe("20,000 idle connections", () => {
  it(`are shed down to ${MAX_CONNECTIONS}, and a viewer is still served`, async () => {
    const { port, dashboard } = await listen({ buckets: wide() });
    // ulimit -n is 20,000 here for each process: two children hold 10,000 each.
    type Report = { opened: number; errors: number; closedByServer: number; held: number };
    const children: { child: ChildProcess; last: Report | undefined }[] = [];
    try {
      await Promise.all(
        [0, 1].map(
          (k) =>
            new Promise<void>((resolve, reject) => {
              const child = spawn(
                process.execPath,
                [HOLD, String(port), "10000", String(100 + k * 10), "10", "200"],
                { stdio: ["pipe", "pipe", "inherit"] },
              );
              const entry: { child: ChildProcess; last: Report | undefined } = {
                child,
                last: undefined,
              };
              children.push(entry);
              let out = "";
              const timer = setTimeout(() => reject(new Error("no report within 200 s")), 200_000);
              child.stdout?.on("data", (d: Buffer) => {
                out += d.toString();
                const lines = out.split("\n");
                out = lines.pop() ?? "";
                for (const line of lines) entry.last = JSON.parse(line) as Report;
                if (entry.last !== undefined) {
                  clearTimeout(timer);
                  resolve();
                }
              });
              child.on("exit", (code) => {
                clearTimeout(timer);
                reject(new Error(`the flood exited ${code}: ${out}`));
              });
            }),
        ),
      );
      const sum = (f: (r: Report) => number) =>
        children.reduce((n, c) => n + (c.last === undefined ? 0 : f(c.last)), 0);
      expect(sum((r) => r.opened)).toBe(20_000);
      // The server may still be accepting what the kernel queued: wait for it (60 s at most).
      await expect
        .poll(() => dashboard.connections?.shed(), { timeout: 60_000, interval: 200 })
        .toBeGreaterThanOrEqual(20_000 - MAX_CONNECTIONS);
      expect(dashboard.connections?.open()).toBeLessThanOrEqual(MAX_CONNECTIONS);
      // And the flood itself sees its connections closed: it holds at most MAX_CONNECTIONS.
      await expect
        .poll(
          () => {
            for (const c of children) c.child.stdin?.write("report\n");
            return sum((r) => r.held);
          },
          { timeout: 60_000, interval: 500 },
        )
        .toBeLessThanOrEqual(MAX_CONNECTIONS);
      console.log(
        `20,000 connections: the server shed ${dashboard.connections?.shed()}, holds ${dashboard.connections?.open()}; the flood holds ${sum((r) => r.held)}, saw ${sum((r) => r.closedByServer)} closed`,
      );
      // While the flood still holds what it could keep, a viewer is served.
      const viewer = await get(port, "/api/hosts");
      expect(viewer.status).toBe(200);
      expect(viewer.body).toContain('"host":"s0"');
    } finally {
      for (const c of children) c.child.stdin?.end();
    }
  }, 300_000);
});

/**
 * A fleet of two ssm hosts over a file store of its own, and a poller of it that polls only when
 * told (`pollOnce`); `wrap` puts the poller's reads through a store of the test's. `body` gets
 * the store itself (its writes are the test's), the poller and the directory the store is in
 * (`cache/`); all is taken down after.
 */
async function withOwnPoller(
  name: string,
  body: (store: ObjectStore, on: FleetPoller, dir: string) => Promise<void>,
  wrap: (store: ObjectStore) => ObjectStore = (store) => store,
): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), `nixship-dashboard-${name}-`));
  const url = `file://${join(dir, "cache")}`;
  const store = await openStore(url);
  const on = new FleetPoller(
    await loadFleet((await writeDashboardFleet(dir, url, { ssm: 2, agent: 0 })).fleetFile),
    wrap(store),
    { interval: 60_000 },
  );
  try {
    await body(store, on, dir);
  } finally {
    await on.stop();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

describe("a rollout whose deployer is gone", () => {
  it("is served by /api/rollout as the page shows it: interrupted, each host as it was left", async () => {
    await withOwnPoller("gone", async (gone, on) => {
      // Killed mid-rollout 20 minutes ago: s0 activating, s1 still waiting for its wave.
      const at = new Date(Date.now() - 20 * 60_000).toISOString();
      const record = await writeRolloutRecord(gone, ["s0", "s1"], {
        id: "bbbbbbbbbbbb",
        state: "running",
        startedAt: at,
        updatedAt: at,
      });
      await writeRollout(
        gone,
        {
          ...record,
          waves: [
            {
              index: 1,
              kind: "canary",
              hosts: [
                {
                  ...(record.waves[0]?.hosts[0] as RolloutHost),
                  state: "activating",
                  phase: "switch",
                },
              ],
            },
            {
              index: 2,
              kind: "main",
              hosts: [{ ...(record.waves[1]?.hosts[0] as RolloutHost), state: "pending" }],
            },
          ],
        },
        DASHBOARD_CACHE_KEY,
      );
      expect((await on.pollOnce()).error).toBeUndefined();
      const { port } = await listen({}, {}, on);
      const api = JSON.parse((await get(port, "/api/rollout")).body) as {
        rollout: {
          record: { state: string; waves: { hosts: { host: string; state: string }[] }[] };
          recordedState: string;
          gone: string;
        };
      };
      expect(api.rollout.record.state).toBe("interrupted");
      expect(api.rollout.recordedState).toBe("running");
      expect(api.rollout.gone).toMatch(/^its deployer has not written it since /);
      expect(
        api.rollout.record.waves.flatMap((w) => w.hosts.map((h) => [h.host, h.state])),
      ).toEqual([
        ["s0", "failed"],
        ["s1", "not-started"],
      ]);
    });
  });

  it("one that goes quiet while no host changes: the page drawn anew says interrupted, /api/rollout too, and open pages hear of it", async () => {
    await withOwnPoller("quiet", async (quiet, on) => {
      // Written last 2 s before it turns quiet: its canary confirmed, s1 waiting for its wave.
      const at = new Date(Date.now() - (ROLLOUT_QUIET_SECONDS - 2) * 1000).toISOString();
      const record = await writeRolloutRecord(quiet, ["s0", "s1"], {
        id: "cccccccccccc",
        state: "running",
        startedAt: at,
        updatedAt: at,
      });
      await writeRollout(
        quiet,
        {
          ...record,
          waves: [
            record.waves[0] as RolloutRecord["waves"][number],
            {
              index: 2,
              kind: "main",
              hosts: [{ ...(record.waves[1]?.hosts[0] as RolloutHost), state: "pending" }],
            },
          ],
        },
        DASHBOARD_CACHE_KEY,
      );
      expect((await on.pollOnce()).error).toBeUndefined();
      const { port } = await listen({}, {}, on);
      const before = on.snapshot?.version as number;
      expect((await get(port, "/rollout")).body).toContain(">running</span>");
      let told = 0;
      const unsubscribe = on.subscribe(() => {
        told++;
      });
      await new Promise((r) => setTimeout(r, 3000));
      expect((await on.pollOnce()).error).toBeUndefined();
      unsubscribe();
      // The record did not change; the clock made it quiet.
      expect(on.snapshot?.version).toBeGreaterThan(before);
      expect(told).toBe(1);
      const page = (await get(port, "/rollout")).body;
      expect(page).toContain(">interrupted</span>");
      expect(page).not.toContain(">running</span>");
      const api = JSON.parse((await get(port, "/api/rollout")).body) as {
        rollout: { record: { state: string }; recordedState: string; quiet?: string };
      };
      expect(api.rollout.record.state).toBe("interrupted");
      expect(api.rollout.recordedState).toBe("running");
      expect(api.rollout.quiet).toBe(`not written since ${at}: its deployer may be gone`);
    });
  });
});

describe("a store whose polls fail", () => {
  it("the API answers with the read's time, then 503 naming the failure once the last good read is too old", async () => {
    await withOwnPoller("stale", async (store, on, dir) => {
      await writeRolloutRecord(store, ["s0", "s1"], { id: "dddddddddddd" });
      expect((await on.pollOnce()).error).toBeUndefined();
      const read = on.snapshot?.at as string;
      const patient = await listen({}, {}, on);
      const strict = await listen({ staleAfterMs: 0 }, {}, on);
      const fresh = await getWithHeaders(strict.port, "/api/hosts");
      expect(fresh.status).toBe(200);
      expect(fresh.headers["x-nixship-read-at"]).toBe(read);
      // The store goes away: the next poll fails, its error naming the store's directory.
      const where = join(dir, "cache");
      await rm(where, { recursive: true, force: true });
      const failed = await on.pollOnce();
      expect(failed.error).toContain(where);
      // What a client reads says "the store" where the error named its location.
      const told = (failed.error as string).replaceAll(`file://${where}`, "the store");
      expect(told).not.toContain(where);
      for (const path of ["/api/hosts", "/api/hosts/s0", "/api/releases", "/api/rollout"]) {
        const stale = await get(strict.port, path);
        expect([path, stale.status]).toEqual([path, 503]);
        expect(JSON.parse(stale.body)).toEqual({
          error: `the store has not been read since ${read}: ${told}`,
          readAt: read,
        });
        // Within the default 30 s, the last read is served, with its time.
        const kept = await getWithHeaders(patient.port, path);
        expect([path, kept.status]).toEqual([path, 200]);
        expect(kept.headers["x-nixship-read-at"]).toBe(read);
      }
      // Nor does any page, nor an API answer, nor an error.
      for (const path of [
        "/",
        "/hosts/s0",
        "/releases",
        "/rollout",
        "/api/releases/lab",
        "/metrics",
      ]) {
        const answer = await get(patient.port, path);
        expect([path, answer.body.includes(where)]).toEqual([path, false]);
      }
      expect((await get(patient.port, "/")).body).toContain("The store could not be read: ");
    });
  });
});

describe("a page whose own read of the store hangs", () => {
  it("answers 504 within its deadline, naming it, and the next poll's view reads again", async () => {
    let hang = false;
    const hanging = (inner: ObjectStore) =>
      wrapStore(inner, {
        list: (prefix, options) =>
          hang && prefix.startsWith(ROLLOUT_PREFIX)
            ? new Promise(() => {})
            : inner.list(prefix, options),
      });
    await withOwnPoller(
      "hang",
      async (inner, on) => {
        await writeRolloutRecord(inner, ["s0", "s1"], { id: "eeeeeeeeeeee" });
        expect((await on.pollOnce()).error).toBeUndefined();
        const { port } = await listen({ pageReadMs: 300 }, {}, on);
        hang = true;
        const page = await get(port, "/hosts/s0");
        expect(page.status).toBe(504);
        expect(page.body).toBe(
          "the store did not answer within 0.3 s for this page; reload in a moment\n",
        );
        expect((await get(port, "/api/hosts/s0")).status).toBe(504);
        hang = false;
        expect((await on.pollOnce()).error).toBeUndefined();
        const again = await get(port, "/hosts/s0");
        expect(again.status).toBe(200);
        expect(again.body).toContain("eeeeeeeeeeee");
      },
      hanging,
    );
  });
});

/** A GET's status and headers (its body read and dropped). */
function getWithHeaders(
  port: number,
  path: string,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: "127.0.0.1", port, path, headers: { host: `127.0.0.1:${port}` }, agent: false },
      (res) => {
        res.resume();
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
      },
    );
    req.setTimeout(30_000, () => req.destroy(new Error(`GET ${path} took over 30 s`)));
    req.on("error", reject);
    req.end();
  });
}
