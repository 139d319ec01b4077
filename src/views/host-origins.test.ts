import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { generateSecretKey, publicKeyOf } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import { publishRelease, releaseOriginKey } from "../release/release-store.js";
import { type RolloutRecord, rolloutKey } from "../status/rollout.js";
import { writeRollout } from "../status/rollout-store.js";
import type { RecordOrigin, StatusRecord } from "../status/status.js";
import { readAll } from "../store/helpers.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { shownOriginText } from "../ui/origin-text.js";
import { type OriginCache, PROBLEM_RETRY_MS, readHostOrigins } from "./host-origins.js";

const A = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-web-v1" as StorePath;
const B = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-web-v2" as StorePath;
const key = generateSecretKey("prod-release-1");
const cacheKey = generateSecretKey("prod-cache-1");
const KEYS = { release: [publicKeyOf(key)], rollout: [publicKeyOf(cacheKey)] };
const started = new Date("2026-11-25T10:00:00.000Z");
const ROLLOUT = rolloutKey(started, "0123456789ab");

const record = (host: string, over: Partial<StatusRecord> = {}, origin?: RecordOrigin) =>
  ({
    version: 1,
    host,
    mode: "ssh",
    channel: null,
    seq: null,
    desired: A,
    current: A,
    generation: 3,
    ...(origin === undefined ? {} : { origin }),
    state: "success",
    phase: null,
    error: null,
    rolledBack: null,
    startedAt: started.toISOString(),
    updatedAt: started.toISOString(),
    ...over,
  }) as StatusRecord;

/** `store` with its GETs counted. */
function counting(inner: ObjectStore): { store: ObjectStore; gets: string[] } {
  const gets: string[] = [];
  const store = new Proxy(inner, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (prop === "get") {
        return (k: string, ...rest: unknown[]) => {
          gets.push(k);
          return (target.get as (...a: unknown[]) => unknown)(k, ...rest);
        };
      }
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { store, gets };
}

let dir: string;
let store: ObjectStore;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-host-origins-"));
  store = await openStore(`file://${dir}?fsync=false`);
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

describe("who put each host's system there", () => {
  it("reads each rollout record and release origin once, whatever the hosts, and marks what it cannot believe", async () => {
    const rollout: RolloutRecord = {
      version: 1,
      id: "0123456789ab",
      mode: "ssh",
      action: "switch",
      state: "succeeded",
      stopped: null,
      // It gave web1-3 and web9 system A; web10 it never named.
      waves: [
        {
          index: 1,
          kind: "main",
          hosts: ["web1", "web2", "web3", "web7", "web9"].map((host) => ({
            host,
            state: "confirmed" as const,
            phase: null,
            system: A,
            before: B,
            message: null,
          })),
        },
      ],
      by: "alice@deploybox",
      sources: [{ flake: "/srv/fleet", rev: "d".repeat(40), dirty: true }],
      startedAt: started.toISOString(),
      updatedAt: started.toISOString(),
    };
    await writeRollout(store, rollout, cacheKey);
    // One written by someone without the cache key, naming whom they like.
    await writeRollout(store, { ...rollout, id: "cccccccccccc", by: "mallory@x" });
    // A rollback of it: the rollout that put web7 back.
    const undo = {
      ...rollout,
      id: "bbbbbbbbbbbb",
      by: "bob@laptop",
      sources: [],
      undoes: rollout.id,
    };
    await writeRollout(store, undo, cacheKey);
    const release = {
      channel: "prod",
      hosts: { ag1: { path: A }, ag2: { path: B }, ag3: { path: A } },
      kind: "deploy" as const,
      action: "switch" as const,
      health: { http: [], commands: [] },
      confirmTimeout: 30,
      key,
      origin: { by: "ci@runner", sources: [] },
    };
    await publishRelease(store, release);
    await publishRelease(store, release);
    // Release 2's origin edited by someone without the release key.
    const edited = JSON.parse(String(await readAll(store, releaseOriginKey("prod", 2))));
    await store.put(
      releaseOriginKey("prod", 2),
      Buffer.from(JSON.stringify({ ...edited, by: "mallory@x" })),
    );
    const records = new Map<string, StatusRecord>([
      ...["web1", "web2", "web3"].map(
        (h) => [h, record(h, {}, { kind: "rollout", key: ROLLOUT })] as const,
      ),
      // An agent older than the origin field: the release it applied and runs.
      ["ag1", record("ag1", { mode: "agent", channel: "prod", seq: 1 })],
      ["ag2", record("ag2", { mode: "agent", channel: "prod", seq: 2, desired: B, current: B })],
      // An agent that failed release 2 and runs what release 1 gave it.
      [
        "ag3",
        record(
          "ag3",
          { mode: "agent", channel: "prod", seq: 2, desired: B, state: "failed" },
          { kind: "release", channel: "prod", seq: 1 },
        ),
      ],
      // An agent that lost its state, found release 1's system there and reports release 2's
      // success without having moved: its record says it does not know what put it there.
      ["ag4", record("ag4", { mode: "agent", channel: "prod", seq: 2 }, { kind: "unknown" })],
      ["web4", record("web4", {}, { kind: "rollback", by: "bob@laptop" })],
      ["web5", record("web5", {}, { kind: "rollout", key: rolloutKey(started, "ffffffffffff") })],
      ["web6", record("web6")],
      ["web7", record("web7", {}, { kind: "rollout", key: rolloutKey(started, undo.id) })],
      ["web8", record("web8", {}, { kind: "rollout", key: rolloutKey(started, "cccccccccccc") })],
      // Records that name a signed rollout or release which never gave them what they run, as
      // a host that writes its own record (an agent) could: web9 runs B where the rollout gave
      // it A, web10 is not in it, ag5 is not in release 1.
      ["web9", record("web9", { current: B }, { kind: "rollout", key: ROLLOUT })],
      ["web10", record("web10", {}, { kind: "rollout", key: ROLLOUT })],
      [
        "ag5",
        record(
          "ag5",
          { mode: "agent", channel: "prod", seq: 1 },
          {
            kind: "release",
            channel: "prod",
            seq: 1,
          },
        ),
      ],
    ]);
    const counted = counting(store);
    const cache: OriginCache = new Map();
    const t0 = Date.now();
    const shown = await readHostOrigins(counted.store, records, KEYS, cache, t0);
    // One rollout record, one gone, and each release's file and origin: once each.
    expect(counted.gets.sort()).toEqual(
      [
        ROLLOUT,
        rolloutKey(started, "ffffffffffff"),
        rolloutKey(started, undo.id),
        rolloutKey(started, "cccccccccccc"),
        "releases/prod/1.json",
        "releases/prod/1.origin.json",
        "releases/prod/2.json",
        "releases/prod/2.origin.json",
      ].sort(),
    );
    const text = (h: string) => {
      const o = shown.get(h);
      return o === undefined ? undefined : shownOriginText(o);
    };
    expect(text("web1")).toBe(
      `deployed (rollout 0123456789ab) by alice@deploybox from /srv/fleet at ${"d".repeat(12)} (dirty tree)`,
    );
    expect(text("web3")).toBe(text("web1"));
    expect(text("ag1")).toBe("released (release prod/1) by ci@runner");
    expect(text("ag3")).toBe("released (release prod/1) by ci@runner");
    expect(text("ag2")).toMatch(/^released \(release prod\/2\), by whom unknown: .*does not match/);
    expect(text("ag2")).not.toContain("mallory");
    expect(shown.has("ag4")).toBe(false);
    expect(text("web4")).toBe("rolled back by bob@laptop");
    expect(text("web5")).toMatch(/by whom unknown: its rollout record .* is gone/);
    expect(shown.has("web6")).toBe(false);
    expect(text("web8")).toBe(
      "deployed (rollout cccccccccccc), by whom unknown: its rollout record is not to be believed: it is not signed",
    );
    expect(text("web7")).toBe(
      "rolled back (rollout bbbbbbbbbbbb, undoing 0123456789ab) by bob@laptop",
    );
    expect(text("web9")).toBe(
      "deployed (rollout 0123456789ab), by whom unknown: its rollout record gave this host another system than the one its record says it runs",
    );
    expect(text("web10")).toBe(
      "deployed (rollout 0123456789ab), by whom unknown: its rollout record does not name this host",
    );
    expect(text("ag5")).toBe(
      "released (release prod/1), by whom unknown: its release does not name this host",
    );
    // A dashboard's next poll reads nothing: what was believed is kept, and what was not is
    // shown as it was until PROBLEM_RETRY_MS passed; then only that is asked again.
    counted.gets.length = 0;
    const next = await readHostOrigins(counted.store, records, KEYS, cache, t0 + 1000);
    expect(counted.gets).toEqual([]);
    expect(next.get("web5")?.problem).toMatch(/is gone/);
    await readHostOrigins(counted.store, records, KEYS, cache, t0 + PROBLEM_RETRY_MS);
    expect(counted.gets.sort()).toEqual(
      [
        rolloutKey(started, "ffffffffffff"),
        rolloutKey(started, "cccccccccccc"),
        "releases/prod/2.json",
        "releases/prod/2.origin.json",
      ].sort(),
    );
  });

  it("of a sharded release, reads once each shard that holds a host naming it; a host named after the read is read again for", async () => {
    // 600 hosts: three shards of at most 256.
    const hosts = Object.fromEntries(
      Array.from({ length: 600 }, (_, i) => [`ag${i}`, { path: i === 7 ? B : A }]),
    );
    await publishRelease(store, {
      channel: "prod",
      hosts,
      kind: "deploy",
      action: "switch",
      health: { http: [], commands: [] },
      confirmTimeout: 30,
      key,
      origin: { by: "ci@runner", sources: [] },
    });
    const named = (h: string, current: StorePath) =>
      [
        h,
        record(
          h,
          { mode: "agent", channel: "prod", seq: 1, desired: current, current },
          {
            kind: "release",
            channel: "prod",
            seq: 1,
          },
        ),
      ] as const;
    // ag7 was given B and runs A (its record says); the others run what they were given.
    const records = new Map<string, StatusRecord>([
      named("ag1", A),
      named("ag2", A),
      named("ag7", A),
    ]);
    const counted = counting(store);
    const cache: OriginCache = new Map();
    const shown = await readHostOrigins(counted.store, records, KEYS, cache, Date.now());
    const shards = counted.gets.filter((k) => k.startsWith("release-shards/"));
    expect(new Set(shards).size).toBe(shards.length);
    expect(shards.length).toBeGreaterThanOrEqual(1);
    expect(shards.length).toBeLessThanOrEqual(3);
    expect(shown.get("ag1")).toMatchObject({ by: "ci@runner", problem: null });
    expect(shown.get("ag7")).toMatchObject({
      by: null,
      problem: "its release gave this host another system than the one its record says it runs",
    });
    // Kept for the hosts it was read for; a host that names it since is read for.
    counted.gets.length = 0;
    await readHostOrigins(counted.store, records, KEYS, cache, Date.now());
    expect(counted.gets).toEqual([]);
    records.set("ag599", named("ag599", A)[1]);
    const again = await readHostOrigins(counted.store, records, KEYS, cache, Date.now());
    expect(again.get("ag599")).toMatchObject({ by: "ci@runner", problem: null });
    expect(counted.gets).toContain("releases/prod/1.json");
  });
});
