import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { doubledRelease, releaseOfWebHosts } from "../../test/support/doubled-release.js";
import { rolloutRecord } from "../../test/support/rollout-records.js";
import { sshRecord } from "../../test/support/status-records.js";
import { generateSecretKey, publicKeyOf } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import type { Release } from "../release/release.js";
import { publishRelease } from "../release/release-store.js";
import type { RolloutRecord } from "../status/rollout.js";
import { writeRollout } from "../status/rollout-store.js";
import { formatStatusRecord, progressKey, statusRecord } from "../status/status.js";
import { writeStatus } from "../status/status-store.js";
import { FsStore } from "../store/fs-store.js";
import { recordPaths, releasePaths, rootsFromStore } from "./gc-roots.js";

/** Runs `test` on a directory store of its own, closed and removed after it. */
async function inStore(test: (store: FsStore) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "nixship-gc-roots-"));
  const store = new FsStore(dir, { fsync: false });
  try {
    await test(store);
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

const p = (n: string) => `/nix/store/${n.repeat(32)}-${n}` as const;

/**
 * Releases 1-3 of channel web give web1 a, b, then c, each confirmed by its success marker; the
 * writer of a marker on web1's behalf, returned.
 */
async function webHistory(
  store: FsStore,
): Promise<(seq: number, path: string, state: "success" | "failed") => Promise<void>> {
  const key = generateSecretKey("release-1");
  const at = "2026-11-26T07:00:00.000Z";
  const report = async (seq: number, path: string, state: "success" | "failed") => {
    await store.put(
      progressKey("web", seq, "web1", state),
      formatStatusRecord(
        sshRecord({
          mode: "agent",
          channel: "web",
          seq,
          desired: path,
          current: path,
          state,
          startedAt: at,
          updatedAt: at,
        }),
      ),
    );
  };
  for (const [seq, path] of [
    [1, p("a")],
    [2, p("b")],
    [3, p("c")],
  ] as const) {
    await publishRelease(store, {
      channel: "web",
      hosts: { web1: { path: path as StorePath } },
      kind: "deploy",
      action: "switch",
      health: { http: [], commands: [] },
      confirmTimeout: 0,
      key,
    });
    await report(seq, path, "success");
  }
  return report;
}

describe("gc roots", () => {
  it("from a release: every host's system, the age its secrets need and its delta tool", () => {
    const release = {
      hosts: {
        web1: { path: p("a"), deltaTool: p("d") },
        web2: { path: p("b"), secrets: { bundle: "x", manifest: "y", age: p("c") } },
      },
    } as unknown as Release;
    expect(releasePaths(release)).toEqual([
      ["web1", p("a")],
      ["web1", p("d")],
      ["web2", p("b")],
      ["web2", p("c")],
    ]);
  });

  it("from a status record: current, desired, previous, the booted kernel's path and the agent", () => {
    const record = statusRecord({
      host: "web1",
      mode: "agent",
      release: { channel: "web", seq: 2 },
      desired: p("d"),
      system: {
        current: p("c"),
        generation: 3,
        reboot: {
          due: true,
          changed: ["kernel"],
          since: 1,
          booted: { kernel: `${p("k")}/bzImage`, initrd: null, "kernel-modules": null },
        },
      },
      previous: p("b"),
      agent: p("n"),
      what: { state: "success", phase: null, error: null, rolledBack: null },
      startedAt: "2026-11-25T00:00:00.000Z",
      updatedAt: "2026-11-25T00:00:00.000Z",
    });
    expect(recordPaths(record)).toEqual([
      [p("c"), "status"],
      [p("d"), "status"],
      [p("b"), "status"],
      [p("k"), "status"],
      [p("n"), "agent"],
    ]);
  });

  it("refuses a signed release that names a host in two shards, as every full reader does: named with their error (the host and both shards), no roots from it, and no stop", async () => {
    await inStore(async (store) => {
      const release = releaseOfWebHosts(p("a") as StorePath);
      const key = generateSecretKey("release-1");
      const { own, other } = await doubledRelease(release, key, "web-3", { store });
      const found = await rootsFromStore(store, { keepReleases: 5 });
      const said = `release 1 of channel prod names host 'web-3' in shard ${other}, but its shard is ${own}`;
      const shard = new RegExp(`^release-shards/prod/1/${other}-[0-9a-f]{64}\\.json: ${said}`);
      expect(found.refused).toEqual([
        { name: "releases/prod/1.json", problem: expect.stringMatching(shard) },
        { name: "channels/prod.json", problem: expect.stringMatching(shard) },
      ]);
      expect(found.unreadable).toEqual([]);
      expect(found.roots.size).toBe(0);
    });
  });

  it("a rollout that says running roots every system it gives and what each host ran before; a finished one, none", async () => {
    await inStore(async (store) => {
      const record = (id: string, state: RolloutRecord["state"], to: string, from: string) =>
        rolloutRecord(
          [
            {
              host: "web1",
              state: "activating",
              phase: "switch",
              system: to,
              before: from,
              message: null,
            },
          ],
          { id, state },
        );
      // A deployer killed mid-rollout: it wrote no status record for web1, which runs p("b").
      await writeRollout(store, record("aaaaaaaaaaaa", "running", p("b"), p("a")));
      await writeRollout(store, record("bbbbbbbbbbbb", "failed", p("c"), p("d")));
      const found = await rootsFromStore(store, { keepReleases: 5 });
      expect([...found.roots.keys()].sort()).toEqual([p("a"), p("b")]);
      expect(found.unreadable).toEqual([]);
    });
  });

  it("a rollout that still says running roots its systems past the newest 50 records", async () => {
    await inStore(async (store) => {
      const at = (minute: number) => new Date(Date.UTC(2026, 10, 26, 7, minute)).toISOString();
      const record = (
        id: string,
        host: string,
        state: RolloutRecord["state"],
        startedAt: string,
        to: string,
        from: string,
      ) =>
        rolloutRecord(
          [{ host, state: "activating", phase: "switch", system: to, before: from, message: null }],
          { id, state, startedAt, updatedAt: startedAt },
        );
      // Killed mid-rollout (web1 runs p("b"), and no record says so); an older finished one.
      await writeRollout(store, record("aaaaaaaaaaaa", "web1", "running", at(1), p("b"), p("a")));
      await writeRollout(store, record("bbbbbbbbbbbb", "web1", "failed", at(0), p("c"), p("d")));
      // Then 50 finished rollouts of another host.
      for (let i = 1; i <= 50; i++) {
        const id = String(i).padStart(12, "0");
        await writeRollout(store, record(id, "db1", "succeeded", at(2 + i), p("f"), p("f")));
      }
      const found = await rootsFromStore(store, { keepReleases: 5 });
      expect([...found.roots.keys()].sort()).toEqual([p("a"), p("b")]);
    });
  });

  it("with the fleet's keys, each host keeps what the newest signed rollout gave it and what it ran before, whatever its status record says", async () => {
    await inStore(async (store) => {
      const cacheKey = generateSecretKey("cache-1");
      const keys = [publicKeyOf(cacheKey)];
      const gave = (id: string, startedAt: string, to: string, from: string) =>
        rolloutRecord(
          [
            {
              host: "web1",
              state: "confirmed",
              phase: null,
              system: to,
              before: from,
              message: null,
            },
          ],
          { id, state: "succeeded", startedAt, updatedAt: startedAt },
        );
      // Two signed deploys: v1 → v2, then v2 → v3; then a forged (unsigned) record, newest.
      await writeRollout(
        store,
        gave("aaaaaaaaaaaa", "2026-11-26T07:00:00.000Z", p("b"), p("a")),
        cacheKey,
      );
      await writeRollout(
        store,
        gave("bbbbbbbbbbbb", "2026-11-26T08:00:00.000Z", p("c"), p("b")),
        cacheKey,
      );
      // A newer signed deploy that never reached web1 says nothing of what it runs.
      await writeRollout(
        store,
        rolloutRecord(
          [
            {
              host: "web1",
              state: "unreachable",
              phase: "connect",
              system: p("g"),
              before: null,
              message: "ssh: timeout",
            },
          ],
          {
            id: "dddddddddddd",
            state: "partial",
            startedAt: "2026-11-26T08:30:00.000Z",
            updatedAt: "2026-11-26T08:30:00.000Z",
          },
        ),
        cacheKey,
      );
      await writeRollout(store, gave("cccccccccccc", "2026-11-26T09:00:00.000Z", p("e"), p("e")));
      // web1's status record, rewritten by whoever can write the store: it names another system.
      await writeStatus(
        store,
        statusRecord({
          host: "web1",
          mode: "ssh",
          release: null,
          desired: p("f"),
          system: { current: p("f"), generation: 9 },
          what: { state: "success", phase: null, error: null, rolledBack: null },
          startedAt: "2026-11-26T10:00:00.000Z",
          updatedAt: "2026-11-26T10:00:00.000Z",
        }),
      );
      const signed = await rootsFromStore(store, { keepReleases: 5, rolloutKeys: keys });
      // The newest signed record's system and before; not the older one's, nor the forged one's.
      expect([...signed.roots.keys()].sort()).toEqual([p("b"), p("c"), p("f")]);
      expect(signed.roots.get(p("c"))).toEqual(new Set(["rollout"]));
      // Without keys no rollout is believed: the status record alone names web1's roots.
      const unkeyed = await rootsFromStore(store, { keepReleases: 5 });
      expect([...unkeyed.roots.keys()]).toEqual([p("f")]);
      // A key that signed none of them: the same.
      const other = [publicKeyOf(generateSecretKey("cache-2"))];
      const foreign = await rootsFromStore(store, { keepReleases: 5, rolloutKeys: other });
      expect([...foreign.roots.keys()]).toEqual([p("f")]);
    });
  });

  it("a writer's records, newer or dated ahead, do not push the signed ones out of the collection's reach", async () => {
    await inStore(async (store) => {
      const cacheKey = generateSecretKey("cache-1");
      const at = (minute: number) => new Date(Date.UTC(2026, 10, 26, 7, minute)).toISOString();
      const record = (id: string, startedAt: string, system: string) =>
        rolloutRecord(
          [
            {
              host: "web1",
              state: "confirmed",
              phase: null,
              system,
              before: p("a"),
              message: null,
            },
          ],
          { id, state: "succeeded", startedAt, updatedAt: startedAt },
        );
      await writeRollout(store, record("aaaaaaaaaaaa", at(0), p("b")), cacheKey);
      // 50 unsigned records after it, and one dated a year ahead.
      for (let i = 1; i <= 50; i++) {
        await writeRollout(store, record(`${String(i).padStart(12, "0")}`, at(i), p("c")));
      }
      await writeRollout(store, record("ffffffffffff", "2027-11-26T07:00:00.000Z", p("d")));
      const found = await rootsFromStore(store, {
        keepReleases: 5,
        rolloutKeys: [publicKeyOf(cacheKey)],
      });
      expect([...found.roots.keys()].sort()).toEqual([p("a"), p("b")]);
    });
  });

  it("a system confirmed on an agent host stays a root when a failure is written over its success (the reports are not judged here), as every system that failed last does", async () => {
    await inStore(async (store) => {
      const report = await webHistory(store);
      const roots = async () =>
        [
          ...(await rootsFromStore(store, { keepReleases: 1, keepGenerations: 2 })).roots.keys(),
        ].sort();
      // c (the channel's), then b, its rollback target: a is past --keep-generations 2.
      expect(await roots()).toEqual([p("b"), p("c")]);
      // Each host's own number (a role's): web1 keeps 3, so a stays too.
      const own = await rootsFromStore(store, {
        keepReleases: 1,
        keepGenerations: (host) => (host === "web1" ? 3 : 1),
      });
      expect([...own.roots.keys()].sort()).toEqual([p("a"), p("b"), p("c")]);
      // Someone writes web1's failure of b, newer than its success.
      await new Promise((resolve) => setTimeout(resolve, 20));
      await report(2, p("b"), "failed");
      expect(await roots()).toEqual([p("a"), p("b"), p("c")]);
    });
  });

  it("a release file a writer planted above the channel's stops the collection, named; skipped, it takes no host's history with it", async () => {
    await inStore(async (store) => {
      await webHistory(store);
      await store.put("releases/web/99.json", Buffer.from("{}\n"));
      const options = { keepReleases: 1, keepGenerations: 2 };
      const stopped = await rootsFromStore(store, options);
      expect(stopped.unreadable.map((u) => u.name)).toEqual(["releases/web/99.json"]);
      const skipped = await rootsFromStore(store, {
        ...options,
        skip: new Set(["releases/web/99.json"]),
      });
      expect(skipped.unreadable).toEqual([]);
      expect(skipped.skipped.map((u) => u.name)).toEqual(["releases/web/99.json"]);
      // c, the channel's; b, web1's rollback target by its history.
      expect([...skipped.roots.keys()].sort()).toEqual([p("b"), p("c")]);
    });
  });

  it("names a pin that does not read once, by its key", async () => {
    await inStore(async (store) => {
      await store.put("gc/pins/bad.json", Buffer.from("{ torn"));
      const read = await rootsFromStore(store, { keepReleases: 1 });
      expect(read.unreadable).toEqual([
        { name: "gc/pins/bad.json", problem: "gc/pins/bad.json: is not JSON" },
      ]);
    });
  });

  it("--keep-generations keeps what as many rollbacks walk back through: after a rollback, the system before it", async () => {
    await inStore(async (store) => {
      const key = generateSecretKey("release-1");
      const at = "2026-11-26T07:00:00.000Z";
      const release = async (seq: number, path: string, kind: "deploy" | "rollback") => {
        await publishRelease(store, {
          channel: "web",
          hosts: { web1: { path: path as StorePath } },
          kind,
          action: "switch",
          health: { http: [], commands: [] },
          confirmTimeout: 0,
          key,
        });
        const record = sshRecord({
          ...{ mode: "agent", channel: "web", seq, desired: path, current: path },
          ...{ state: "success", startedAt: at, updatedAt: at },
        });
        await store.put(progressKey("web", seq, "web1", "success"), formatStatusRecord(record));
      };
      // a, b, c deployed; rolled back to b: its newest confirmation is b, then c, then a.
      await release(1, p("a"), "deploy");
      await release(2, p("b"), "deploy");
      await release(3, p("c"), "deploy");
      await release(4, p("b"), "rollback");
      const roots = await rootsFromStore(store, {
        keepReleases: 1,
        keepGenerations: 2,
        explain: true,
      });
      // The next rollback takes web1 from b to a (c is the one it was rolled back from).
      expect([...roots.roots.keys()].sort()).toEqual([p("a"), p("b"), p("c")]);
    });
  });
});
