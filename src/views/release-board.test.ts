// The release board over a real directory store: channels and their newest releases, the
// current one, expiry, hosts' counts from the markers, and what each poll costs in GETs.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { generateSecretKey, publicKeyOf, type SecretKey } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import type { SignedRelease } from "../release/release.js";
import { publishRelease } from "../release/release-store.js";
import { type StatusState, statusRecord } from "../status/status.js";
import { writeStatus } from "../status/status-store.js";
import { readBody, SMALL_OBJECT_LIMIT } from "../store/helpers.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { countReads, wrapStore } from "../store/wrap-store.js";
import {
  BOARD_RELEASES,
  type BoardRelease,
  COUNTED_RELEASES,
  ReleaseBoard,
} from "./release-board.js";

const SYSTEM = `/nix/store/${"a".repeat(32)}-system` as StorePath;

let dir: string;
let store: ObjectStore;
let key: SecretKey;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-board-"));
  store = await openStore(`file://${dir}?fsync=false`);
  key = generateSecretKey("board-1");
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

function publish(
  channel: string,
  hosts: readonly string[],
  time?: { now: Date; maxAge: number },
): Promise<SignedRelease> {
  return publishRelease(store, {
    channel,
    hosts: Object.fromEntries(hosts.map((h) => [h, { path: SYSTEM }])),
    kind: "deploy",
    action: "switch",
    health: { http: [], commands: [] },
    confirmTimeout: 30,
    key,
    ...(time === undefined ? {} : time),
  });
}

/** A host's report on release `seq` of `channel`: its record and the state's marker. */
function report(channel: string, seq: number, host: string, state: StatusState): Promise<void> {
  const now = new Date().toISOString();
  return writeStatus(
    store,
    statusRecord({
      host,
      mode: "agent",
      release: { channel, seq },
      desired: SYSTEM,
      what: {
        state,
        phase: state === "failed" ? "switch" : null,
        error: state === "failed" ? "boom" : null,
        rolledBack: state === "failed" ? true : null,
      },
      startedAt: now,
      updatedAt: now,
    }),
  );
}

/** The board's view of a release as published: what `release list` shows, expiry and counts. */
function shown(
  signed: SignedRelease,
  current: boolean,
  counts: BoardRelease["counts"],
  expired = false,
): BoardRelease {
  const { release } = signed;
  return {
    status: "ok",
    seq: release.seq,
    created: release.created,
    kind: "deploy",
    digest: signed.digest,
    hosts: Object.keys(release.hosts).length,
    current,
    expires: release.expires,
    expired,
    trust: { status: "trusted", key: "board-1" },
    counts,
  };
}

async function readBytes(k: string): Promise<Uint8Array> {
  const got = await store.get(k);
  if (got === undefined) throw new Error(`${k} is missing`);
  return new Uint8Array(await readBody(got.body, k));
}

/** `inner` with the keys of its GETs logged, in order. */
function logGets(inner: ObjectStore): { store: ObjectStore; keys: string[] } {
  const keys: string[] = [];
  const wrapped = wrapStore(inner, {
    get: ((k: string, options?: Parameters<ObjectStore["get"]>[1]) => {
      keys.push(k);
      return inner.get(k, options);
    }) as ObjectStore["get"],
  });
  return { store: wrapped, keys };
}

describe("the release board", () => {
  it("lists each channel's releases, newest first, the current one, expiry and counts", async () => {
    const web1 = await publish("web", ["a1", "a2"]);
    const web2 = await publish("web", ["a1", "a2", "a3"]);
    const web3 = await publish("web", ["a1", "a2", "a3", "a4"]);
    const old = await publish("db", ["d1"], {
      now: new Date("2020-01-01T00:00:00.000Z"),
      maxAge: 3600,
    });
    expect(old.release.expires).toBe("2020-01-01T01:00:00.000Z");
    await report("web", 3, "a1", "applying");
    await report("web", 3, "a1", "success");
    await report("web", 3, "a2", "failed");
    await report("web", 3, "a3", "rejected");
    await report("web", 3, "a4", "applying");
    await report("web", 1, "a1", "success");
    await report("db", 1, "d1", "failed");

    const board = new ReleaseBoard(store, [publicKeyOf(key)]);
    expect(await board.poll()).toEqual([
      {
        channel: "db",
        currentSeq: 1,
        expires: "2020-01-01T01:00:00.000Z",
        currentTrust: { status: "trusted", key: "board-1" },
        releases: [shown(old, true, { applied: 0, failed: 1, pending: 0 }, true)],
        total: 1,
      },
      {
        channel: "web",
        currentSeq: 3,
        expires: web3.release.expires,
        currentTrust: { status: "trusted", key: "board-1" },
        releases: [
          shown(web3, true, { applied: 1, failed: 2, pending: 1 }),
          shown(web2, false, { applied: 0, failed: 0, pending: 3 }),
          shown(web1, false, { applied: 1, failed: 0, pending: 1 }),
        ],
        total: 3,
      },
    ]);
  });

  it("marks a release signed by a key the fleet does not trust, and says when none is known", async () => {
    await publish("web", ["a1"]);
    const trusted = publicKeyOf(key);
    // A bucket writer's own key signs the next release and points the channel at it.
    key = generateSecretKey("forger-1");
    await publish("web", ["a1"]);
    const [web] = await new ReleaseBoard(store, [trusted]).poll();
    const [forged, good] = web?.releases ?? [];
    expect(forged?.current).toBe(true);
    expect(forged?.trust.status).toBe("untrusted");
    expect(forged?.trust).toMatchObject({
      problem: expect.stringMatching(
        /signed by key 'forger-1', which is not trusted \(trusted: board-1\)/,
      ),
    });
    expect(web?.currentTrust?.status).toBe("untrusted");
    expect(good?.trust).toEqual({ status: "trusted", key: "board-1" });
    // A release copied under another number is not that release.
    await store.put("releases/web/3.json", await readBytes("releases/web/1.json"));
    const [again] = await new ReleaseBoard(store, [trusted]).poll();
    expect(again?.releases[0]?.trust).toMatchObject({
      status: "untrusted",
      problem: expect.stringContaining("holds release 1 of channel web"),
    });
    const [unverified] = await new ReleaseBoard(store).poll();
    expect(unverified?.currentTrust?.status).toBe("unverified");
    expect(unverified?.releases.every((r) => r.trust.status === "unverified")).toBe(true);
  });

  it("shows a channel without its channel file, with no release current", async () => {
    await publish("web", ["a1"]);
    await publish("web", ["a1"]);
    await store.delete("channels/web.json");
    const [web, ...rest] = await new ReleaseBoard(store, [publicKeyOf(key)]).poll();
    expect(rest).toEqual([]);
    expect(web?.channel).toBe("web");
    expect(web?.currentSeq).toBeNull();
    expect(web?.expires).toBeNull();
    expect(web?.releases.map((r) => [r.seq, r.current])).toEqual([
      [2, false],
      [1, false],
    ]);
  });

  it("shows a malformed release file as such, without expiry", async () => {
    await publish("web", ["a1"]);
    await store.put("releases/web/2.json", Buffer.from("{not a release"));
    const [web] = await new ReleaseBoard(store, [publicKeyOf(key)]).poll();
    const [planted, good] = web?.releases ?? [];
    expect(planted?.status).toBe("malformed");
    expect(planted?.seq).toBe(2);
    expect(planted?.current).toBe(false);
    expect(planted).not.toHaveProperty("expires");
    expect(planted?.counts).toEqual({ applied: 0, failed: 0, pending: 0 });
    expect(good?.status).toBe("ok");
    expect(good?.current).toBe(true);
    expect(web?.currentSeq).toBe(1);
  });

  it(`shows at most ${BOARD_RELEASES} releases and counts only the newest ${COUNTED_RELEASES}`, async () => {
    const count = BOARD_RELEASES + 2;
    for (let i = 0; i < count; i++) await publish("web", ["a1", "a2"]);
    for (let seq = 1; seq <= count; seq++) await report("web", seq, "a1", "success");
    const [web] = await new ReleaseBoard(store, [publicKeyOf(key)]).poll();
    expect(web?.total).toBe(count);
    expect(web?.currentSeq).toBe(count);
    const releases = web?.releases ?? [];
    expect(releases.map((r) => r.seq)).toEqual(
      Array.from({ length: BOARD_RELEASES }, (_, i) => count - i),
    );
    expect(releases.map((r) => r.current)).toEqual(
      Array.from({ length: BOARD_RELEASES }, (_, i) => i === 0),
    );
    expect(releases.map((r) => r.counts)).toEqual(
      Array.from({ length: BOARD_RELEASES }, (_, i) =>
        i < COUNTED_RELEASES ? { applied: 1, failed: 0, pending: 1 } : null,
      ),
    );
  });

  it("reads each file once: a poll with nothing changed sends no GET", async () => {
    await publish("web", ["a1", "a2"]);
    await publish("web", ["a1", "a2"]);
    await publish("db", ["d1"]);
    const logged = logGets(store);
    const { store: counted, counts } = countReads(logged.store);
    const board = new ReleaseBoard(counted, [publicKeyOf(key)]);

    const first = await board.poll();
    // Each channel file and each release file, once.
    expect(counts.get).toBe(5);
    expect([...logged.keys].sort()).toEqual([
      "channels/db.json",
      "channels/web.json",
      "releases/db/1.json",
      "releases/web/1.json",
      "releases/web/2.json",
    ]);

    const lists = counts.list;
    const second = await board.poll();
    expect(counts.get).toBe(5);
    expect(counts.list).toBeGreaterThan(lists);
    expect(second).toEqual(first);

    // Markers are LISTed, not read: a new report changes the counts without a GET.
    await report("web", 2, "a1", "success");
    const third = await board.poll();
    expect(counts.get).toBe(5);
    expect(third[1]?.releases[0]?.counts).toEqual({ applied: 1, failed: 0, pending: 1 });

    // A new release: the channel file moved, and the new file is read, once.
    const web3 = await publish("web", ["a1", "a2", "a3"]);
    logged.keys.length = 0;
    const fourth = await board.poll();
    expect(counts.get).toBe(7);
    expect([...logged.keys].sort()).toEqual(["channels/web.json", "releases/web/3.json"]);
    expect(fourth[1]?.currentSeq).toBe(3);
    expect(fourth[1]?.releases[0]).toEqual(
      shown(web3, true, { applied: 0, failed: 0, pending: 3 }),
    );
    expect(fourth[1]?.releases.map((r) => [r.seq, r.current])).toEqual([
      [3, true],
      [2, false],
      [1, false],
    ]);

    await board.poll();
    expect(counts.get).toBe(7);
  });
});

describe("files a bucket writer can plant", () => {
  it("passes over a channel file no channel could be named by, and polls on", async () => {
    await publish("web", ["a1"]);
    await store.put("channels/X Y.json", Buffer.from("{}"));
    const channels = await new ReleaseBoard(store, [publicKeyOf(key)]).poll();
    expect(channels.map((c) => c.channel)).toEqual(["web"]);
  });

  it("shows a channel file or a release file too large to be one as untrusted and malformed, reads it once, and polls on", async () => {
    await publish("web", ["a1"]);
    await publish("db", ["d1"]);
    const huge = Buffer.alloc(SMALL_OBJECT_LIMIT + 1, 0x20);
    await store.put("channels/db.json", huge);
    await store.put("releases/web/2.json", huge);
    const { store: counted, counts } = countReads(store);
    const board = new ReleaseBoard(counted, [publicKeyOf(key)]);
    const [db, web] = await board.poll();
    expect(db?.currentTrust).toMatchObject({
      status: "untrusted",
      problem: expect.stringContaining("channels/db.json"),
    });
    expect(web?.releases[0]).toMatchObject({
      seq: 2,
      status: "malformed",
      trust: { status: "untrusted" },
    });
    expect(web?.releases[1]).toMatchObject({ seq: 1, status: "ok" });
    const gets = counts.get;
    await board.poll();
    // Neither is read again: the release file never changes, the channel file kept its etag.
    expect(counts.get).toBe(gets);
  });
});
