// The directory store keeps a large directory's sorted children while it is unchanged: a listing
// that comes back reads none of its entries again, pages are those a fresh store lists, and
// every change (an object added, replaced or deleted) shows at the next LIST.
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mapLimit } from "../util/pool.js";
import { CACHED_DIR_CHILDREN } from "./fs-dir-cache.js";
import { FsStore } from "./fs-store.js";
import type { ListPage, ObjectStore } from "./object-store.js";

/** Objects in the large directory: more than a directory needs to be kept, past a page. */
const COUNT = CACHED_DIR_CHILDREN + 1500;

let dir: string;

/** Every page of `prefix` (pages of `limit`), as the keys and etags they hold. */
async function pages(store: ObjectStore, prefix: string, limit = 1000): Promise<string[][]> {
  const all: string[][] = [];
  let page: ListPage | undefined;
  do {
    page = await store.list(prefix, {
      limit,
      ...(page?.nextToken === undefined ? {} : { token: page.nextToken }),
    });
    all.push(page.objects.map((o) => `${o.key} ${o.etag} ${o.size}`));
  } while (page.nextToken !== undefined);
  return all;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-dir-cache-"));
  // A large directory beside small ones, a subdirectory among its files ("b/" sorts between
  // "b-…" and "b0…"), and names that sort by byte, not by locale.
  const big = join(dir, "status", "big");
  await mkdir(join(big, "b"), { recursive: true });
  await writeFile(join(dir, "status", "a"), "a");
  await writeFile(join(dir, "status", "c"), "c");
  await writeFile(join(big, "b", "inner"), "inner");
  await mapLimit(
    Array.from({ length: COUNT }, (_, i) => i),
    64,
    (i) => writeFile(join(big, `${i % 3 === 0 ? "b-" : i % 3 === 1 ? "b0" : "B"}${i}`), "x"),
  );
  // A directory changed within the last 2 s is not kept yet.
  await new Promise((done) => setTimeout(done, 2100));
});

afterAll(async () => {
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe("the directory store's large directories", () => {
  it("are read once while unchanged, and list the pages a fresh store lists", async () => {
    const store = new FsStore(dir);
    const first = await pages(store, "status/");
    const read = store.listReads;
    expect(read.entries).toBeGreaterThanOrEqual(COUNT);
    const again = await pages(store, "status/");
    const more = await pages(store, "status/big/b", 7);
    // Each LIST read the small directories again, and nothing of the large one.
    expect(store.listReads.entries - read.entries).toBeLessThan(100);
    expect(again).toEqual(first);
    const fresh = new FsStore(dir);
    expect(await pages(fresh, "status/")).toEqual(first);
    expect(await pages(fresh, "status/big/b", 7)).toEqual(more);
    // startAfter into the middle, and a prefix of no key.
    const mid = first[1]?.[500]?.split(" ")[0] as string;
    const after = { startAfter: mid, limit: 50 };
    expect(await store.list("status/", after)).toEqual(await fresh.list("status/", after));
    expect(await store.list("status/big/zz")).toEqual({ objects: [] });
  });

  it("larger than a run: a walk reads it once per run, not once per page, and lists the same pages", async () => {
    // Runs of 600 children: the walk of the large directory (2,500 of them) reads it about
    // 2,500 / 600 times, where a page of 100 at a time would read it 25 times.
    const store = new FsStore(dir, { listRun: 600 });
    const read = store.listReads;
    const walked = await pages(store, "status/big/", 100);
    expect(walked.flat()).toEqual((await pages(new FsStore(dir), "status/big/")).flat());
    const bigReads = Math.ceil((COUNT + 1) / 600) + 1;
    expect(store.listReads.entries - read.entries).toBeLessThan((bigReads + 1) * (COUNT + 10));
    expect(store.listReads.directories - read.directories).toBeLessThan(bigReads + 5);
  });

  it("show an object added, replaced or deleted at the next LIST", async () => {
    const store = new FsStore(dir);
    await pages(store, "status/big/");
    await store.put("status/big/b-new", new Uint8Array([1, 2]));
    await store.put("status/big/b01", new Uint8Array([1, 2, 3]));
    await store.delete("status/big/B2");
    const seen = (await pages(store, "status/big/")).flat();
    expect(seen).toEqual((await pages(new FsStore(dir), "status/big/")).flat());
    expect(seen.some((o) => o.startsWith("status/big/b-new "))).toBe(true);
    expect(seen.find((o) => o.startsWith("status/big/b01 "))).toMatch(/ 3$/);
    expect(seen.some((o) => o.startsWith("status/big/B2 "))).toBe(false);
  });
});
