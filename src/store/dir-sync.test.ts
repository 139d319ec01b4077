import { watch } from "node:fs";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { DirectorySyncs } from "./dir-sync.js";
import { FsStore } from "./fs-store.js";
import { readAll } from "./helpers.js";

/** A fake fsync that records each start and settles only when told to. */
function controlled() {
  const started: { dir: string; settle: (err?: Error) => void }[] = [];
  const syncOne = (dir: string) =>
    new Promise<void>((resolve, reject) => {
      started.push({ dir, settle: (err) => (err ? reject(err) : resolve()) });
    });
  return { started, syncs: new DirectorySyncs(syncOne) };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe("DirectorySyncs", () => {
  it("starts at once when idle, and makes later callers share one fsync after it", async () => {
    const { started, syncs } = controlled();
    const first = syncs.sync("/d");
    expect(started).toHaveLength(1);
    // Arriving while the first runs: their changes may postdate its start.
    const waiters = [syncs.sync("/d"), syncs.sync("/d"), syncs.sync("/d")];
    await tick();
    expect(started).toHaveLength(1);
    started[0]?.settle();
    await first;
    await tick();
    expect(started).toHaveLength(2);
    let settled = false;
    Promise.all(waiters).then(() => {
      settled = true;
    });
    await tick();
    expect(settled).toBe(false);
    started[1]?.settle();
    await Promise.all(waiters);
    // Idle again: the next caller starts a fresh fsync straight away.
    const again = syncs.sync("/d");
    expect(started).toHaveLength(3);
    started[2]?.settle();
    await again;
  });

  it("keeps directories apart", async () => {
    const { started, syncs } = controlled();
    const a = syncs.sync("/a");
    const b = syncs.sync("/b");
    expect(started.map((s) => s.dir)).toEqual(["/a", "/b"]);
    for (const s of started) s.settle();
    await Promise.all([a, b]);
  });

  it("fails exactly the callers of a failed fsync; the next one still runs", async () => {
    const { started, syncs } = controlled();
    const first = syncs.sync("/d");
    const second = syncs.sync("/d");
    started[0]?.settle(new Error("EIO"));
    await expect(first).rejects.toThrow("EIO");
    await tick();
    expect(started).toHaveLength(2);
    started[1]?.settle();
    await expect(second).resolves.toBeUndefined();
  });

  it("fsyncs a real directory by default", async () => {
    const dir = await mkdtemp(join(tmpdir(), "nixship-dir-sync-"));
    try {
      await new DirectorySyncs().sync(dir);
      await expect(new DirectorySyncs().sync(join(dir, "absent"))).rejects.toThrow(/ENOENT/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("publishes a store's deferred objects at the flush, in the order of their puts", async () => {
    const dir = await mkdtemp(join(tmpdir(), "nixship-fs-sync-"));
    try {
      for (const fsync of [true, false]) {
        const store = new FsStore(join(dir, `cache-${fsync}`), { fsync });
        await store.put("a", Buffer.from("deferred"), { durability: "deferred" });
        const file = join(await store.makeStagingDir(), "f");
        await writeFile(file, "staged");
        await store.putFile("nar/b", file, { durability: "deferred" });
        expect(await store.head("a")).toBeUndefined();
        expect(await store.head("nar/b")).toBeUndefined();
        expect((await store.list("")).objects).toEqual([]);
        await store.flush();
        expect((await store.head("a"))?.size).toBe(8);
        expect((await readAll(store, "nar/b"))?.toString()).toBe("staged");
        // Nothing is left to publish: a second flush changes nothing.
        await store.flush();
        expect((await store.list("")).objects.map((o) => o.key)).toEqual(["a", "nar/b"]);
        await expect(
          store.put("c", Buffer.from("x"), {
            durability: "deferred",
            condition: { ifAbsent: true },
          }),
        ).rejects.toThrow(/both conditional and deferred/);
        await store.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("publishes deferred objects in the order their puts were called, not finished", async () => {
    const dir = await mkdtemp(join(tmpdir(), "nixship-fs-order-"));
    try {
      const store = new FsStore(dir);
      await store.put("warm", Buffer.from("x")); // the root exists, so the watch sees it all
      const slow = Readable.from(
        (async function* () {
          await new Promise((resolve) => setTimeout(resolve, 200));
          yield Buffer.from("called first, finished last");
        })(),
      );
      const first = store.put("a-first", slow, { durability: "deferred" });
      const second = store.put("b-second", Buffer.from("quick"), { durability: "deferred" });
      let finished = "";
      first.then(() => {
        finished += "first ";
      });
      second.then(() => {
        finished += "second ";
      });
      await Promise.all([first, second]);
      expect(finished).toBe("second first ");
      const seen: string[] = [];
      const watcher = watch(dir, (_event, name) => {
        if (name === "a-first" || name === "b-second") seen.push(name);
      });
      try {
        await store.flush();
        await new Promise((resolve) => setTimeout(resolve, 100));
      } finally {
        watcher.close();
      }
      expect([...new Set(seen)]).toEqual(["a-first", "b-second"]);
      await store.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("does not publish what was put after a failed deferred put, and says so", async () => {
    const dir = await mkdtemp(join(tmpdir(), "nixship-fs-poison-"));
    try {
      const store = new FsStore(dir);
      await store.put("before", Buffer.from("1"), { durability: "deferred" });
      const broken = Readable.from(
        (async function* () {
          yield Buffer.from("half");
          throw new Error("the source broke");
        })(),
      );
      await expect(store.put("broken", broken, { durability: "deferred" })).rejects.toThrow(
        /the source broke/,
      );
      await store.put("after", Buffer.from("3"), { durability: "deferred" });
      await expect(store.flush()).rejects.toThrow(
        /did not publish 1 object\(s\) put in .* after "broken", whose put failed/,
      );
      expect((await store.list("")).objects.map((o) => o.key)).toEqual(["before"]);
      // Nothing is left behind: no temp file anywhere, not even in the store's staging
      // directory, and the next flush has nothing to do.
      expect(await filesIn(dir)).toEqual(["before"]);
      await store.flush();
      await store.close();
      // and closing removes the staging directory that held the deferred puts.
      expect(await readdir(dir)).toEqual(["before"]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("publishes nothing at any later flush once one failed: what it dropped (a NAR) may be what a later object (its narinfo) names", async () => {
    const dir = await mkdtemp(join(tmpdir(), "nixship-fs-poison-later-"));
    try {
      const store = new FsStore(dir);
      const broken = Readable.from(
        (async function* () {
          yield Buffer.from("half");
          throw new Error("no space left on device");
        })(),
      );
      // A NAR whose write fails, flushed (as push's batches are) before its narinfo is put.
      await expect(store.put("nar/x.nar", broken, { durability: "deferred" })).rejects.toThrow(
        /no space left/,
      );
      await expect(store.flush()).rejects.toThrow(/whose put failed/);
      await store.put("x.narinfo", Buffer.from("URL: nar/x.nar\n"), { durability: "deferred" });
      await expect(store.flush()).rejects.toThrow(
        /did not publish 1 object\(s\) put in .* after an earlier flush failed \(.*\): they may depend on what it dropped/,
      );
      expect((await store.list("")).objects).toEqual([]);
      expect(await filesIn(dir)).toEqual([]);
      await store.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/** Every file under `dir`, as paths relative to it, sorted. */
async function filesIn(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => !e.isDirectory())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
}
