// A fleet's cache store that is gone (its directory moved away, or never made) is an error in
// `status --stored` and in the dashboard's poll, which keeps the last snapshot: never a fleet of
// hosts that never reported. A store that hangs is said to, with since when, for as long as the
// read given up on runs; the poll after it ends reads again.
import { mkdtemp, rename, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FleetPoller } from "../src/dashboard/poller.js";
import { loadFleet } from "../src/fleet/load-fleet.js";
import { writeStatus } from "../src/status/status-store.js";
import { FsStore } from "../src/store/fs-store.js";
import { wrapStore } from "../src/store/wrap-store.js";
import { nixship } from "../support/cli.js";
import { hostRecord, writeDashboardFleet } from "../support/dashboard-store.js";

let dir: string;
let cache: string;
let fleetFile: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-gone-store-"));
  cache = join(dir, "cache");
  const store = new FsStore(cache);
  await store.put("nix-cache-info", Buffer.from("StoreDir: /nix/store\n"));
  ({ fleetFile } = await writeDashboardFleet(dir, `file://${cache}`, { ssm: 2, agent: 0 }));
  await writeStatus(store, hostRecord("s0", "ssm"));
  await writeStatus(store, hostRecord("s1", "ssm"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("a fleet's store that is gone", () => {
  it("fails status --stored with the store named and the fix, where it read the records before", async () => {
    const before = await nixship(["status", "--fleet", fleetFile, "--stored", "--json"]);
    expect(before.code, before.stderr).toBe(0);
    await rename(cache, `${cache}.gone`);
    try {
      const gone = await nixship(["status", "--fleet", fleetFile, "--stored", "--json"]);
      expect(gone.code).toBe(2);
      expect(JSON.parse(gone.stdout)).toMatchObject({
        error: {
          code: "no-binary-cache",
          message: `file://${cache} holds no binary cache (it has no nix-cache-info)`,
          hint: expect.stringContaining("check the URL for a typo"),
        },
      });
    } finally {
      await rename(`${cache}.gone`, cache);
    }
  });

  it("fails the dashboard's poll, which keeps the last snapshot and says why", async () => {
    const poller = new FleetPoller(await loadFleet(fleetFile), new FsStore(cache), {
      interval: 60_000,
    });
    try {
      expect((await poller.pollOnce()).error).toBeUndefined();
      const version = poller.snapshot?.version;
      await rename(cache, `${cache}.gone`);
      try {
        const failed = await poller.pollOnce();
        expect(failed.error).toContain("holds no binary cache (it has no nix-cache-info)");
        expect(poller.snapshot?.version).toBe(version);
        const rows = poller.snapshot?.rows ?? [];
        expect(rows.map((r) => [r.host, r.source === "stored" && r.reported])).toEqual([
          ["s0", true],
          ["s1", true],
        ]);
      } finally {
        await rename(`${cache}.gone`, cache);
      }
      expect((await poller.pollOnce()).error).toBeUndefined();
    } finally {
      await poller.stop();
    }
  });

  it("says a store that hangs has not answered, and since when, until it answers", async () => {
    const inner = new FsStore(cache);
    let release: (() => void) | undefined;
    let gate: Promise<void> | undefined;
    const store = wrapStore(inner, {
      list: async (prefix, options) => {
        if (gate !== undefined) await gate;
        return await inner.list(prefix, options);
      },
    });
    const poller = new FleetPoller(await loadFleet(fleetFile), store, {
      interval: 60_000,
      deadline: 200,
    });
    try {
      expect((await poller.pollOnce()).error).toBeUndefined();
      gate = new Promise((resolve) => {
        release = resolve;
      });
      const first = await poller.pollOnce();
      expect(first.error).toBe(`the store ${store.url} did not answer within 0.2 s`);
      await new Promise((resolve) => setTimeout(resolve, 1100));
      const second = await poller.pollOnce();
      expect(second.error).toMatch(
        new RegExp(
          `^the store has not answered for [1-9][0-9]* s \\(since 20[0-9-]+T[0-9:.]+Z\\): the store ${store.url.replace(/[/.]/g, "\\$&")} did not answer within 0\\.2 s$`,
        ),
      );
      expect(poller.snapshot?.rows).toHaveLength(2);
      gate = undefined;
      release?.();
      // The read given up on ends; the next poll reads again.
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect((await poller.pollOnce()).error).toBeUndefined();
    } finally {
      release?.();
      await poller.stop();
    }
  });
});
