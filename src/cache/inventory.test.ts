import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { ListOptions, ListPage, ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { readInventory, skipNoteTargetOf } from "./inventory.js";

let dir: string;
let store: ObjectStore;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-inventory-"));
  // No fsync: thousands of small puts, and durability is not what this tests.
  store = await openStore(`file://${dir}?fsync=false`);
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

const NAR = `nar/${"1".repeat(52)}.nar.zst`;

/** `inner`, counting its LIST calls. */
function counted(inner: ObjectStore): { store: ObjectStore; calls: () => number } {
  let calls = 0;
  return {
    store: {
      ...inner,
      url: inner.url,
      list: (prefix: string, options?: ListOptions): Promise<ListPage> => {
        calls++;
        return inner.list(prefix, options);
      },
    } as ObjectStore,
    calls: () => calls,
  };
}

describe("readInventory", () => {
  it("lists narinfos, listings and NARs, and steps over every other folder with one jump", async () => {
    const a = "a".repeat(32);
    const z = "z".repeat(32);
    await store.put(`${a}.narinfo`, Buffer.from("x"));
    await store.put(`${a}.ls`, Buffer.from("x"));
    await store.put(`${z}.narinfo`, Buffer.from("x"));
    await store.put(NAR, Buffer.from("nar"));
    await store.put("nar/readme.txt", Buffer.from("not a NAR"));
    await store.put("nix-cache-info", Buffer.from("StoreDir: /nix/store\n"));
    // 2,500 status markers, which a listing of the whole store would page through.
    await Promise.all(
      Array.from({ length: 2500 }, (_, i) =>
        store.put(`status/releases/web/1/h${i}/success`, Buffer.from("{}")),
      ),
    );
    await store.put("releases/web/1.json", Buffer.from("{}"));
    const { store: listing, calls } = counted(store);
    const inventory = await readInventory(listing);
    expect([...inventory.narinfos.keys()]).toEqual([a, z]);
    expect([...inventory.listings.keys()]).toEqual([a]);
    expect([...inventory.nars.keys()]).toEqual([NAR]);
    expect(inventory.nars.get(NAR)?.size).toBe(3);
    // The root: one page up to nar/, one after it up to releases/, one after that up to
    // status/, one after status/; then nar/ in one page. Never the 2,500 markers.
    expect(calls()).toBe(inventory.listCalls);
    expect(inventory.listCalls).toBeLessThanOrEqual(6);
  });
});

describe("readInventory of a cache with deltas", () => {
  it("lists the NARs of delta paths with the NARs, and the skip notes apart, in one more LIST", async () => {
    const a = "a".repeat(32);
    const deltaNar = `delta/${"2".repeat(52)}.nar`;
    const skip = `delta/skip/${"3".repeat(32)}-${"4".repeat(32)}.json`;
    await store.put(`${a}.narinfo`, Buffer.from("x"));
    await store.put(NAR, Buffer.from("nar"));
    await store.put(deltaNar, Buffer.from("delta"));
    await store.put(skip, Buffer.from("{}"));
    await store.put("delta/readme.txt", Buffer.from("neither"));
    const { store: listing, calls } = counted(store);
    const inventory = await readInventory(listing);
    expect([...inventory.nars.keys()].sort()).toEqual([deltaNar, NAR]);
    expect([...inventory.deltaSkips.keys()]).toEqual([skip]);
    expect(skipNoteTargetOf(skip)).toBe("3".repeat(32));
    expect(skipNoteTargetOf("delta/readme.txt")).toBeUndefined();
    expect(calls()).toBe(inventory.listCalls);
  });
});
