// bench:dashboard: `nixship dashboard` over a directory store with N hosts' status
// records (default 10,000), a channel's release and a rollout record:
// - the first load of the hosts page in Chromium (navigation to the load event, and to the
//   table's first row), and of /api/hosts (fetch, median of 5);
// - the store requests per poll with 1 and with 8 viewers (browsers of their own, each a page
//   holding its event stream: one browser's tabs share one stream; 8 is the most event streams
//   the dashboard gives one address, and every viewer here comes from 127.0.0.1),
//   read from the dashboard's own /metrics, over polls where nothing changed and over one poll
//   after a record changed (each open page then fetches itself again);
// - `nixship status --stored` over the same store.
// There is no peer to run beside it here (Cachix Deploy's dashboard is a hosted service).
//
//   npm run bench:dashboard [-- --hosts 10000] [--polls 10]
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { type Browser, chromium, type Page } from "playwright-core";
import { MAX_STREAMS_PER_CLIENT } from "../src/dashboard/limits.js";
import { writeStatus } from "../src/status/status-store.js";
import { openStore } from "../src/store/url.js";
import {
  hostRecord,
  publishAgentRelease,
  startDashboardProcess,
  writeDashboardFleet,
  writeRolloutRecord,
  writeSsmRecords,
} from "../support/dashboard-store.js";
import { measure } from "./measure.js";

/** Viewers of the second measure: as many event streams as one address may hold. */
const VIEWERS = MAX_STREAMS_PER_CLIENT;

import { median, table } from "./stats.js";

const NIXSHIP_BIN = fileURLToPath(new URL("../../dist/cli/bin.js", import.meta.url));
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

interface Counts {
  readonly polls: number;
  readonly list: number;
  readonly get: number;
  readonly streams: number;
}

async function countsOf(url: string): Promise<Counts> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const value = (re: RegExp) => Number(re.exec(text)?.[1] ?? Number.NaN);
  return {
    polls: value(/^nixship_dashboard_polls_total (\S+)$/m),
    list: value(/^nixship_dashboard_store_requests_total\{kind="list"\} (\S+)$/m),
    get: value(/^nixship_dashboard_store_requests_total\{kind="get"\} (\S+)$/m),
    streams: value(/^nixship_dashboard_event_streams (\S+)$/m),
  };
}

/** CPU seconds (user + system) a process has used, from /proc. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
  // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after "pid (comm) ".
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Store requests and the dashboard's CPU per poll over the next `polls` polls (after `change`). */
async function perPoll(url: string, pid: number, polls: number, change?: () => Promise<void>) {
  await change?.();
  const cpu = cpuSeconds(pid);
  const start = await countsOf(url);
  let now = start;
  const deadline = Date.now() + polls * 5000 + 10_000;
  while (now.polls - start.polls < polls && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    now = await countsOf(url);
  }
  const n = now.polls - start.polls;
  return {
    polls: n,
    cpu: (cpuSeconds(pid) - cpu) / n,
    list: (now.list - start.list) / n,
    get: (now.get - start.get) / n,
    streams: now.streams,
  };
}

function startDashboard(fleetFile: string) {
  return startDashboardProcess(NIXSHIP_BIN, ["--fleet", fleetFile, "--interval", "1"]);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { hosts: { type: "string" }, polls: { type: "string" } },
  });
  const count = Number(values.hosts ?? 10_000);
  const polls = Number(values.polls ?? 10);
  const work = await mkdtemp(join(tmpdir(), "nixship-bench-dashboard-"));
  let browser: Browser | undefined;
  let dashboard: Awaited<ReturnType<typeof startDashboard>> | undefined;
  try {
    const url = `file://${join(work, "cache")}?fsync=false`;
    const store = await openStore(url);
    const fleet = await writeDashboardFleet(work, url, { ssm: count, agent: 0 });
    await writeSsmRecords(store, count);
    await publishAgentRelease(store, fleet, 0).catch(() => undefined);
    await writeRolloutRecord(
      store,
      Array.from({ length: count }, (_, i) => `s${i}`),
    );
    const started = performance.now();
    dashboard = await startDashboard(fleet.fleetFile);
    const ready = (performance.now() - started) / 1000;

    const apiTimes: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      const body = await (await fetch(`${dashboard.url}/api/hosts`)).text();
      apiTimes.push(performance.now() - t);
      if (!body.includes(`"host":"s${count - 1}"`)) throw new Error("/api/hosts lacks a host");
    }

    // Measured before the browsers start, on an idle machine (the dashboard polls meanwhile).
    const status = await measure(
      process.execPath,
      [NIXSHIP_BIN, "status", "--fleet", fleet.fleetFile, "--stored"],
      process.env,
    );
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const first = await context.newPage();
    const t0 = performance.now();
    await first.goto(dashboard.url, { waitUntil: "load" });
    const loaded = performance.now() - t0;
    await first.waitForSelector("table.hosts tbody tr");
    const usable = performance.now() - t0;
    // Runs in the page: its navigation timing, as the browser measured it.
    const nav = await first.evaluate<{ dcl: number; load: number }>(
      "(() => { const e = performance.getEntriesByType('navigation')[0]; return { dcl: e ? e.domContentLoadedEventEnd : 0, load: e ? e.loadEventEnd : 0 }; })()",
    );

    const rows = [
      [
        ...["viewers", "streams", "polls", "LIST/poll", "GET/poll", "CPU s/poll"],
        ...["changed poll: LIST", "GET", "CPU s"],
      ],
    ];
    const dashboardUrl = dashboard.url;
    const pid = dashboard.child.pid as number;
    const measurePolls = async (pages: number) => {
      const quiet = await perPoll(dashboardUrl, pid, polls);
      let n = 0;
      const changed = await perPoll(dashboardUrl, pid, 1, () =>
        writeStatus(store, hostRecord("s0", "ssm", { generation: 100 + ++n + pages })),
      );
      rows.push([
        String(pages),
        String(quiet.streams),
        String(quiet.polls),
        quiet.list.toFixed(1),
        quiet.get.toFixed(1),
        quiet.cpu.toFixed(3),
        changed.list.toFixed(1),
        changed.get.toFixed(1),
        changed.cpu.toFixed(3),
      ]);
    };
    await measurePolls(1);
    const more: Page[] = [];
    for (let i = 1; i < VIEWERS; i++) {
      const viewer = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      const page = await viewer.newPage();
      await page.goto(dashboard.url, { waitUntil: "load" });
      more.push(page);
    }
    await measurePolls(VIEWERS);

    console.log(`bench:dashboard, ${count} hosts' status records (directory store)\n`);
    console.log(
      table([
        ["measure", "value"],
        ["dashboard ready (first poll, listening)", `${ready.toFixed(2)} s`],
        ["hosts page: load event (Chromium, 1280x800)", `${loaded.toFixed(0)} ms`],
        ["hosts page: first table row shown", `${usable.toFixed(0)} ms`],
        [
          "  navigation timing: DOMContentLoaded / load",
          `${nav.dcl.toFixed(0)} / ${nav.load.toFixed(0)} ms`,
        ],
        ["/api/hosts (median of 5)", `${median(apiTimes).toFixed(0)} ms`],
        [
          "nixship status --stored",
          `${status.seconds.toFixed(2)} s wall, ${status.cpuSeconds?.toFixed(2) ?? "n/a"} CPU s (exit ${status.code})`,
        ],
      ]),
    );
    console.log(`\nstore requests per poll (from the dashboard's /metrics)\n${table(rows)}`);
    await store.close();
  } finally {
    await browser?.close();
    dashboard?.child.kill("SIGTERM");
    await rm(work, { recursive: true, force: true });
  }
}

await main();
