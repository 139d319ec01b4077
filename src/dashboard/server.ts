// The dashboard's HTTP server (hono on node): read-only pages, the JSON API, the event stream
// that tells open pages the snapshot changed, and /metrics. Everything it shows comes from the
// poller's last snapshot; only a host page and a release page read the store themselves (one
// host's history and last change, one release file). Every request is GET or HEAD, takes from
// its client's bucket, and with a token must carry it.
import { readFile } from "node:fs/promises";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { getConnInfo } from "@hono/node-server/conninfo";
import { type Context, Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { NixshipError } from "../errors.js";
import { type ReleaseEntry, readRelease } from "../release/release-store.js";
import { loadRelease } from "../release/shard-store.js";
import { readProgress } from "../status/status-store.js";
import { carriesToken, TOKEN_CHALLENGE } from "../util/bearer-token.js";
import { listenUrl } from "../util/listen-address.js";
import { type HostChange, readHostChange } from "../views/host-change.js";
import { readReleaseList } from "../views/release-view.js";
import { Html } from "./html.js";
import { MAX_EVENT_STREAMS, RequestBuckets } from "./limits.js";
import { dashboardMetrics } from "./metrics.js";
import {
  hostMain,
  hostsMain,
  notFoundMain,
  type PageMain,
  page,
  releaseMain,
  releasesMain,
  rolloutMain,
  type Section,
} from "./pages.js";
import type { FleetPoller } from "./poller.js";
import { allTags, filterRows, runningOf, type Snapshot } from "./snapshot.js";
import { DASHBOARD_CSS } from "./style.js";

export interface DashboardOptions {
  readonly poller: FleetPoller;
  /** Shown in each page's header. */
  readonly fleetName: string;
  /** When set, every request must carry it (Bearer, or Basic auth's password). */
  readonly token?: string | undefined;
  /** The client script, compiled (undefined: pages work, without live updates). */
  readonly appJs?: string | undefined;
  /** Event streams allowed at once (default MAX_EVENT_STREAMS). */
  readonly maxEventStreams?: number;
  readonly buckets?: RequestBuckets;
  /** Seconds between keep-alive comments on an event stream. */
  readonly keepAlive?: number;
}

/** Release files' entries kept for /api/releases/CHANNEL. */
const MAX_KEPT_ENTRIES = 100_000;
/** Hosts' last changes kept (closure diffs), the oldest dropped first. */
const MAX_KEPT_CHANGES = 64;

const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

/** The compiled client script beside this module (dist/dashboard/client/app.js). */
export async function loadClientScript(): Promise<string | undefined> {
  try {
    return await readFile(new URL("./client/app.js", import.meta.url), "utf8");
  } catch {
    return undefined;
  }
}

export function createDashboardApp(options: DashboardOptions): {
  app: Hono;
  streams: () => number;
} {
  const { poller } = options;
  const app = new Hono();
  const buckets = options.buckets ?? new RequestBuckets();
  const metrics = dashboardMetrics(poller);
  const maxStreams = options.maxEventStreams ?? MAX_EVENT_STREAMS;
  let streams = 0;
  const tags = allTags(poller.fleet.hosts);
  // What pages read beyond the poll, kept: release files' entries (never replaced), and hosts'
  // last changes by (from, to) (each up to MAX_CHANGE_READS narinfos to read).
  const releaseEntries = new Map<string, ReleaseEntry>();
  const changes = new Map<string, Promise<HostChange>>();
  const changeOf = (from: string | null | undefined, to: string | null | undefined) => {
    const key = `${from} ${to}`;
    let change = changes.get(key);
    if (change === undefined) {
      change = readHostChange(poller.store, from, to);
      // A failed read is not kept: the next view tries again.
      change.catch(() => changes.delete(key));
      if (changes.size >= MAX_KEPT_CHANGES) changes.delete(changes.keys().next().value as string);
      changes.set(key, change);
    }
    return change;
  };

  app.use("*", async (c, next) => {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) c.header(k, v);
    const client = clientOf(c);
    if (!buckets.take(client)) {
      c.header("retry-after", String(buckets.retryAfter(client)));
      return c.text("too many requests from this client; wait and try again\n", 429);
    }
    if (
      options.token !== undefined &&
      !carriesToken(c.req.header("authorization"), options.token)
    ) {
      c.header("www-authenticate", TOKEN_CHALLENGE);
      return c.text("this dashboard needs its token (Bearer, or as Basic auth's password)\n", 401);
    }
    if (c.req.method !== "GET" && c.req.method !== "HEAD") {
      c.header("allow", "GET, HEAD");
      return c.text("the dashboard is read-only\n", 405);
    }
    await next();
  });

  const render = (
    c: Context,
    title: string,
    section: Section | undefined,
    main: (snapshot: Snapshot) => Html | PageMain | Promise<Html | PageMain>,
    status: 200 | 404 = 200,
  ) =>
    withSnapshot(
      poller,
      async (snapshot) => {
        const body = page(
          {
            title,
            section,
            fleetName: options.fleetName,
            snapshot,
            pollError: poller.lastPoll?.error,
          },
          asMain(await main(snapshot)),
        );
        return c.html(body.toString(), status);
      },
      () => c.html(notReadyPage(poller.lastPoll?.error), 503),
    );

  app.get("/", (c) => {
    const q = c.req.query();
    const query = {
      tag: q.tag,
      state: q.state,
      query: q.q,
      page: Number.parseInt(q.page ?? "1", 10) || 1,
    };
    return render(c, "Hosts", "hosts", (s) => hostsMain(s, filterRows(s, query), tags, query));
  });

  app.get("/releases", (c) =>
    render(c, "Releases", "releases", (s) => releasesMain(s.channels, new Date(s.at))),
  );

  app.get("/releases/:channel/:seq", async (c) => {
    const channel = c.req.param("channel");
    const seq = Number(c.req.param("seq"));
    const read = await readRelease(poller.store, channel, seq).catch((err: unknown) => {
      if (err instanceof NixshipError) return { status: "absent" as const };
      throw err;
    });
    if (read.status === "absent") {
      return render(
        c,
        "Not found",
        "releases",
        () => notFoundMain(`No release ${seq} in channel ${channel}.`),
        404,
      );
    }
    const { release } = await loadRelease(poller.store, read.bytes, `release ${seq} of ${channel}`);
    const progress = await readProgress(poller.store, channel, seq);
    return render(c, `Release ${seq}`, "releases", (s) => {
      const running = new Map(s.rows.map((r) => [r.host, runningOf(r)]));
      const lines = Object.entries(release.hosts).map(([host, entry]) => ({
        host,
        path: entry.path,
        state: progress.hosts.get(host)?.state ?? null,
        running: running.get(host) ?? null,
      }));
      return releaseMain(channel, seq, release.created, lines, new Date(s.at));
    });
  });

  app.get("/rollout", (c) =>
    render(c, "Rollout", "rollout", (s) => rolloutMain(s.rollout, new Date(s.at))),
  );

  app.get("/hosts/:name", (c) => {
    const name = c.req.param("name");
    return withSnapshot(
      poller,
      async (snapshot) => {
        const row = snapshot.rows.find((r) => r.host === name);
        if (row === undefined) {
          return render(
            c,
            "Not found",
            "hosts",
            () => notFoundMain(`No host ${name} in the fleet.`),
            404,
          );
        }
        const [history, change] = await Promise.all([
          poller.watch.hostHistory(name),
          row.source === "stored"
            ? changeOf(row.previous, row.current)
            : Promise.resolve({ status: "none" as const, why: "The host was asked live." }),
        ]);
        const tagsOf = snapshot.tags.get(name) ?? [];
        return render(c, `Host ${name}`, "hosts", (s) =>
          hostMain({ row, tags: tagsOf, history, change }, new Date(s.at)),
        );
      },
      () => c.html(notReadyPage(poller.lastPoll?.error), 503),
    );
  });

  // ---- JSON API: the shapes of `status --json` and `release list --json`.
  app.get("/api/hosts", (c) =>
    withSnapshot(
      poller,
      (s) => c.json({ hosts: s.rows }),
      () => notReadyJson(c, poller),
    ),
  );
  app.get("/api/hosts/:name", (c) =>
    withSnapshot(
      poller,
      async (s) => {
        const row = s.rows.find((r) => r.host === c.req.param("name"));
        if (row === undefined) return c.json({ error: "no such host in the fleet" }, 404);
        return c.json({ host: row, rollouts: await poller.watch.hostHistory(row.host) });
      },
      () => notReadyJson(c, poller),
    ),
  );
  app.get("/api/releases", (c) =>
    withSnapshot(
      poller,
      (s) => c.json({ channels: s.channels }),
      () => notReadyJson(c, poller),
    ),
  );
  app.get("/api/releases/:channel", async (c) => {
    const channel = c.req.param("channel");
    const { releases } = await readReleaseList(poller.store, channel, releaseEntries);
    // Bounded: a store with more release files than this is read again past it.
    if (releaseEntries.size > MAX_KEPT_ENTRIES) releaseEntries.clear();
    return c.json({ store: poller.store.url, channel, releases });
  });
  app.get("/api/rollout", (c) =>
    withSnapshot(
      poller,
      (s) => c.json({ rollout: s.rollout }),
      () => notReadyJson(c, poller),
    ),
  );

  // ---- Live updates: the snapshot's version, each time it changes.
  app.get("/api/events", (c) => {
    if (streams >= maxStreams) {
      c.header("retry-after", "10");
      return c.text(`at most ${maxStreams} live pages at once; reload later\n`, 503);
    }
    streams++;
    metrics.sseClients.set(streams);
    return streamSSE(c, async (stream) => {
      let closed = false;
      const ended = new Promise<void>((resolve) =>
        stream.onAbort(() => {
          closed = true;
          resolve();
        }),
      );
      const send = (snapshot: Snapshot) => {
        if (!closed) void stream.writeSSE({ event: "snapshot", data: String(snapshot.version) });
      };
      const unsubscribe = poller.subscribe(send);
      const ping = setInterval(
        () => {
          if (!closed) void stream.write(": keep-alive\n\n");
        },
        (options.keepAlive ?? 20) * 1000,
      );
      try {
        if (poller.snapshot !== undefined) send(poller.snapshot);
        await ended;
      } finally {
        clearInterval(ping);
        unsubscribe();
        streams--;
        metrics.sseClients.set(streams);
      }
    });
  });

  app.get("/metrics", async (c) => {
    c.header("content-type", metrics.registry.contentType);
    return c.body(await metrics.registry.metrics());
  });

  app.get("/assets/style.css", (c) => {
    c.header("content-type", "text/css; charset=utf-8");
    return c.body(DASHBOARD_CSS);
  });
  app.get("/assets/app.js", (c) => {
    if (options.appJs === undefined) return c.text("the client script is not built\n", 404);
    c.header("content-type", "text/javascript; charset=utf-8");
    return c.body(options.appJs);
  });

  app.notFound((c) =>
    render(c, "Not found", undefined, () => notFoundMain("This page does not exist."), 404),
  );
  app.onError((err, c) => {
    // The store's own words may name its location: the server's log has them, not the client.
    console.error(`dashboard: ${c.req.method} ${c.req.path}: ${err.message}`);
    return c.text("the dashboard could not answer; its log says why\n", 500);
  });
  return { app, streams: () => streams };
}

function asMain(main: Html | PageMain): PageMain {
  return main instanceof Html ? { live: main } : main;
}

function clientOf(c: Parameters<typeof getConnInfo>[0]): string {
  try {
    return getConnInfo(c).remote.address ?? "unknown";
  } catch {
    // app.request() in tests has no socket.
    return "local";
  }
}

async function withSnapshot<T>(
  poller: FleetPoller,
  ready: (snapshot: Snapshot) => T | Promise<T>,
  notReady: () => T,
): Promise<T> {
  const snapshot = poller.snapshot;
  return snapshot === undefined ? notReady() : await ready(snapshot);
}

function notReadyPage(error: string | undefined): string {
  return `<!doctype html><title>nixship</title><p>The dashboard has not read the store yet${
    error === undefined ? "" : `: ${escapeText(error)}`
  }. Reload in a moment.</p>`;
}

function notReadyJson(c: Context, poller: FleetPoller): Response {
  return c.json(
    { error: "the store has not been read yet", poll: poller.lastPoll?.error ?? null },
    503,
  );
}

function escapeText(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

/** Starts the server on host:port (0: any free port); resolves with it and its URL. */
export async function listenDashboard(
  app: Hono,
  host: string,
  port: number,
): Promise<{ readonly server: Server; readonly url: string }> {
  return await new Promise((resolve, reject) => {
    const server = serve({ fetch: app.fetch, hostname: host, port }, (info: AddressInfo) => {
      resolve({ server: server as Server, url: listenUrl(host, info.port) });
    }) as Server;
    server.once("error", reject);
  });
}
