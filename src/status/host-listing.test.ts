// The per-host listing: at most HOST_KEYS_READ keys of each host, the rest of a crowded host's
// prefix skipped with a LIST that starts after it, every other host's keys all read.
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { ListOptions, ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { wrapStore } from "../store/wrap-store.js";
import { mapLimit } from "../util/pool.js";
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
