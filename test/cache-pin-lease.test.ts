// `cache pin` writes a root, so it is a writer like a push: it leases the cache before it looks
// at it, and waits (saying so) while a collection holds the lock, so that the collection cannot
// sweep what the pin names between the pin's look and its write. Run with the built CLI against
// a lock this process holds.
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { takeGcLock } from "../src/cache/gc-lease.js";
import { generateSecretKey } from "../src/nix/keys.js";
import type { ObjectStore } from "../src/store/object-store.js";
import { openStore } from "../src/store/url.js";
import { NIXSHIP_BIN } from "../support/cli.js";
import { allKeys, putSyntheticPath, syntheticPath } from "../support/synthetic-cache.js";

let work: string;
let url: string;
let store: ObjectStore;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-pin-lease-"));
  url = `file://${join(work, "cache")}`;
  store = await openStore(url);
  await store.put("nix-cache-info", Buffer.from("StoreDir: /nix/store\n"));
});
afterAll(async () => {
  await store.close();
  await rm(work, { recursive: true, force: true });
});

describe("cache pin and a collection", () => {
  it("waits for a collection that holds the lock, then pins, leaving no lease", async () => {
    const { path } = await putSyntheticPath(
      store,
      generateSecretKey("pin-1"),
      syntheticPath("pinned", "installer-1.0"),
      [],
    );
    const lock = await takeGcLock(store, { waitMs: 0 });
    const child = spawn(process.execPath, [
      NIXSHIP_BIN,
      ...["cache", "pin", path, "--name", "installer", "--cache", url],
    ]);
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
    try {
      // Bounded: the lease's first look comes at once.
      for (let i = 0; i < 300 && !stderr.includes("waiting for"); i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(stderr).toContain("waiting for the cache's garbage collection to finish");
      expect(await allKeys(store, "gc/pins/")).toEqual([]);
    } finally {
      await lock.release();
    }
    expect(await exited).toBe(0);
    expect(stderr).toContain(`pinned 1 path as installer in ${url}`);
    expect(await allKeys(store, "gc/pins/")).toEqual(["gc/pins/installer.json"]);
    expect(await allKeys(store, "gc/leases/")).toEqual([]);
  });

  it("an interrupt while it waits: exit 130, no pin and no lease left", async () => {
    const { path } = await putSyntheticPath(
      store,
      generateSecretKey("pin-1"),
      syntheticPath("stopped", "installer-2.0"),
      [],
    );
    const lock = await takeGcLock(store, { waitMs: 0 });
    try {
      const child = spawn(process.execPath, [
        NIXSHIP_BIN,
        ...["cache", "pin", path, "--name", "stopped", "--cache", url],
      ]);
      let stderr = "";
      child.stderr.setEncoding("utf8").on("data", (d: string) => {
        stderr += d;
      });
      const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
      for (let i = 0; i < 300 && !stderr.includes("waiting for"); i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(stderr).toContain("waiting for the cache's garbage collection to finish");
      child.kill("SIGTERM");
      expect(await exited, stderr).toBe(130);
      expect(await allKeys(store, "gc/pins/")).not.toContain("gc/pins/stopped.json");
      expect(await allKeys(store, "gc/leases/")).toEqual([]);
    } finally {
      await lock.release();
    }
  });
});
