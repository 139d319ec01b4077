// The dashboard's quiet polls (the real FleetPoller) when one agent host writes junk under its own
// prefixes (its heartbeats, its markers of the current release), on a directory store, s3rver and
// moto: from the second poll on, each poll reads a few keys of that host's junk, not a page of
// it, and LISTs, GETs and HEADs no more than a poll of the same fleet without the junk, plus one
// LIST per crowded prefix; the host stays named as crowded, and an honest host's new heartbeat and
// marker show at the next poll. Counted, not timed (bench/status-junk.ts times it).

import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { FleetPoller, type PollReport } from "../src/dashboard/poller.js";
import type { Fleet } from "../src/fleet/fleet.js";
import { parseFleetValue } from "../src/fleet/fleet-file.js";
import { formatPublicKey, generateSecretKey, publicKeyOf } from "../src/nix/keys.js";
import type { StorePath } from "../src/nix/store-path.js";
import { HEARTBEAT_PREFIX } from "../src/status/heartbeat.js";
import { HOST_KEYS_READ } from "../src/status/host-listing.js";
import { progressPrefix, statusRecord } from "../src/status/status.js";
import { writeHeartbeat, writeStatus } from "../src/status/status-store.js";
import type { ObjectStore } from "../src/store/object-store.js";
import { openStore } from "../src/store/url.js";
import { mapLimit } from "../src/util/pool.js";
import { countingKeys } from "../support/counting-keys.js";
import { writeQuietAgentFleet } from "../support/quiet-agent-fleet.js";
import type { S3Bucket } from "../support/s3-server.js";
import { S3_SERVERS } from "./support/s3-servers.js";

const SYSTEM = `/nix/store/${"b".repeat(32)}-system` as StorePath;
const HOSTS = ["web1", "web2", "web3"];
/** Junk keys web2 writes under each of its two prefixes: more than a LIST page holds. */
const JUNK = 1100;
/** The prefixes web2 crowds: its heartbeats and its markers of release 1. */
const CROWDED_PREFIXES = 2;
const QUIET_POLLS = 3;

/** A store to run on: its URL, how junk is written to it, and how it is closed. */
interface Place {
  readonly url: string;
  /** Writes `keys` (each a few bytes) as fast as the store takes them. */
  readonly putAll: (store: ObjectStore, keys: readonly string[]) => Promise<void>;
  readonly close: () => Promise<void>;
}

/** A directory store: junk written straight as files. */
async function directory(): Promise<Place> {
  const dir = await mkdtemp(join(tmpdir(), "nixship-dashboard-junk-"));
  return {
    url: `file://${dir}?fsync=false`,
    putAll: (_store, keys) =>
      mapLimit(keys, 64, async (key) => {
        await mkdir(join(dir, key, ".."), { recursive: true });
        await writeFile(join(dir, key), "x");
      }).then(() => undefined),
    close: () => rm(dir, { recursive: true, force: true }),
  };
}

let runs = 0;
/** A bucket of an S3 server, each run under a prefix of its own; junk written by PUTs. */
function bucketPlace(server: S3Bucket): Place {
  return {
    url: server.url.replace(`s3://${server.bucket}`, `s3://${server.bucket}/junk-${++runs}`),
    putAll: (store, keys) =>
      mapLimit(keys, 32, (key) => store.put(key, Buffer.from("x"))).then(() => undefined),
    close: async () => undefined,
  };
}

/** What a poll asked of the store: LIST calls and the keys their pages held, GETs, HEADs. */
interface Cost {
  list: number;
  keys: number;
  get: number;
  head: number;
}

/** A dashboard's poller over `store`, and each poll's cost. */
function dashboard(fleet: Fleet, store: ObjectStore) {
  const counted = countingKeys(store);
  const poller = new FleetPoller(fleet, counted.store);
  return {
    poller,
    poll: async (): Promise<{ report: PollReport; cost: Cost }> => {
      const keys = counted.keys();
      const report = await poller.pollOnce();
      expect(report.error).toBeUndefined();
      return { report, cost: { ...report.requests, keys: counted.keys() - keys } };
    },
  };
}

function fleetOf(url: string, releaseKey: string): Fleet {
  return parseFleetValue(
    {
      cache: { url, publicKeys: [releaseKey] },
      releases: { channel: "prod", publicKeys: [releaseKey] },
      hosts: Object.fromEntries(HOSTS.map((h) => [h, { delivery: "agent", system: SYSTEM }])),
    },
    "dashboard-junk.test.ts",
  );
}

/** The test on one store: a clean fleet's quiet polls, then the same with web2's junk. */
async function quietPollsWithJunk(place: Place): Promise<void> {
  const secret = generateSecretKey("dashboard-junk-1");
  const releaseKey = formatPublicKey(publicKeyOf(secret));
  const fleet = fleetOf(place.url, releaseKey);
  const store = await openStore(place.url);
  try {
    await writeQuietAgentFleet(store, secret, HOSTS, SYSTEM);
    const clean = dashboard(fleet, store);
    await clean.poll();
    const cleanCosts: Cost[] = [];
    for (let i = 0; i < QUIET_POLLS; i++) cleanCosts.push((await clean.poll()).cost);
    const was = cleanCosts[QUIET_POLLS - 1] as Cost;
    expect(cleanCosts.every((c) => JSON.stringify(c) === JSON.stringify(was))).toBe(true);

    await place.putAll(store, [
      ...Array.from({ length: JUNK }, (_, i) => `${HEARTBEAT_PREFIX}web2/running/${i + 1}`),
      ...Array.from(
        { length: JUNK },
        (_, i) => `${progressPrefix("prod", 1)}web2/junk-${String(i).padStart(5, "0")}`,
      ),
    ]);
    const crowded = dashboard(fleet, store);
    await crowded.poll();
    // Each crowded prefix: one LIST more than clean (the one that starts after web2), and a
    // few of web2's keys (one more than is taken, to see it is still crowded), not a page.
    const bound = (cost: Cost, extraLists: number) => {
      expect(cost.get).toBe(was.get);
      expect(cost.head).toBe(was.head);
      expect(cost.list).toBeLessThanOrEqual(was.list + extraLists);
      expect(cost.keys).toBeLessThanOrEqual(was.keys + CROWDED_PREFIXES * (HOST_KEYS_READ + 1));
    };
    for (let i = 0; i < QUIET_POLLS; i++) {
      const { cost } = await crowded.poll();
      bound(cost, CROWDED_PREFIXES);
      expect(crowded.poller.snapshot?.warnings).toEqual([
        expect.stringContaining("heartbeat keys than an agent writes under web2:"),
      ]);
    }
    const rows = () => crowded.poller.snapshot?.rows ?? [];
    expect(rows().find((r) => r.host === "web1")).toMatchObject({ liveness: "online" });

    // Honest hosts go on: web1 pauses (a heartbeat key before web2's, so the keys before the
    // crowded host are one more than the last poll saw), web3 fails release 1 (a marker after
    // web2's). The next poll shows both, with at most one LIST more per crowded prefix.
    const now = new Date().toISOString();
    await writeHeartbeat(store, {
      host: "web1",
      channel: "prod",
      state: "paused",
      every: 330,
      lastSeq: 1,
      at: now,
    });
    await writeStatus(
      store,
      statusRecord({
        host: "web3",
        mode: "agent",
        release: { channel: "prod", seq: 1 },
        desired: SYSTEM,
        system: { current: SYSTEM, generation: 2 },
        what: { state: "failed", phase: "switch", error: "boom", rolledBack: false },
        startedAt: now,
        updatedAt: now,
      }),
    );
    const changed = await crowded.poll();
    expect(changed.report.changed).toBe(true);
    expect(rows().find((r) => r.host === "web1")).toMatchObject({ liveness: "paused" });
    expect(rows().find((r) => r.host === "web3")).toMatchObject({ state: "failed" });
    expect(crowded.poller.snapshot?.warnings).toEqual([
      expect.stringContaining("heartbeat keys than an agent writes under web2:"),
    ]);
    const counts = crowded.poller.snapshot?.channels[0]?.releases[0]?.counts;
    expect(counts?.failed).toBe(1);
    expect(changed.cost.list).toBeLessThanOrEqual(was.list + 2 * CROWDED_PREFIXES);
    expect(changed.cost.keys).toBeLessThanOrEqual(
      was.keys + 2 + CROWDED_PREFIXES * (HOST_KEYS_READ + 1),
    );
    // The poll after it has learnt the new layout: as cheap as before.
    const { cost } = await crowded.poll();
    expect(cost.list).toBeLessThanOrEqual(was.list + CROWDED_PREFIXES);
    expect(cost.keys).toBeLessThanOrEqual(was.keys + 2 + CROWDED_PREFIXES * (HOST_KEYS_READ + 1));
  } finally {
    await store.close();
  }
}

describe("the dashboard's quiet polls with one host's junk under its own prefixes", () => {
  it("read a few keys of the junk on a directory store", async () => {
    const place = await directory();
    try {
      await quietPollsWithJunk(place);
    } finally {
      await place.close();
    }
  });

  describe.each(S3_SERVERS)("on $name", ({ start }) => {
    let server: S3Bucket;
    beforeAll(async () => {
      // The check of the server's conditional writes is remembered in a temp dir.
      vi.stubEnv("NIXSHIP_CACHE_DIR", await mkdtemp(join(tmpdir(), "nixship-junk-cache-")));
      server = await start();
    });
    afterAll(async () => {
      await rm(process.env.NIXSHIP_CACHE_DIR ?? "", { recursive: true, force: true });
      vi.unstubAllEnvs();
      await server?.close();
    });

    it("read a few keys of the junk", async () => {
      await quietPollsWithJunk(bucketPlace(server));
    });
  });
});
