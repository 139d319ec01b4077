// bench:status: `nixship status --stored` over N hosts' status records in a directory store
// (the target: 10,000 hosts under 3 s), and what a StatusReader's polls cost: the first
// (a GET per record), one where nothing changed (LIST calls only) and one after a record changed
// (one GET).
//
//   npm run bench:status [-- --hosts 10000] [--runs 3]
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { StatusRecord } from "../src/status/status.js";
import { writeStatus } from "../src/status/status-store.js";
import { openStore } from "../src/store/url.js";
import { mapLimit } from "../src/util/pool.js";
import { StatusReader } from "../src/views/status-reader.js";
import { measure } from "./measure.js";
import { mb, table } from "./stats.js";

/** The CLI this bench measures: dist/ (npm run build), beside dist-bench/. */
const NIXSHIP_BIN = fileURLToPath(new URL("../../dist/cli/bin.js", import.meta.url));
const SYSTEM = "/nix/store/6jw91l3wjqa85c5n7z3hsz1c903jifh8-example-web-system-v1";

function record(host: string, generation: number): StatusRecord {
  const at = new Date().toISOString();
  return {
    version: 1,
    host,
    mode: "ssm",
    channel: null,
    seq: null,
    desired: SYSTEM,
    current: SYSTEM,
    generation,
    previous: null,
    state: "success",
    phase: null,
    error: null,
    rolledBack: null,
    startedAt: at,
    updatedAt: at,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { hosts: { type: "string" }, runs: { type: "string" } },
  });
  const count = Number(values.hosts ?? 10_000);
  const runs = Number(values.runs ?? 3);
  const work = await mkdtemp(join(tmpdir(), "nixship-bench-status-"));
  try {
    const url = `file://${join(work, "cache")}?fsync=false`;
    const hosts = Array.from({ length: count }, (_, i) => `h${i}`);
    const store = await openStore(url);
    await mapLimit(hosts, 32, (h) => writeStatus(store, record(h, 1)));
    const fleet = join(work, "nixship.json");
    const key = `bench-status-1:${Buffer.alloc(32, 1).toString("base64")}`;
    await writeFile(
      fleet,
      JSON.stringify({
        cache: { url, publicKeys: [key] },
        hosts: Object.fromEntries(
          hosts.map((h, i) => [
            h,
            // One instance a host: the fleet refuses two hosts on one.
            {
              delivery: "ssm",
              instanceId: `i-${i.toString(16).padStart(17, "0")}`,
              system: SYSTEM,
            },
          ]),
        ),
      }),
    );
    const rows = [["run", "seconds", "cpu s", "peak RSS"]];
    for (let i = 1; i <= runs; i++) {
      const m = await measure(
        process.execPath,
        [NIXSHIP_BIN, "status", "--fleet", fleet, "--stored"],
        process.env,
      );
      if (m.code !== 0) throw new Error(`status exited ${m.code}: ${m.stderrTail}`);
      rows.push([
        String(i),
        m.seconds.toFixed(2),
        m.cpuSeconds?.toFixed(2) ?? "n/a",
        mb(m.maxRssBytes ?? Number.NaN),
      ]);
    }
    console.log(`nixship status --stored, ${count} hosts (directory store)\n${table(rows)}\n`);
    const reader = new StatusReader(store);
    const polls = [["poll", "LIST calls", "GETs", "ms"]];
    const poll = async (name: string) => {
      const started = performance.now();
      const p = await reader.poll();
      polls.push([
        name,
        String(p.listCalls),
        String(p.getCalls),
        (performance.now() - started).toFixed(0),
      ]);
    };
    await poll("first");
    await poll("unchanged");
    await writeStatus(store, record("h1", 2));
    await poll("one changed");
    console.log(`StatusReader polls, ${count} records\n${table(polls)}`);
    await store.close();
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

await main();
