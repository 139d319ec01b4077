import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { STALE_STAGING_MS } from "./fs-staging.js";
import { FsStore } from "./fs-store.js";

/** The directory in a store's root that holds its staging directories. */
const STAGING_HOME = ".staging.nixship-tmp-0";

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "nixship-fs-staging-"));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("FsStore staging directories", () => {
  it("are hidden from listings and inside the store's file system", async () => {
    const store = new FsStore(root);
    const staging = await store.makeStagingDir();
    expect(staging.startsWith(root)).toBe(true);
    await writeFile(join(staging, "nar"), "bytes");
    await store.putFile("nar/x.nar", join(staging, "nar"));
    expect((await store.list("")).objects.map((o) => o.key)).toEqual(["nar/x.nar"]);
    await store.close();
  });

  it("removes the ones a dead process left, untouched for a day, and no other", async () => {
    const store = new FsStore(root);
    const first = await store.makeStagingDir();
    const parent = dirname(first);
    // Left by a push that was killed two days ago, with a half-written NAR in it.
    const dead = join(parent, "0123456789ab");
    await mkdir(dead);
    await writeFile(join(dead, "half.nar.zst"), "half");
    const old = (Date.now() - 2 * STALE_STAGING_MS) / 1000;
    await utimes(dead, old, old);
    // Another push's, busy an hour ago: kept.
    const busy = join(parent, "ba5eba11cafe");
    await mkdir(busy);
    const recent = (Date.now() - STALE_STAGING_MS / 24) / 1000;
    await utimes(busy, recent, recent);
    const second = await store.makeStagingDir();
    const left = await readdir(parent);
    expect(left.sort()).toEqual(
      [first, busy, second].map((d) => d.slice(parent.length + 1)).sort(),
    );
    await store.close();
  });

  it("hold deferred puts until the flush, so nothing lies beside their targets; close drops the unflushed", async () => {
    const store = new FsStore(root);
    await store.put("a.narinfo", Buffer.from("first"), { durability: "deferred" });
    // Written, not yet published: its bytes wait in the store's own staging directory.
    expect(await readdir(root)).toEqual([STAGING_HOME]);
    expect(await store.head("a.narinfo")).toBeUndefined();
    await store.flush();
    expect((await readdir(root)).sort()).toEqual([STAGING_HOME, "a.narinfo"]);
    await store.put("b.narinfo", Buffer.from("second"), { durability: "deferred" });
    await store.close();
    // b was never flushed: closing drops it, with the staging directory.
    expect(await readdir(root)).toEqual(["a.narinfo"]);
    const reopened = new FsStore(root);
    expect((await reopened.list("")).objects.map((o) => o.key)).toEqual(["a.narinfo"]);
    await reopened.close();
  });
});
