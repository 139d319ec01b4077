// The rollout watch over a real directory store: the newest rollout found with one LIST and read
// only when its key or etag moved, an unreadable record reported as such, and a host's history.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { rolloutMain } from "../dashboard/rollout-page.js";
import { generateSecretKey, publicKeyOf } from "../nix/keys.js";
import { writeAnswer } from "../status/pause-answer-store.js";
import {
  type RolloutHost,
  type RolloutRecord,
  rolloutGone,
  rolloutKey,
} from "../status/rollout.js";
import { writeRollout } from "../status/rollout-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { countReads } from "../store/wrap-store.js";
import { HISTORY_ROLLOUTS, pausedRollout, RolloutWatch, withAnswers } from "./rollout-watch.js";

const SYSTEM = "/nix/store/6jw91l3wjqa85c5n7z3hsz1c903jifh8-example-web-system-v1";
/** The fleet's cache key, which signs its deploys' rollout records. */
const KEY = generateSecretKey("watch-1");
const KEYS = [publicKeyOf(KEY)];

let dir: string;
let store: ObjectStore;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-watch-"));
  store = await openStore(`file://${dir}?fsync=false`);
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

const entry = (host: string, state: RolloutHost["state"] = "confirmed"): RolloutHost => ({
  host,
  state,
  phase: null,
  system: SYSTEM,
  message: null,
});

/** A rollout started `minute` minutes past 10:00, its waves' hosts as given. */
function rollout(
  id: string,
  minute: number,
  waves: readonly (readonly RolloutHost[])[],
  over: Partial<RolloutRecord> = {},
): RolloutRecord {
  const at = new Date(Date.UTC(2026, 10, 25, 10, minute)).toISOString();
  return {
    version: 1,
    id,
    mode: "ssh",
    action: "switch",
    state: "running",
    stopped: null,
    waves: waves.map((hosts, i) => ({ index: i + 1, kind: i === 0 ? "canary" : "main", hosts })),
    startedAt: at,
    updatedAt: at,
    ...over,
  };
}

const keyOf = (r: RolloutRecord) => rolloutKey(new Date(r.startedAt), r.id);

describe("the rollout watch", () => {
  it("finds none in an empty store", async () => {
    const { store: counted, counts } = countReads(store);
    expect(await new RolloutWatch(counted, KEYS).poll()).toEqual({ status: "none" });
    expect(counts).toEqual({ list: 1, get: 0, head: 0 });
  });

  it("finds the newest rollout past objects that are not rollout records", async () => {
    const newest = rollout("00000001", 20, [[entry("web1")]]);
    await writeRollout(store, newest, KEY);
    // Sorts before every record ("0…" < "9…"): a page of one key would hold only it.
    await store.put("status/rollouts/0-stray.json", Buffer.from("{}"));
    const read = await new RolloutWatch(store, KEYS).poll();
    expect(read).toMatchObject({ status: "found", record: newest });
  });

  it("does not take a newest record the fleet's key did not sign for a rollout; the dashboard says why it is not shown", async () => {
    const newest = rollout("00000001", 20, [[entry("web1")]]);
    await writeRollout(store, newest);
    const read = await new RolloutWatch(store, KEYS).poll();
    expect(read).toEqual({
      status: "unreadable",
      key: keyOf(newest),
      problem:
        "rollout 00000001's record is not to be believed: it is not signed; anyone who can write the store could have put it there",
      disbelieved: { key: keyOf(newest), id: "00000001", why: "it is not signed" },
    });
    expect(String(rolloutMain(read, null, new Date()))).toContain(
      '<p class="problem">The newest rollout record is not shown: rollout 00000001&#39;s record is not to be believed: it is not signed;',
    );
  });

  it("reads the newest rollout once, and again only when it is rewritten", async () => {
    const first = rollout("aaaaaaaa", 0, [[entry("web1")]]);
    const newest = rollout("00000001", 20, [[entry("web1")], [entry("web2", "activating")]]);
    const middle = rollout("ffffffff", 10, [[entry("web3")]]);
    for (const r of [first, newest, middle]) await writeRollout(store, r, KEY);
    const { store: counted, counts } = countReads(store);
    const watch = new RolloutWatch(counted, KEYS);

    expect(await watch.poll()).toEqual({ status: "found", key: keyOf(newest), record: newest });
    expect(counts).toEqual({ list: 1, get: 1, head: 0 });
    expect(await watch.poll()).toEqual({ status: "found", key: keyOf(newest), record: newest });
    expect(await watch.poll()).toEqual({ status: "found", key: keyOf(newest), record: newest });
    expect(counts).toEqual({ list: 3, get: 1, head: 0 });

    const moved: RolloutRecord = {
      ...newest,
      state: "succeeded",
      waves: [
        { index: 1, kind: "canary", hosts: [entry("web1")] },
        { index: 2, kind: "main", hosts: [entry("web2")] },
      ],
      updatedAt: new Date(Date.UTC(2026, 10, 25, 10, 25)).toISOString(),
    };
    await writeRollout(store, moved, KEY);
    expect(await watch.poll()).toEqual({ status: "found", key: keyOf(newest), record: moved });
    expect(counts.get).toBe(2);
    await watch.poll();
    expect(counts.get).toBe(2);

    // A newer rollout starts: it is the one read.
    const next = rollout("bbbbbbbb", 30, [[entry("db1", "pending")]]);
    await writeRollout(store, next, KEY);
    expect(await watch.poll()).toEqual({ status: "found", key: keyOf(next), record: next });
    expect(counts.get).toBe(3);
  });

  it("reports an unreadable newest record, with its problem, and reads it once", async () => {
    await writeRollout(store, rollout("aaaaaaaa", 0, [[entry("web1")]]), KEY);
    const planted = rolloutKey(new Date(Date.UTC(2026, 10, 25, 11, 0)), "deadbeef");
    await store.put(planted, Buffer.from("{not json"));
    const { store: counted, counts } = countReads(store);
    const watch = new RolloutWatch(counted, KEYS);
    const read = await watch.poll();
    expect(read.status).toBe("unreadable");
    expect(read).toMatchObject({ key: planted });
    const problem = read.status === "unreadable" ? read.problem : "";
    const prefix = `${store.url} ${planted}: not JSON (`;
    expect(problem.slice(0, prefix.length)).toBe(prefix);
    expect(problem.length).toBeGreaterThan(prefix.length + 1);
    expect(problem.endsWith(")")).toBe(true);
    expect(await watch.poll()).toEqual(read);
    expect(counts.get).toBe(1);

    // Well-formed JSON of the wrong shape is unreadable too, naming what is wrong.
    await store.put(planted, Buffer.from(JSON.stringify({ version: 2 })));
    expect(await watch.poll()).toEqual({
      status: "unreadable",
      key: planted,
      problem: `${store.url} ${planted}: unsupported version`,
    });
    expect(counts.get).toBe(2);
  });

  it("gives a host's rollouts, newest first, with its wave", async () => {
    const oldest = rollout("aaaaaaaa", 0, [[entry("web2")], [entry("web1", "rolled-back")]]);
    // (A rollback of the oldest, which db1 went back in.)
    const without = rollout("bbbbbbbb", 10, [[entry("web2")], [entry("db1")]], {
      mode: "agent",
      undoes: "aaaaaaaa",
    });
    const newest = rollout("cccccccc", 20, [[entry("web1", "health")], [entry("web2")]], {
      action: "boot",
    });
    for (const r of [oldest, without, newest]) await writeRollout(store, r, KEY);
    // An unreadable one is passed over.
    await store.put(
      rolloutKey(new Date(Date.UTC(2026, 10, 25, 10, 15)), "deadbeef"),
      Buffer.from("[]"),
    );
    const { store: counted, counts } = countReads(store);
    const watch = new RolloutWatch(counted, KEYS);

    const history = await watch.hostHistory("web1");
    expect(history).toEqual([
      {
        id: "cccccccc",
        mode: "ssh",
        action: "boot",
        startedAt: newest.startedAt,
        updatedAt: newest.updatedAt,
        wave: 1,
        entry: entry("web1", "health"),
      },
      {
        id: "aaaaaaaa",
        mode: "ssh",
        action: "switch",
        startedAt: oldest.startedAt,
        updatedAt: oldest.updatedAt,
        wave: 2,
        entry: entry("web1", "rolled-back"),
      },
    ]);
    expect(counts.get).toBe(4);
    expect((await watch.hostHistory("db1")).map((h) => [h.id, h.mode, h.wave, h.undoes])).toEqual([
      ["bbbbbbbb", "agent", 2, "aaaaaaaa"],
    ]);
    expect(await watch.hostHistory("nobody")).toEqual([]);
    // Nothing moved: no record was read again.
    expect(counts.get).toBe(4);
  });

  it(`looks back over the newest ${HISTORY_ROLLOUTS} rollouts only`, async () => {
    await writeRollout(store, rollout("aaaaaaaa", 0, [[entry("web1")]]), KEY);
    for (let i = 1; i <= HISTORY_ROLLOUTS; i++) {
      await writeRollout(store, rollout(`${i}`.padStart(8, "0"), i, [[entry("web2")]]), KEY);
    }
    const watch = new RolloutWatch(store, KEYS);
    expect(await watch.hostHistory("web1")).toEqual([]);
    expect(await watch.hostHistory("web2")).toHaveLength(HISTORY_ROLLOUTS);
  });

  it("judges anew, as it ended, a rollout gone quiet while the watch kept its asks", async () => {
    // web1 mid-activation at 10:00; the clock then passes three heartbeats, the record the same.
    vi.useFakeTimers({ toFake: ["Date"] });
    try {
      vi.setSystemTime(new Date(Date.UTC(2026, 10, 25, 10, 1)));
      await writeRollout(store, rollout("aaaaaaaaaaaa", 0, [[entry("web1", "activating")]]), KEY);
      const watch = new RolloutWatch(store, KEYS);
      const live = (await watch.asks(["web1"])).asks.get("web1");
      expect(live?.entry.state).toBe("activating");
      expect(live?.rollout.live).toBe(true);
      vi.setSystemTime(new Date(Date.UTC(2026, 10, 25, 10, 5)));
      const quiet = (await watch.asks(["web1"])).asks.get("web1");
      expect(quiet?.entry.state).toBe("failed");
      expect(quiet?.rollout.live).toBeUndefined();
    } finally {
      vi.useRealTimers();
    }
  });

  it("names a paused rollout while its deployer waits, and not once it is gone", async () => {
    const pause = {
      afterWave: 1,
      since: new Date(Date.UTC(2026, 10, 25, 10, 1)).toISOString(),
      until: new Date(Date.UTC(2026, 10, 25, 11, 0)).toISOString(),
      onTimeout: "abort" as const,
    };
    const paused = rollout("aaaaaaaa", 0, [[entry("web1")], [entry("web2", "pending")]], {
      state: "paused",
      pauses: [pause],
      updatedAt: new Date(Date.UTC(2026, 10, 25, 10, 50)).toISOString(),
    });
    await writeRollout(store, paused, KEY);
    const watch = new RolloutWatch(store, KEYS);
    await watch.asks(["web2"]);
    const at = (h: number, m: number) => new Date(Date.UTC(2026, 10, 25, h, m));
    expect(watch.pausedNow(at(10, 55)).map((p) => p.id)).toEqual(["aaaaaaaa"]);
    // Its deadline passed, and no outcome was taken: nothing waits for an answer.
    expect(watch.pausedNow(at(11, 5))).toEqual([]);
    // Unwritten for fifteen heartbeats, before its deadline.
    const quiet = { ...paused, pauses: [{ ...pause, until: at(23, 0).toISOString() }] };
    expect(pausedRollout(quiet, at(11, 6))).toBeUndefined();
    expect(pausedRollout(quiet, at(11, 0))?.id).toBe("aaaaaaaa");
  });

  it("says a pause was answered while its deploy has not taken the answer, and not once that says it is gone", async () => {
    const at = (h: number, m: number, s = 0) => new Date(Date.UTC(2026, 10, 25, h, m, s));
    const pause = {
      afterWave: 1,
      since: at(10, 1).toISOString(),
      until: at(23, 0).toISOString(),
      onTimeout: "abort" as const,
    };
    const record = rollout("0123456789ab", 0, [[entry("web1")], [entry("web2", "pending")]], {
      state: "paused",
      pauses: [pause],
      updatedAt: at(10, 50).toISOString(),
    });
    const paused = pausedRollout(record, at(10, 51));
    expect(paused).toBeDefined();
    const list = [paused as NonNullable<typeof paused>];
    // No answer: the pause as it is.
    expect(await withAnswers(store, list, at(10, 51))).toEqual(list);
    const answer = { rollout: "0123456789ab", afterWave: 1, action: "resume" as const };
    await writeAnswer(store, { ...answer, by: "ops@x", at: at(10, 51).toISOString() });
    expect(await withAnswers(store, list, at(10, 52))).toEqual([
      { ...list[0], answer: { ...answer, by: "ops@x", at: at(10, 51).toISOString() } },
    ]);
    // Untaken for two minutes: the deploy is gone, and nothing waits.
    expect(await withAnswers(store, list, at(10, 53, 1))).toEqual([]);
    expect(
      rolloutGone(record, at(10, 53, 1), { ...answer, by: "ops@x", at: at(10, 51).toISOString() }),
    ).toBe(
      "its pause was answered (resume by ops@x at 2026-11-25T10:51:00.000Z) and its deployer has not taken the answer since (killed, or its machine stopped)",
    );
    // An answer to another pause says nothing of this one.
    expect(
      rolloutGone(record, at(10, 59), {
        ...answer,
        afterWave: 2,
        by: "ops@x",
        at: at(10, 51).toISOString(),
      }),
    ).toBeUndefined();
  });
});
