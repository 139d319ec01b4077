// `nixship dashboard`: a read-only web view of the fleet (hosts, releases, the newest rollout,
// live), its JSON API and Prometheus metrics, from the fleet's cache store.

import { spawn } from "node:child_process";
import { basename } from "node:path";
import { closeCacheServer } from "../cache/serve.js";
import { FleetPoller, POLL_INTERVAL } from "../dashboard/poller.js";
import { createDashboardApp, listenDashboard, loadClientScript } from "../dashboard/server.js";
import { checkToken } from "../dashboard/token.js";
import { UsageError } from "../errors.js";
import { openStore } from "../store/url.js";
import { isLoopback, parseListen } from "../util/listen-address.js";
import { whenAborted } from "../util/until-aborted.js";
import { type Command, parseFlags, refuseArguments } from "./command.js";
import { readFleetInput } from "./fleet-input.js";
import { serviceStop } from "./interrupts.js";
import { readSecretFile, tokenFileNamer } from "./keys-input.js";
import { announceListening } from "./listening.js";

const DEFAULT_LISTEN = "127.0.0.1:7300";

export const dashboardCommand: Command = {
  path: ["dashboard"],
  summary: "a read-only web dashboard of the fleet: hosts, releases and rollouts, live",
  help: `Usage: nixship dashboard [--fleet FILE] [--listen HOST:PORT] [--token-file FILE] [--open]
                         [--interval S] [--json]

Serves a read-only web view of the fleet from its cache store: the status records every
delivery mode writes, the releases of every channel and the newest rollout record. One poll
loop reads the store for every viewer (LIST calls, and a GET only for what changed), and open
pages update live over Server-Sent Events.

Pages: / (hosts: state, tags, mode, system, generation, last result, last seen; drifting hosts
stand out; filter by tag and state, search by name), /releases (per channel: each release's
expiry, hosts named, applied, failed, pending), /rollout (the newest rollout, wave by wave),
/hosts/NAME (its results, the systems it ran, its last change package by package).

API: /api/hosts (the shape of 'status --stored --json'), /api/hosts/NAME, /api/releases,
/api/releases/CHANNEL (the shape of 'release list --json'), /api/rollout, /api/events (the
event stream). Metrics: /metrics, in Prometheus's text format.

It listens on loopback unless told otherwise. Any other address needs --token-file: every
request must then carry the token, as 'Authorization: Bearer TOKEN' or as the password of
Basic auth (which browsers ask for). Prints 'listening on URL' on stderr once the store has
been read; stops on SIGINT, SIGTERM or SIGHUP, closing its connections, with exit 0 (a second
signal exits 130 at once).

Options:
  --fleet FILE         the fleet file, or a flake's fleet output (.#nixship) (default:
                       $NIXSHIP_FLEET, else ./nixship.json, else .#nixship)
  --listen HOST:PORT   address to listen on (default ${DEFAULT_LISTEN}; port 0: a free one)
  --token-file FILE    file of mode 0600 holding the token, alone on one line: at least 16
                       visible ASCII characters (no space, control or non-ASCII one;
                       surrounding whitespace ignored)
  --open               open the dashboard in the desktop's browser (xdg-open)
  --interval S         seconds between polls of the store (default ${POLL_INTERVAL / 1000})
  --json               once ready, print {"listening": URL} on stdout (the port chosen, for
                       --listen HOST:0)`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      {
        fleet: { type: "string" },
        listen: { type: "string" },
        "token-file": { type: "string" },
        open: { type: "boolean" },
        interval: { type: "string" },
        json: { type: "boolean" },
      },
      "dashboard",
    );
    refuseArguments(positionals, "dashboard");
    const { host, port } = parseListen(values.listen ?? DEFAULT_LISTEN, "dashboard: --listen");
    let token: string | undefined;
    if (values["token-file"] !== undefined) {
      const file = values["token-file"];
      token = checkToken(
        await readSecretFile(file, "--token-file", tokenFileNamer(file)),
        `--token-file ${file}`,
        file,
      );
    }
    if (token === undefined && !isLoopback(host)) {
      throw new UsageError(
        `dashboard: --listen ${host} can be reached from other machines, and the dashboard has no token`,
        "pass --token-file FILE (a file of mode 0600 holding a long random token), or listen on 127.0.0.1",
      );
    }
    const interval = parseInterval(values.interval);
    const { fleet, fleetFile } = await readFleetInput(values, io);
    if (fleet.cache === undefined) {
      throw new UsageError(
        "dashboard: the dashboard reads the fleet's cache store, and the fleet file has no cache",
        "add a cache (cache.url) to the fleet file",
      );
    }
    const store = await openStore(fleet.cache.url);
    const poller = new FleetPoller(fleet, store, { interval });
    try {
      const first = await poller.start();
      if (first.error !== undefined) {
        io.stderr.write(`warning: the store could not be read yet: ${first.error}\n`);
      }
      const dashboard = createDashboardApp({
        poller,
        fleetName: basename(fleetFile),
        token,
        appJs: await loadClientScript(),
      });
      const { server, url } = await listenDashboard(dashboard, host, port);
      announceListening(url, io, values.json === true);
      if (values.open === true) openBrowser(url, io.stderr);
      await whenAborted(serviceStop().signal);
      await closeCacheServer(server).catch(() => {});
    } finally {
      await poller.stop();
      await store.close();
    }
    return 0;
  },
};

function parseInterval(text: string | undefined): number {
  if (text === undefined) return POLL_INTERVAL;
  const seconds = Number(text);
  if (!Number.isFinite(seconds) || seconds < 0.2 || seconds > 3600) {
    throw new UsageError(`dashboard: --interval must be seconds from 0.2 to 3600, got '${text}'`);
  }
  return seconds * 1000;
}

function openBrowser(url: string, stderr: NodeJS.WritableStream): void {
  const child = spawn("xdg-open", [url], { stdio: "ignore", detached: true });
  child.on("error", () => stderr.write(`could not start xdg-open: open ${url} yourself\n`));
  // (It exits non-zero where it finds no browser: a machine with no display.)
  child.on("exit", (code) => {
    if (code !== 0)
      stderr.write(`xdg-open found no browser to open (exit ${code}): open ${url} yourself\n`);
  });
  child.unref();
}
