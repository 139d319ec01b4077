// The first wave's pace comes from the newest rollout records that recorded one, read from the
// fleet's store without ever holding the deploy up.
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { rolloutRecord } from "../../test/support/rollout-records.js";
import { generateSecretKey, publicKeyOf } from "../nix/keys.js";
import { type RolloutFetchPace, type RolloutRecord, rolloutKey } from "../status/rollout.js";
import { writeRollout } from "../status/rollout-store.js";
import { FsStore } from "../store/fs-store.js";
import { PACE_RECORDS, previousFetchPace } from "./previous-pace.js";

let dir: string;
let store: FsStore;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-pace-"));
  store = new FsStore(dir, { fsync: false });
});

afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

const SLOW: RolloutFetchPace = { whole: { bytes: 80_000_000, seconds: 64 } };
/** The cache key each deploy signs its record with, and the fleet's keys. */
const KEY = generateSecretKey("cache-1");
const KEYS = [publicKeyOf(KEY)];
const put = (r: RolloutRecord) => writeRollout(store, r, KEY);

/** A finished record that started `minutesAgo` minutes ago, with `fetchPace` if given. */
function record(id: string, minutesAgo: number, fetchPace?: RolloutFetchPace): RolloutRecord {
  const at = new Date(Date.UTC(2026, 10, 27, 12) - minutesAgo * 60_000).toISOString();
  return rolloutRecord([], {
    id,
    state: "succeeded",
    waves: [],
    ...(fetchPace === undefined ? {} : { fetchPace }),
    startedAt: at,
    updatedAt: at,
  });
}

describe("previousFetchPace", () => {
  it("takes the newest recorded pace, past newer records that have none", async () => {
    await put(record("aaaaaaaa01", 30, { whole: { bytes: 1, seconds: 1 } }));
    await put(record("aaaaaaaa02", 20, SLOW));
    await put(record("aaaaaaaa03", 10));
    expect(await previousFetchPace(`file://${dir}`, ["web-1"], KEYS)).toEqual(SLOW);
  });

  it(`looks no further back than the ${PACE_RECORDS} newest records, and passes over a broken one`, async () => {
    await put(record("bbbbbbbb01", 40, SLOW));
    for (let i = 0; i < PACE_RECORDS; i++) {
      await put(record(`bbbbbbbb1${i}`, 30 - i));
    }
    expect(await previousFetchPace(`file://${dir}`, ["web-1"], KEYS)).toBeUndefined();
    // A record that does not parse, newest of all, is skipped: the next one that has a pace counts.
    await rm(dir, { recursive: true, force: true });
    await put(record("cccccccc01", 20, SLOW));
    const broken = rolloutKey(new Date(Date.UTC(2026, 10, 27, 12)), "cccccccc02");
    await mkdir(join(dir, "status", "rollouts"), { recursive: true });
    await writeFile(join(dir, broken), "{not json");
    expect(await previousFetchPace(`file://${dir}`, ["web-1"], KEYS)).toEqual(SLOW);
  });

  it("takes only what was seen on one of this deploy's hosts: other hosts' links say nothing of theirs", async () => {
    const fastDatacenter: RolloutFetchPace = {
      whole: { bytes: 250_000_000, seconds: 2, hosts: ["dc-1", "dc-2"] },
    };
    const slowEdge: RolloutFetchPace = {
      whole: { bytes: 80_000_000, seconds: 64, hosts: ["edge-1"] },
      rebuilt: { bytes: 80_000_000, seconds: 8, hosts: ["edge-1", "edge-2"] },
    };
    await put(record("dddddddd01", 30, slowEdge));
    await put(record("dddddddd02", 20, fastDatacenter));
    const url = `file://${dir}`;
    // The edge hosts are judged by their own deploy, past the newer one of the datacenter.
    expect(await previousFetchPace(url, ["edge-1", "edge-9"], KEYS)).toEqual(slowEdge);
    expect(await previousFetchPace(url, ["dc-2", "edge-1"], KEYS)).toEqual(fastDatacenter);
    // Of a record, only the kinds seen on these hosts.
    expect(await previousFetchPace(url, ["edge-2"], KEYS)).toEqual({ rebuilt: slowEdge.rebuilt });
    expect(await previousFetchPace(url, ["new-1"], KEYS)).toBeUndefined();
    expect(await previousFetchPace(url, [], KEYS)).toBeUndefined();
    // A record from before paces named their hosts counts for any host.
    await put(record("dddddddd03", 10, SLOW));
    expect(await previousFetchPace(url, ["new-1"], KEYS)).toEqual(SLOW);
  });

  it("passes over a pace in a record no cache key signed (planted: deltas off, waves held up)", async () => {
    await put(record("eeeeeeee01", 30, SLOW));
    await writeRollout(store, record("eeeeeeee02", 20, { whole: { bytes: 1e9, seconds: 1 } }));
    expect(await previousFetchPace(`file://${dir}`, ["web-1"], KEYS)).toEqual(SLOW);
  });

  it("gives nothing without a store, or from one that cannot be read", async () => {
    expect(await previousFetchPace(undefined, ["web-1"], KEYS)).toBeUndefined();
    expect(
      await previousFetchPace(
        "s3://no-such-bucket?endpoint=http://127.0.0.1:9&region=x",
        ["web-1"],
        KEYS,
      ),
    ).toBeUndefined();
  });
});
