// One agent host that fills its own prefixes (heartbeats and a release's
// markers) with 100,000 keys costs the fleet's views a bounded number of store requests: the
// quiet poll of the status view (what the dashboard and `status --stored` read), the release
// board, the deploy's agent watch (heartbeats and markers) and gc's roots each LIST what they
// did before, plus at most one page per crowded prefix, and GET nothing more; every other
// host reads as before. Counted, not timed (bench/status-junk.ts times it).
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeQuietAgentFleet } from "../../support/quiet-agent-fleet.js";
import { AgentSignalsReader } from "../channel/standing-store.js";
import type { Fleet } from "../fleet/fleet.js";
import { parseFleetValue } from "../fleet/fleet-file.js";
import { formatPublicKey, generateSecretKey, publicKeyOf } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import { HEARTBEAT_PREFIX } from "../status/heartbeat.js";
import { HOST_KEYS_READ } from "../status/host-listing.js";
import { progressPrefix } from "../status/status.js";
import { readHeartbeats, readProgress } from "../status/status-store.js";
import { FsStore } from "../store/fs-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { wrapStore } from "../store/wrap-store.js";
import { mapLimit } from "../util/pool.js";
import { rootsFromStore } from "./gc-roots.js";
import { ReleaseBoard } from "./release-board.js";
import { StatusReader } from "./status-reader.js";
import { readStatusView } from "./status-view.js";

const SYSTEM = `/nix/store/${"a".repeat(32)}-system` as StorePath;
const HOSTS = ["web1", "web2", "web3"];
/** Junk keys web2 writes: half under its heartbeat prefix, half under its markers of release 1. */
const JUNK = 100_000;

let dir: string;
let store: ObjectStore;
let fleet: Fleet;

/** What the store was asked: LIST pages, the keys they held, and GETs. */
interface Cost {
  list: number;
  keys: number;
  get: number;
}

function counted(inner: ObjectStore): { store: ObjectStore; cost: Cost } {
  const cost: Cost = { list: 0, keys: 0, get: 0 };
  const wrapped = wrapStore(inner, {
    list: async (prefix, options) => {
      cost.list++;
      const page = await inner.list(prefix, options);
      cost.keys += page.objects.length;
      return page;
    },
    get: ((key: string, options?: Parameters<ObjectStore["get"]>[1]) => {
      cost.get++;
      return inner.get(key, options);
    }) as ObjectStore["get"],
  });
  return { store: wrapped, cost };
}

/** The dashboard's readers, kept across polls as its poller keeps them, over a counted store. */
function viewers() {
  const c = counted(store);
  const reader = new StatusReader(c.store, { hosts: HOSTS });
  const signals = new AgentSignalsReader(c.store, fleet);
  const board = new ReleaseBoard(c.store);
  /** One poll of each reader, and what each cost. */
  const poll = async () => {
    const at = { ...c.cost };
    const since = (from: Cost): Cost => ({
      list: c.cost.list - from.list,
      keys: c.cost.keys - from.keys,
      get: c.cost.get - from.get,
    });
    const view = await readStatusView(fleet, fleet.hosts, { stored: true, reader, signals });
    const afterView = { ...c.cost };
    const channels = await board.poll();
    const afterBoard = { ...c.cost };
    // The deploy's agent watch reads these two each round.
    const beats = await readHeartbeats(c.store);
    const progress = await readProgress(c.store, "prod", 1);
    const afterWatch = { ...c.cost };
    const roots = await rootsFromStore(c.store, { keepReleases: 5 });
    return {
      view,
      channels,
      beats,
      progress,
      roots,
      cost: {
        view: {
          list: afterView.list - at.list,
          keys: afterView.keys - at.keys,
          get: afterView.get - at.get,
        },
        board: {
          list: afterBoard.list - afterView.list,
          keys: afterBoard.keys - afterView.keys,
          get: afterBoard.get - afterView.get,
        },
        watch: {
          list: afterWatch.list - afterBoard.list,
          keys: afterWatch.keys - afterBoard.keys,
          get: afterWatch.get - afterBoard.get,
        },
        gc: since(afterWatch),
      },
    };
  };
  return { poll };
}

/** Junk written straight into the directory store, as fast as files go (a bounded loop). */
async function writeJunk(count: number): Promise<void> {
  const beats = join(dir, HEARTBEAT_PREFIX, "web2");
  const markers = join(dir, progressPrefix("prod", 1), "web2");
  await mkdir(join(beats, "running"), { recursive: true });
  await mkdir(markers, { recursive: true });
  const half = count / 2;
  await mapLimit(
    Array.from({ length: count }, (_, i) => i),
    64,
    async (i) => {
      const n = String(i).padStart(6, "0");
      // Heartbeat keys that parse (running/<n>) and keys that do not, and markers of no state.
      if (i < half / 2) await writeFile(join(beats, "running", String(i + 1)), "x");
      else if (i < half) await writeFile(join(beats, `junk-${n}`), "x");
      else await writeFile(join(markers, `junk-${n}`), "x");
    },
  );
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-host-junk-"));
  store = await openStore(`file://${dir}?fsync=false`);
  const key = generateSecretKey("junk-1");
  fleet = parseFleetValue(
    {
      cache: { url: `file://${dir}`, publicKeys: [formatPublicKey(publicKeyOf(key))] },
      releases: { channel: "prod", publicKeys: [formatPublicKey(publicKeyOf(key))] },
      hosts: Object.fromEntries(HOSTS.map((h) => [h, { delivery: "agent", system: SYSTEM }])),
    },
    "host-junk.test.ts",
  );
  await writeQuietAgentFleet(store, key, HOSTS, SYSTEM);
});

afterAll(async () => {
  await store?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe("one host's junk under its own prefixes", () => {
  it("costs every view a bounded number of requests, and no other host's row", async () => {
    const clean = viewers();
    await clean.poll();
    const before = await clean.poll();
    expect(before.view.rows.map((r) => [r.host, r.source === "stored" && r.state])).toEqual(
      HOSTS.map((h) => [h, "success"]),
    );

    await writeJunk(JUNK);
    const crowded = viewers();
    await crowded.poll();
    const after = await crowded.poll();
    console.log(JSON.stringify({ before: before.cost, after: after.cost }));

    // Each reader LISTs at most one page more for each crowded prefix it reads (the status
    // view and the watch: the heartbeats; the board and gc: release 1's markers; the watch
    // those too), and GETs exactly what it did.
    const pages = { view: 1, board: 1, watch: 2, gc: 1 } as const;
    for (const reader of ["view", "board", "watch", "gc"] as const) {
      const was = before.cost[reader];
      const is = after.cost[reader];
      expect(is.get, reader).toBe(was.get);
      expect(is.list, reader).toBeLessThanOrEqual(was.list + pages[reader]);
      expect(is.keys, reader).toBeLessThanOrEqual(was.keys + pages[reader] * 1000);
    }
    // What was read of web2: its first HOST_KEYS_READ keys of each prefix, the rest skipped.
    expect(after.beats.skipped).toEqual(["web2"]);
    expect(before.view.warnings).toEqual([]);
    expect(after.view.warnings).toEqual([
      expect.stringContaining("heartbeat keys than an agent writes under web2:"),
    ]);
    expect(after.progress.skipped).toEqual(["web2"]);

    // web1 and web3 read exactly as before; web2 only as far as its own junk leaves it.
    const row = (poll: typeof before, host: string) => poll.view.rows.find((r) => r.host === host);
    for (const host of ["web1", "web3"]) {
      expect(row(after, host)).toEqual(row(before, host));
      expect(row(after, host)).toMatchObject({ inStep: true, liveness: "online" });
    }
    for (const host of ["web1", "web3"]) {
      expect(after.beats.hosts.get(host)).toEqual(before.beats.hosts.get(host));
      expect(after.progress.hosts.get(host)).toEqual(before.progress.hosts.get(host));
    }
    expect(after.roots.roots).toEqual(before.roots.roots);
    // The board counts web1 and web3 as before (web2's own success marker sorts after its junk).
    expect(before.channels[0]?.releases[0]?.counts).toEqual({ applied: 3, failed: 0, pending: 0 });
    expect(after.channels[0]?.releases[0]?.counts?.applied).toBeGreaterThanOrEqual(2);
    expect(HOST_KEYS_READ).toBeLessThan(1000);
  });

  it("a quiet poll over the directory store reads none of the crowded directories again", async () => {
    if (!existsSync(join(dir, HEARTBEAT_PREFIX, "web2"))) await writeJunk(JUNK);
    // A directory changed within the last 2 s is read again at each LIST (a change in the same
    // tick of the file system's clock would not show): the junk settles first.
    await new Promise((done) => setTimeout(done, 2100));
    if (!(store instanceof FsStore)) throw new Error("the test's store is a directory store");
    const fs = store;
    const crowded = viewers();
    await crowded.poll();
    const before = fs.listReads;
    const quiet = await crowded.poll();
    const after = fs.listReads;
    // Every view read as before, and the store read the clean directories' few entries again,
    // not web2's 50,000 (nor the 25,000 of its heartbeat prefix).
    expect(quiet.beats.skipped).toEqual(["web2"]);
    expect(quiet.view.rows.map((r) => r.host)).toEqual(HOSTS);
    expect(after.entries - before.entries).toBeLessThan(200);
  });
});
