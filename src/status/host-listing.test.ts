// The per-host listing: at most HOST_KEYS_READ keys of each host, the rest of a crowded host's
// prefix skipped with a LIST that starts after it, every other host's keys all read; a listing
// that remembers the last one's crowded hosts reads a few keys of each, and takes the same keys.
import { mkdir, mkdtemp, rm, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { ListOptions, ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { wrapStore } from "../store/wrap-store.js";
import { mapLimit } from "../util/pool.js";
import { CrowdedSegments } from "./crowded-segments.js";
import { HOST_KEYS_READ, listHostPrefixes } from "./host-listing.js";

let dir: string;
let store: ObjectStore;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-host-listing-"));
  store = await openStore(`file://${dir}?fsync=false`);
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

/** Objects written straight into the directory (as fast as files go). */
async function put(keys: readonly string[]): Promise<void> {
  await mapLimit(keys, 32, async (key) => {
    await mkdir(dirname(join(dir, key)), { recursive: true });
    await writeFile(join(dir, key), "x");
  });
}

/** `store` with its LIST calls recorded (their options) and the keys they returned counted. */
function recorded(inner: ObjectStore) {
  const calls: ListOptions[] = [];
  let keys = 0;
  const wrapped = wrapStore(inner, {
    list: async (prefix, options = {}) => {
      calls.push(options);
      const page = await inner.list(prefix, options);
      keys += page.objects.length;
      return page;
    },
  });
  return { store: wrapped, calls, keys: () => keys };
}

const P = "status/heartbeats/";

describe("listHostPrefixes", () => {
  it("takes every key of hosts within the bound, in byte order, and passes over stray keys", async () => {
    await put([
      `${P}web1/running/30`,
      `${P}web1/paused/30`,
      `${P}web1-a/running/30`,
      `${P}web10/running/30`,
      `${P}stray`,
    ]);
    const listed = await listHostPrefixes(store, P);
    expect(listed.objects.map((o) => o.key)).toEqual([
      `${P}web1-a/running/30`,
      `${P}web1/paused/30`,
      `${P}web1/running/30`,
      `${P}web10/running/30`,
    ]);
    expect(listed.listCalls).toBe(1);
    expect(listed.skipped).toEqual([]);
  });

  it("takes HOST_KEYS_READ keys of a crowded host and skips the rest of its prefix unlisted", async () => {
    const junk = Array.from(
      { length: 5000 },
      (_, i) => `${P}web2/junk-${String(i).padStart(5, "0")}`,
    );
    await put([
      `${P}web1/running/30`,
      ...junk,
      `${P}web2-a/running/30`,
      `${P}web20/running/30`,
      `${P}web3/running/30`,
      // Segments that name no host are skipped whole, however many keys they hold.
      ...Array.from({ length: 1500 }, (_, i) => `${P}Web_4/${i}`),
      `${P}web5/running/30`,
    ]);
    const r = recorded(store);
    const listed = await listHostPrefixes(r.store, P);
    const keys = listed.objects.map((o) => o.key);
    expect(keys).toEqual([
      `${P}web1/running/30`,
      `${P}web2-a/running/30`,
      ...junk.slice(0, HOST_KEYS_READ),
      `${P}web20/running/30`,
      `${P}web3/running/30`,
      `${P}web5/running/30`,
    ]);
    expect(listed.skipped).toEqual(["Web_4", "web2"]);
    // The first page ends in Web_4's keys (upper case sorts first): the next starts after its
    // prefix, and the one after that after web2's ("web20" sorts after every "web2/…").
    expect(r.calls).toEqual([{}, { startAfter: `${P}Web_40` }, { startAfter: `${P}web20` }]);
    expect(listed.listCalls).toBe(3);
    expect(r.keys()).toBeLessThanOrEqual(3 * 1000);
  });

  it("costs the same LIST calls with 2,000 keys of junk as with 20,000", async () => {
    const base = [`${P}a1/running/30`, `${P}z9/running/30`];
    const cost = async (count: number) => {
      await put(Array.from({ length: count }, (_, i) => `${P}m5/running/${i + 1}`));
      const r = recorded(store);
      const listed = await listHostPrefixes(r.store, P);
      return { calls: r.calls.length, keys: listed.objects.length };
    };
    await put(base);
    const small = await cost(2000);
    const large = await cost(20_000);
    expect(large).toEqual(small);
    expect(small).toEqual({ calls: 2, keys: 2 + HOST_KEYS_READ });
  });

  it("continues a page that ends within a host's bound with the store's token", async () => {
    // 999 hosts of one key, then a host of 5: the first page ends after its first key.
    const hosts = Array.from(
      { length: 999 },
      (_, i) => `${P}h${String(i).padStart(4, "0")}/running/30`,
    );
    const last = Array.from({ length: 5 }, (_, i) => `${P}z/running/${i + 1}`);
    await put([...hosts, ...last]);
    const r = recorded(store);
    const listed = await listHostPrefixes(r.store, P);
    expect(listed.objects.length).toBe(1004);
    expect(r.calls.length).toBe(2);
    expect(r.calls[1]).toHaveProperty("token");
  });
});

describe("listHostPrefixes with the last listing's crowded hosts", () => {
  const junk = (host: string, count: number, from = 0) =>
    Array.from(
      { length: count },
      (_, i) => `${P}${host}/junk-${String(from + i).padStart(5, "0")}`,
    );

  it("cuts its first page a few keys into each crowded host, then starts after it", async () => {
    await put([
      `${P}web1/running/30`,
      `${P}web1/paused/30`,
      ...junk("web2", 3000),
      `${P}web2-a/running/30`,
      `${P}web3/running/30`,
      ...junk("web4", 1500),
      `${P}web5/running/30`,
    ]);
    const crowded = new CrowdedSegments();
    const first = await listHostPrefixes(store, P, { crowded });
    const r = recorded(store);
    const again = await listHostPrefixes(r.store, P, { crowded });
    expect(again).toEqual(first);
    expect(again.skipped).toEqual(["web2", "web4"]);
    // web1's and web2-a's 3 keys ("web2-a/" sorts before "web2/"), 17 of web2's (one more
    // than is taken: it is still crowded); then web3's key and 17 of web4's; then the rest.
    const probe = HOST_KEYS_READ + 1;
    expect(r.calls).toEqual([
      { limit: 3 + probe },
      { startAfter: `${P}web20`, limit: 1 + probe },
      { startAfter: `${P}web40` },
    ]);
    expect(r.keys()).toBe(3 + probe + 1 + probe + 1);
    // Without what it remembers, a listing reads as many LIST calls, of full pages.
    const fresh = recorded(store);
    expect(await listHostPrefixes(fresh.store, P)).toEqual(first);
    expect(fresh.calls.length).toBe(r.calls.length);
    expect(fresh.keys()).toBeGreaterThan(2000);

    // One key more before web2: the first page ends at web2's 16th key, and one LIST of one key
    // looks further, so web2 is still named as crowded.
    await put([`${P}web1/running/31`]);
    const shifted = recorded(store);
    const third = await listHostPrefixes(shifted.store, P, { crowded });
    expect(third.skipped).toEqual(["web2", "web4"]);
    expect(third.objects.length).toBe(first.objects.length + 1);
    expect(shifted.calls.slice(0, 2)).toEqual([
      { limit: 3 + probe },
      { token: `${P}web2/junk-${String(HOST_KEYS_READ - 1).padStart(5, "0")}`, limit: 1 },
    ]);
    expect(shifted.calls.length).toBe(4);
  });

  it("takes the same keys as a fresh listing while hosts come, go and crowd", async () => {
    // A seeded walk through changes: keys added and removed before, inside and after crowded
    // segments, a crowded host emptied, a new one, a segment that names no host, pages of more
    // than 1,000 keys before a crowded host. Each listing that remembers must take exactly what
    // a fresh listing takes, and never read more LIST calls than it plus one per crowded host.
    let seed = 7;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const hosts = ["a1", "b2", "c3", "d4", "e5", "Bad_6", "f7"];
    const present = new Set<string>();
    const add = async (keys: string[]) => {
      await put(keys);
      for (const k of keys) present.add(k);
    };
    const remove = async (count: number) => {
      const keys = [...present];
      for (let i = 0; i < count && keys.length > 0; i++) {
        const k = keys.splice(random(keys.length), 1)[0] as string;
        await unlink(join(dir, k));
        present.delete(k);
      }
    };
    await add(
      Array.from({ length: 1050 }, (_, i) => `${P}a${String(i).padStart(4, "0")}/running/30`),
    );
    const crowded = new CrowdedSegments();
    for (let round = 0; round < 10; round++) {
      const host = hosts[random(hosts.length)] as string;
      switch (random(4)) {
        case 0:
          await add(junk(host, 1 + random(1100), random(1000)));
          break;
        case 1:
          await add([`${P}${host}/running/${1 + random(50)}`, `${P}x${random(100)}/paused/30`]);
          break;
        case 2:
          await remove(1 + random(300));
          break;
        default:
          await add([`${P}stray-${random(10)}`, `${P}${host}-${random(9)}/running/30`]);
      }
      const fresh = recorded(store);
      const want = await listHostPrefixes(fresh.store, P);
      const r = recorded(store);
      const got = await listHostPrefixes(r.store, P, { crowded });
      expect(
        got.objects.map((o) => o.key),
        `round ${round}`,
      ).toEqual(want.objects.map((o) => o.key));
      expect(new Set(got.skipped), `round ${round}`).toEqual(new Set(want.skipped));
      expect(r.calls.length).toBeLessThanOrEqual(fresh.calls.length + crowdedCount(crowded, P) + 1);
    }
  });
});

/** Segments `crowded` remembers of `prefix`. */
function crowdedCount(crowded: CrowdedSegments, prefix: string): number {
  return crowded.recall(prefix).length;
}
