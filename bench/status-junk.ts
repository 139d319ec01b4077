// bench:status-junk: what one agent host's junk under its own prefixes costs
// the fleet's views. A 3-host agent fleet in a directory store, measured clean and then with
// N junk keys under web2's heartbeat prefix and N under its markers of the current release:
// the dashboard's quiet poll (FleetPoller, in process: seconds, store requests and the keys its
// LIST pages held),
// `nixship status --stored` and `nixship cache gc --dry-run` (wall time, peak RSS), and the
// dashboard's peak RSS over some seconds of polls.
//
//   npm run bench:status-junk [-- --junk 100000] [--bin dist/cli/bin.js]

import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { FleetPoller, type PollReport } from "../src/dashboard/poller.js";
import { loadFleet } from "../src/fleet/load-fleet.js";
import { formatPublicKey, generateSecretKey, publicKeyOf } from "../src/nix/keys.js";
import type { StorePath } from "../src/nix/store-path.js";
import { HEARTBEAT_PREFIX } from "../src/status/heartbeat.js";
import { progressPrefix } from "../src/status/status.js";
import type { ObjectStore } from "../src/store/object-store.js";
import { openStore } from "../src/store/url.js";
import { mapLimit } from "../src/util/pool.js";
import { countingKeys } from "../support/counting-keys.js";
import { writeQuietAgentFleet } from "../support/quiet-agent-fleet.js";
import { measure } from "./measure.js";
import { mb, table } from "./stats.js";

const DEFAULT_BIN = fileURLToPath(new URL("../../dist/cli/bin.js", import.meta.url));
const SYSTEM = "/nix/store/6jw91l3wjqa85c5n7z3hsz1c903jifh8-example-web-system-v1" as StorePath;
const HOSTS = ["web1", "web2", "web3"];
const QUIET_POLLS = 51;
/** How long the dashboard runs for its peak RSS (some 25 polls past its first). */
const DASHBOARD_SECONDS = 6;

async function fillFleet(store: ObjectStore): Promise<string> {
  const key = generateSecretKey("bench-junk-1");
  await writeQuietAgentFleet(store, key, HOSTS, SYSTEM);
  return formatPublicKey(publicKeyOf(key));
}

/** `count` keys under web2's heartbeat prefix and `count` under its markers of release 1. */
async function writeJunk(root: string, count: number): Promise<void> {
  const beats = join(root, HEARTBEAT_PREFIX, "web2", "running");
  const markers = join(root, progressPrefix("prod", 1), "web2");
  await mkdir(beats, { recursive: true });
  await mkdir(markers, { recursive: true });
  await mapLimit(
    Array.from({ length: count }, (_, i) => i),
    64,
    async (i) => {
      await writeFile(join(beats, String(i + 1)), "x");
      await writeFile(join(markers, `junk-${String(i).padStart(6, "0")}`), "x");
    },
  );
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { junk: { type: "string" }, bin: { type: "string" } } });
  const junk = Number(values.junk ?? 100_000);
  const bin = values.bin === undefined ? DEFAULT_BIN : resolve(values.bin);
  const work = await mkdtemp(join(tmpdir(), "nixship-bench-junk-"));
  try {
    const root = join(work, "cache");
    const url = `file://${root}?fsync=false`;
    const store = await openStore(url);
    const releaseKey = await fillFleet(store);
    await writeFile(join(root, "nix-cache-info"), "StoreDir: /nix/store\n");
    const fleetFile = join(work, "nixship.json");
    await writeFile(
      fleetFile,
      JSON.stringify({
        cache: { url, publicKeys: [`bench-cache-1:${Buffer.alloc(32, 1).toString("base64")}`] },
        releases: { channel: "prod", publicKeys: [releaseKey] },
        hosts: Object.fromEntries(HOSTS.map((h) => [h, { delivery: "agent", system: SYSTEM }])),
      }),
    );
    const fleet = await loadFleet(fleetFile);
    const rows = [["junk keys", "what", "seconds", "LIST", "keys", "GET", "peak RSS"]];
    const run = async (label: string) => {
      const counted = countingKeys(store);
      const poller = new FleetPoller(fleet, counted.store);
      const polled = async () => {
        const keys = counted.keys();
        const report = await poller.pollOnce();
        return { ...report, keys: counted.keys() - keys };
      };
      const first = await polled();
      // The median of QUIET_POLLS quiet polls (a machine shared with other runs is noisy).
      const quiet: (PollReport & { keys: number })[] = [];
      for (let i = 0; i < QUIET_POLLS; i++) quiet.push(await polled());
      quiet.sort((a, b) => a.seconds - b.seconds);
      const median = quiet[Math.floor(QUIET_POLLS / 2)] as PollReport & { keys: number };
      // A poll past the dashboard's deadline (60 s) fails: that is a figure too.
      for (const [what, poll] of [
        ["dashboard first poll", first],
        [`dashboard quiet poll (median of ${QUIET_POLLS})`, median],
      ] as const) {
        rows.push([
          label,
          what,
          `${poll.seconds.toFixed(3)}${poll.error === undefined ? "" : " (failed)"}`,
          String(poll.requests.list),
          String(poll.keys),
          String(poll.requests.get),
          "",
        ]);
      }
      for (const [what, args] of [
        ["status --stored", ["status", "--fleet", fleetFile, "--stored"]],
        ["cache gc --dry-run", ["cache", "gc", "--cache", url, "--dry-run", "--wait", "0"]],
      ] as const) {
        const m = await measure(process.execPath, [bin, ...args], process.env);
        if (m.code !== 0) throw new Error(`${what} exited ${m.code}: ${m.stderrTail}`);
        rows.push([label, what, m.seconds.toFixed(2), "", "", "", mb(m.maxRssBytes ?? Number.NaN)]);
      }
      // The dashboard itself, polling every 0.2 s for DASHBOARD_SECONDS, then stopped.
      const d = await measure(
        "timeout",
        ["-s", "INT", String(DASHBOARD_SECONDS), process.execPath, bin, "dashboard"].concat([
          "--fleet",
          fleetFile,
          "--listen",
          "127.0.0.1:0",
          "--interval",
          "0.2",
        ]),
        process.env,
      );
      if (d.code !== 0 && d.code !== 124)
        throw new Error(`dashboard exited ${d.code}: ${d.stderrTail}`);
      rows.push([
        label,
        `dashboard, ${DASHBOARD_SECONDS} s`,
        "",
        "",
        "",
        "",
        mb(d.maxRssBytes ?? Number.NaN),
      ]);
    };
    await run("0");
    const started = performance.now();
    await writeJunk(root, junk);
    const wrote = ((performance.now() - started) / 1000).toFixed(0);
    await run(`${junk} + ${junk}`);
    console.log(
      `3 agent hosts, web2 with N heartbeat keys and N markers of junk (written in ${wrote} s); CLI: ${bin}\n${table(rows, 2)}`,
    );
    await store.close();
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

await main();
