import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
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
});
