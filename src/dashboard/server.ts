// The dashboard's HTTP server (hono on node): read-only pages, the JSON API, the event stream
// that tells open pages the snapshot changed, and /metrics. Everything it shows comes from the
// poller's last snapshot; the host pages and release pages read the store at most once per poll
// (host-reads.ts, release-reads.ts), whatever the number of requests. Every request names the dashboard as its
// Host (on loopback) and no other site as its Origin, is GET or HEAD, takes from its client's
// bucket (requests without the token from buckets of their own), and with a token must carry it.

import { readFile } from "node:fs/promises";
import type { IncomingMessage, Server } from "node:http";
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { getConnInfo } from "@hono/node-server/conninfo";
import { type Context, Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { NAME_MAX_LENGTH, NAME_PATTERN } from "../fleet/fleet.js";
import { parsePublicKey } from "../nix/keys.js";
import { rolloutGone } from "../status/rollout.js";
import { carriesToken, TOKEN_CHALLENGES } from "../util/bearer-token.js";
import { isLoopback, listenUrl } from "../util/listen-address.js";
import {
  type ConnectionGuard,
  type ConnectionLimits,
  guardConnections,
  HEADERS_TIMEOUT,
} from "../util/server-connections.js";
import { withHostStates } from "../views/host-state.js";
import { BOARD_RELEASES } from "../views/release-board.js";
import { crossSite, foreignHost, foreignOrigin } from "./host-guard.js";
import { HostReads } from "./host-reads.js";
import { Html } from "./html.js";
import {
  ANONYMOUS_LIMITS,
  MAX_EVENT_STREAMS,
  MAX_STREAMS_PER_CLIENT,
  RequestBuckets,
} from "./limits.js";
import { dashboardMetrics } from "./metrics.js";
import {
  hostMain,
  hostsMain,
  notFoundMain,
  type PageMain,
  page,
  releaseMain,
  releasesMain,
  type Section,
} from "./pages.js";
import type { FleetPoller } from "./poller.js";
import { PAGE_READ_MS, ReadsFull, ReleaseReads, StoreTooSlow } from "./release-reads.js";
import { rolloutMain } from "./rollout-page.js";
import { allTags, filterRows, runningOf, type Snapshot, shownRollout } from "./snapshot.js";
import { hideStoreLocation, storeLocations } from "./store-location.js";
import { DASHBOARD_CSS } from "./style.js";
import { checkToken } from "./token.js";

export interface DashboardOptions {
  readonly poller: FleetPoller;
  /** Shown in each page's header. */
  readonly fleetName: string;
  /** When set, every request must carry it (Bearer, or Basic auth's password). */
  readonly token?: string | undefined;
  /** The client scripts by name, compiled (undefined: pages work, without live updates). */
  readonly appJs?: ReadonlyMap<string, string> | undefined;
  /** Event streams allowed at once (default MAX_EVENT_STREAMS). */
  readonly maxEventStreams?: number;
  /** Event streams one client may hold (default MAX_STREAMS_PER_CLIENT). */
  readonly maxStreamsPerClient?: number;
  /** The buckets of requests that carry the token (or of all, without a token). */
  readonly buckets?: RequestBuckets;
  /** The buckets of requests without the token, when there is one (ANONYMOUS_LIMITS). */
  readonly anonymousBuckets?: RequestBuckets;
  /** Seconds between keep-alive comments on an event stream. */
  readonly keepAlive?: number;
  /**
   * How old the last good read may be, while polls fail, before the API answers 503 rather
   * than that read (default API_STALE_AFTER_MS).
   */
  readonly staleAfterMs?: number;
  /** How long a page's own reads of the store may take (default PAGE_READ_MS). */
  readonly pageReadMs?: number;
}

/** The API answers 503 once polls have failed and its last good read is older than this. */
export const API_STALE_AFTER_MS = 30_000;

const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

/** The client's modules: app.js, and what it imports (served from /assets/NAME). */
const CLIENT_MODULES = ["app.js", "ago.js"] as const;

/**
 * The compiled client scripts beside this module (dist/dashboard/client/, named from dist/ so
 * that the bundled CLI in dist/cli/ finds them too), by name; undefined when one is missing
 * (pages work, without live updates).
 */
export async function loadClientScript(): Promise<ReadonlyMap<string, string> | undefined> {
  try {
    const texts = await Promise.all(
      CLIENT_MODULES.map((name) =>
        readFile(new URL(`../dashboard/client/${name}`, import.meta.url), "utf8"),
      ),
    );
    return new Map(CLIENT_MODULES.map((name, i) => [name, texts[i] as string]));
  } catch {
    return undefined;
  }
}

/** The app, and what listenDashboard adds to it. */
export interface DashboardApp {
  readonly app: Hono;
  /** Event streams open now. */
  readonly streams: () => number;
  /** Set by listenDashboard: the server's connections. */
  connections: ConnectionGuard | undefined;
  /**
   * Whether the Host header is checked (host-guard.ts) on connections that arrive on loopback.
   * listenDashboard keeps it only on a loopback listen address: on any other, the token keeps
   * out a rebinding page, and a machine's own name may resolve to loopback (127.0.1.1).
   */
  checkHost: boolean;
}

export function createDashboardApp(options: DashboardOptions): DashboardApp {
  const { poller } = options;
  const staleAfterMs = options.staleAfterMs ?? API_STALE_AFTER_MS;
  const token =
    options.token === undefined ? undefined : checkToken(options.token, "the dashboard's token");
  const app = new Hono<{ Bindings: { incoming?: IncomingMessage } }>();
  const buckets = options.buckets ?? new RequestBuckets();
  const anonymous = options.anonymousBuckets ?? new RequestBuckets(ANONYMOUS_LIMITS);
  const dashboard: DashboardApp = {
    app: app as unknown as Hono,
    streams: () => streams,
    connections: undefined,
    checkHost: true,
  };
  const metrics = dashboardMetrics(poller, () => dashboard.connections);
  const maxStreams = options.maxEventStreams ?? MAX_EVENT_STREAMS;
  const maxPerClient = options.maxStreamsPerClient ?? MAX_STREAMS_PER_CLIENT;
  let streams = 0;
  const clientStreams = new Map<string, number>();
  const tags = allTags(poller.fleet.hosts);
  const pageReadMs = options.pageReadMs ?? PAGE_READ_MS;
  const releaseReads = new ReleaseReads(
    poller.store,
    poller.fleet.releases?.publicKeys.map((k) => parsePublicKey(k)),
    pageReadMs,
  );
  const hostReads = new HostReads(poller.store, poller.watch, pageReadMs);
  const locations = storeLocations(poller.store.url);

  app.use("*", async (c, next) => {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) c.header(k, v);
    const host = c.req.header("host");
    const socket = c.env?.incoming?.socket;
    // app.request() in tests has no socket: nothing arrived over the network.
    const misdirected =
      !dashboard.checkHost || socket?.localAddress === undefined || socket.localPort === undefined
        ? undefined
        : foreignHost(host, { address: socket.localAddress, port: socket.localPort });
    if (misdirected !== undefined) return c.text(`${misdirected}\n`, 421);
    if (
      foreignOrigin(c.req.header("origin"), host) ||
      crossSite(c.req.header("sec-fetch-site"), c.req.header("sec-fetch-mode"))
    ) {
      return c.text("this dashboard answers only its own pages, not another site's\n", 403);
    }
    const client = clientOf(c);
    const authorized = token === undefined || carriesToken(c.req.header("authorization"), token);
    // Without the token, from buckets of their own: guesses cannot spend the user's budget.
    const bucket = authorized ? buckets : anonymous;
    if (!bucket.take(client)) {
      c.header("retry-after", String(bucket.retryAfter(client)));
      return c.text("too many requests from this client; wait and try again\n", 429);
    }
    // A client that does not read what it asked for holds the server's memory: past
    // MAX_UNSENT bytes of answers it has not read, it is asked to read them first.
    if ((dashboard.connections?.unsent(client) ?? 0) > MAX_UNSENT) {
      c.header("retry-after", "10");
      return c.text("this client has not read the answers it asked for; read them first\n", 429);
    }
    if (!authorized) {
      for (const challenge of TOKEN_CHALLENGES) {
        c.header("www-authenticate", challenge, { append: true });
      }
      return c.text("this dashboard needs its token (Bearer, or as Basic auth's password)\n", 401);
    }
    if (c.req.method !== "GET" && c.req.method !== "HEAD") {
      c.header("allow", "GET, HEAD");
      return c.text("the dashboard is read-only\n", 405);
    }
    await next();
    await hideLocationIn(c, locations);
  });

  const rendered = new RenderedPages();
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
        const pollError = poller.lastPoll?.error;
        // A page drawn from the snapshot alone is rendered once a poll: asked again, it is the
        // same text (the others read the store for the page). Its footer says when the store
        // was read, so a poll that changed nothing still draws it anew.
        const key = SNAPSHOT_PAGES.has(c.req.path)
          ? `${snapshot.version}\n${snapshot.at}\n${pollError ?? ""}\n${c.req.url}`
          : undefined;
        const kept = key === undefined ? undefined : rendered.get(key);
        if (kept !== undefined) return c.html(kept, status);
        const body = page(
          { title, section, fleetName: options.fleetName, snapshot, pollError },
          asMain(await main(snapshot)),
        ).toString();
        if (key !== undefined) rendered.set(key, body);
        return c.html(body, status);
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

  app.get("/releases/:channel/:seq", (c) => {
    const channel = c.req.param("channel");
    const seq = Number(c.req.param("seq"));
    return withSnapshot(
      poller,
      async (snapshot) => {
        // Only what the last poll listed: the reads stay bounded whatever is asked.
        const listed = snapshot.channels
          .find((ch) => ch.channel === channel)
          ?.releases.find((r) => r.seq === seq);
        const data =
          listed === undefined
            ? undefined
            : await releaseReads.page(channel, seq, listed.trust, poller.polls);
        if (data === undefined) {
          return render(
            c,
            "Not found",
            "releases",
            () =>
              notFoundMain(
                `No release ${seq} in channel ${channel} among the releases the dashboard lists (each channel's newest ${BOARD_RELEASES}); 'nixship release show' reads any.`,
              ),
            404,
          );
        }
        return render(c, `Release ${seq}`, "releases", (s) =>
          releaseMain(data, new Map(s.rows.map((r) => [r.host, runningOf(r)])), new Date(s.at)),
        );
      },
      () => c.html(notReadyPage(poller.lastPoll?.error), 503),
    );
  });

  app.get("/rollout", (c) =>
    render(c, "Rollout", "rollout", (s) => rolloutMain(s.rollout, s.futureRollout, new Date(s.at))),
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
          hostReads.history(name, poller.polls),
          row.source === "stored"
            ? hostReads.change(row.previous, row.current, poller.polls)
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
  // Every host's row, serialised once per snapshot: a thousand hosts' errors and logs come to
  // tens of MB, which each request would otherwise build anew.
  let hostsJson: { readonly version: number; readonly body: Uint8Array<ArrayBuffer> } | undefined;
  app.get("/api/hosts", (c) =>
    withApiSnapshot(c, poller, staleAfterMs, (s) => {
      if (hostsJson?.version !== s.version) {
        const body = new TextEncoder().encode(JSON.stringify({ hosts: withHostStates(s.rows) }));
        hostsJson = { version: s.version, body };
      }
      c.header("content-type", "application/json; charset=UTF-8");
      return c.body(hostsJson.body);
    }),
  );
  app.get("/api/hosts/:name", (c) =>
    withApiSnapshot(c, poller, staleAfterMs, async (s) => {
      const row = s.rows.find((r) => r.host === c.req.param("name"));
      if (row === undefined) return c.json({ error: "no such host in the fleet" }, 404);
      return c.json({
        host: withHostStates([row])[0],
        rollouts: await hostReads.history(row.host, poller.polls),
      });
    }),
  );
  app.get("/api/releases", (c) =>
    withApiSnapshot(c, poller, staleAfterMs, (s) => c.json({ channels: s.channels })),
  );
  app.get("/api/releases/:channel", (c) => {
    const channel = c.req.param("channel");
    if (!NAME_PATTERN.test(channel) || channel.length > NAME_MAX_LENGTH) {
      return c.json(
        {
          error: `channel name ${JSON.stringify(channel)} must match ${NAME_PATTERN.source} (at most ${NAME_MAX_LENGTH} characters)`,
        },
        400,
      );
    }
    return withApiSnapshot(c, poller, staleAfterMs, async (s) => {
      const board = s.channels.find((ch) => ch.channel === channel);
      if (board === undefined) {
        return c.json({ error: `no channel ${channel} in the store` }, 404);
      }
      const { releases } = await releaseReads.list(channel, poller.polls);
      // `release list --json` (but the store's location), and whether the fleet's keys signed
      // what the board shows.
      return c.json({
        channel,
        releases,
        currentTrust: board.currentTrust,
        trust: Object.fromEntries(board.releases.map((r) => [r.seq, r.trust])),
      });
    });
  });
  app.get("/api/rollout", (c) =>
    withApiSnapshot(c, poller, staleAfterMs, (s) => c.json({ rollout: rolloutAsServed(s) })),
  );

  // ---- Live updates: the snapshot's version, each time it changes.
  app.get("/api/events", (c) => {
    // A HEAD would run this handler and drop the stream unread, never aborted: the slot it took
    // would stay taken. It gets the headers alone.
    if (c.req.method === "HEAD") {
      c.header("content-type", "text/event-stream");
      return c.body(null, 200);
    }
    const client = clientOf(c);
    const mine = clientStreams.get(client) ?? 0;
    if (streams >= maxStreams || mine >= maxPerClient) {
      c.header("retry-after", "10");
      const why =
        mine >= maxPerClient
          ? `at most ${maxPerClient} live pages from one address`
          : `at most ${maxStreams} live pages at once`;
      return c.text(`${why}; reload later\n`, 503);
    }
    streams++;
    clientStreams.set(client, mine + 1);
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
        const left = (clientStreams.get(client) ?? 1) - 1;
        if (left > 0) clientStreams.set(client, left);
        else clientStreams.delete(client);
        metrics.sseClients.set(streams);
      }
    });
  });

  app.get("/metrics", async (c) => {
    c.header("content-type", metrics.registry.contentType);
    return c.body(await metrics.registry.metrics());
  });

  // Browsers ask for an icon on every page: none, and no error for it.
  app.get("/favicon.ico", (c) => c.body(null, 204));

  app.get("/assets/style.css", (c) => {
    c.header("content-type", "text/css; charset=utf-8");
    return c.body(DASHBOARD_CSS);
  });
  app.get("/assets/:name{[a-z]+\\.js}", (c) => {
    const script = options.appJs?.get(c.req.param("name"));
    if (script === undefined) return c.text("the client script is not built\n", 404);
    c.header("content-type", "text/javascript; charset=utf-8");
    return c.body(script);
  });

  app.notFound((c) =>
    render(c, "Not found", undefined, () => notFoundMain("This page does not exist."), 404),
  );
  app.onError((err, c) => {
    if (err instanceof ReadsFull) {
      c.header("retry-after", "2");
      return c.text("the dashboard has read all it may until its next poll; retry\n", 503);
    }
    if (err instanceof StoreTooSlow) {
      c.header("retry-after", "10");
      return c.text(`${err.message} for this page; reload in a moment\n`, 504);
    }
    // The store's own words may name its location: the server's log has them, not the client.
    console.error(`dashboard: ${c.req.method} ${c.req.path}: ${err.message}`);
    return c.text("the dashboard could not answer; its log says why\n", 500);
  });
  return dashboard;
}

/**
 * The answer's text with the store's location said as "the store" (store-location.ts): pages,
 * API answers and errors alike. An event stream carries versions alone, and is left to flow.
 */
async function hideLocationIn(c: Context, locations: readonly string[]): Promise<void> {
  const type = c.res.headers.get("content-type") ?? "";
  if (c.res.body === null || type.startsWith("text/event-stream")) return;
  const text = await c.res.text();
  const hidden = hideStoreLocation(text, locations);
  if (hidden === text) {
    c.res = new Response(text, c.res);
    return;
  }
  const headers = new Headers(c.res.headers);
  headers.delete("content-length");
  c.res = new Response(hidden, { status: c.res.status, statusText: c.res.statusText, headers });
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

/**
 * An API answer from the snapshot: 503 before the first read, and while polls fail once the
 * last good read is older than `staleAfterMs` (a monitor must not take it for the fleet's state
 * now); else the answer, with the time the store was read (`X-Nixship-Read-At`).
 */
async function withApiSnapshot(
  c: Context,
  poller: FleetPoller,
  staleAfterMs: number,
  ready: (snapshot: Snapshot) => Response | Promise<Response>,
): Promise<Response> {
  const snapshot = poller.snapshot;
  if (snapshot === undefined) return notReadyJson(c, poller);
  const error = poller.lastPoll?.error;
  if (error !== undefined && Date.now() - Date.parse(snapshot.at) > staleAfterMs) {
    return c.json(
      { error: `the store has not been read since ${snapshot.at}: ${error}`, readAt: snapshot.at },
      503,
    );
  }
  c.header("x-nixship-read-at", snapshot.at);
  return await ready(snapshot);
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

/** Node's timeouts for the dashboard's connections, in ms. */
export interface ServerTimeouts extends ConnectionLimits {
  /** How long a keep-alive connection may wait for its next request. */
  readonly keepAliveTimeout?: number;
  /** How long a whole request may take to arrive. */
  readonly requestTimeout?: number;
  /** How often Node checks the two above. */
  readonly checkInterval?: number;
  /** How long a connection may move no byte either way (IDLE_TIMEOUT). */
  readonly idleTimeout?: number;
}

/** Ms a connection may move no byte either way before it is closed. */
export const IDLE_TIMEOUT = 60_000;
/** Bytes of answers a client may leave unread before its next request is refused. */
export const MAX_UNSENT = 64 * 1024 * 1024;

/**
 * The pages rendered lately, by snapshot and URL: at most RENDERED_PAGES of them and
 * RENDERED_CHARACTERS in all, the oldest dropped first.
 */
export const RENDERED_PAGES = 32;
/** The pages drawn from the snapshot alone (with the URL's query), which RenderedPages keeps. */
const SNAPSHOT_PAGES: ReadonlySet<string> = new Set(["/", "/releases", "/rollout"]);
export const RENDERED_CHARACTERS = 64 * 1024 * 1024;
export class RenderedPages {
  readonly #pages = new Map<string, string>();
  #characters = 0;

  get(key: string): string | undefined {
    return this.#pages.get(key);
  }

  set(key: string, page: string): void {
    if (page.length > RENDERED_CHARACTERS || this.#pages.has(key)) return;
    this.#pages.set(key, page);
    this.#characters += page.length;
    for (const [oldest, kept] of this.#pages) {
      if (this.#pages.size <= RENDERED_PAGES && this.#characters <= RENDERED_CHARACTERS) break;
      this.#pages.delete(oldest);
      this.#characters -= kept.length;
    }
  }
}

/** Starts the server on host:port (0: any free port); resolves with it and its URL. */
export async function listenDashboard(
  dashboard: DashboardApp,
  host: string,
  port: number,
  timeouts: ServerTimeouts = {},
): Promise<{ readonly server: Server; readonly url: string }> {
  const headersTimeout = timeouts.headersTimeout ?? HEADERS_TIMEOUT;
  return await new Promise((resolve, reject) => {
    const server = serve(
      {
        fetch: dashboard.app.fetch,
        hostname: host,
        port,
        serverOptions: {
          headersTimeout,
          requestTimeout: timeouts.requestTimeout ?? 30_000,
          connectionsCheckingInterval: timeouts.checkInterval ?? 1000,
        },
      },
      (info: AddressInfo) => {
        resolve({ server: server as Server, url: listenUrl(host, info.port) });
      },
    ) as Server;
    server.keepAliveTimeout = timeouts.keepAliveTimeout ?? 5000;
    // A connection that moves no byte either way for this long is closed: a client that stops
    // reading a page holds it in memory no longer (an event stream's keep-alive moves bytes).
    server.setTimeout(timeouts.idleTimeout ?? IDLE_TIMEOUT, (socket) => socket.destroy());
    dashboard.connections = guardConnections(server, { ...timeouts, headersTimeout });
    dashboard.checkHost = isLoopback(host);
    server.once("error", reject);
  });
}

/**
 * The newest rollout as the page shows it (snapshot.ts's shownRollout), with the record's own
 * `state` as `recordedState` and why its deployer is taken for gone.
 */
function rolloutAsServed(s: Snapshot): unknown {
  const read = s.rollout;
  const shown = shownRollout(s);
  if (read.status !== "found" || shown === undefined || shown.state === read.record.state) {
    return read;
  }
  const gone = rolloutGone(read.record, new Date(s.at));
  return {
    ...read,
    record: shown,
    recordedState: read.record.state,
    ...(gone === undefined
      ? { quiet: `not written since ${read.record.updatedAt}: its deployer may be gone` }
      : { gone }),
  };
}
