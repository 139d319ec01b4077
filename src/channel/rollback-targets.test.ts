// `nixship rollback` of agent hosts as the channel sees it (ChannelKeeper.publishRollback, which
// rollback-targets.ts picks for): one rollback release naming each host's earlier confirmed
// system, or what `--to` names; hosts that cannot go back refused with why. The hosts' reports
// are written as their agents write them; watching them apply the release is the agent
// delivery's (delivery/agent.test.ts).
import { beforeEach, describe, expect, it } from "vitest";
import {
  CHANNEL,
  channelRelease,
  channelStoreEachTest,
  type Hosts,
  inCache,
  NO_HEALTH,
  plant,
  sys,
} from "../../test/support/channel-hosts.js";
import type { RollbackTarget } from "../fleet/rollback-target.js";
import { formatPublicKey, generateSecretKey, publicKeyOf } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import { releaseKey } from "../release/release-store.js";
import { hostStatusKey } from "../status/status.js";
import type { FsStore } from "../store/fs-store.js";
import { readAll } from "../store/helpers.js";
import { ChannelKeeper, type RollbackRelease } from "./channel-keeper.js";

const releaseKeyPair = generateSecretKey("release-1");

const fixture = channelStoreEachTest("rollback-targets");
let store: FsStore;
let hosts: Hosts;

beforeEach(() => {
  ({ store, hosts } = fixture);
});

function keeper(options: { allowFailed?: boolean } = {}): ChannelKeeper {
  return new ChannelKeeper({
    store,
    releases: {
      channel: CHANNEL,
      publicKeys: [formatPublicKey(publicKeyOf(releaseKeyPair))],
      offlineTimeout: 20,
      maxAge: 3600,
      signedReports: false,
    },
    key: releaseKeyPair,
    health: NO_HEALTH,
    confirmTimeout: 0,
    allowFailed: options.allowFailed === true,
  });
}

/** Each step a wave's release, every host of which reports success. */
async function deployed(...steps: Record<string, StorePath>[]): Promise<void> {
  for (const step of steps) {
    // Pushed first, as a deploy does: a rollback names only a system the cache holds.
    await inCache(store, Object.values(step));
    const wave = Object.entries(step).map(([host, path]) => ({ host, path }));
    const signed = await keeper().publishWave(wave, "switch");
    await hosts.report(
      signed.release.seq,
      Object.fromEntries(wave.map((w) => [w.host, "success"])),
    );
  }
}

/**
 * A rollback of `names` by a keeper of its own; the hosts it sends back report success. Resolves
 * with where each host goes, or why it cannot, in the order asked.
 */
async function rollback(
  names: readonly string[],
  to?: RollbackTarget,
  k: ChannelKeeper = keeper(),
): Promise<{ host: string; path?: StorePath; why?: string }[]> {
  const result: RollbackRelease = await k.publishRollback(names, to);
  if (result.release !== undefined) {
    await hosts.report(
      result.release.release.seq,
      Object.fromEntries(result.hosts.map((h) => [h.host, "success"])),
    );
  }
  return names.map((host) => {
    const why = result.refused.get(host);
    if (why !== undefined) return { host, why };
    return { host, path: result.hosts.find((h) => h.host === host)?.path as StorePath };
  });
}

describe("ChannelKeeper.publishRollback", () => {
  it("sends each host back to the last system confirmed on it before the channel's", async () => {
    await deployed(
      { web1: sys("a", "web1"), web2: sys("a", "web2") },
      { web1: sys("b", "web1") },
      // web1 is named again with the same path: the walk back must pass over it.
      { web2: sys("b", "web2"), web1: sys("b", "web1") },
    );
    const k = keeper();
    const result = await k.publishRollback(["web1"], undefined);
    expect(result.refused.size).toBe(0);
    expect(result.hosts).toEqual([{ host: "web1", path: sys("a", "web1") }]);
    expect(result.release?.release).toMatchObject({ seq: 4, kind: "rollback", action: "switch" });
    expect(k.published.map((r) => r.release.seq)).toEqual([4]);
    // Only web1 moved.
    const now = await channelRelease(store);
    expect(now.release.hosts).toEqual({
      web1: { path: sys("a", "web1") },
      web2: { path: sys("b", "web2") },
    });
    await hosts.report(4, { web1: "success" });

    // Rolling back again never returns to b: nothing was confirmed before a.
    expect(await rollback(["web1"])).toEqual([
      {
        host: "web1",
        why: `no system was confirmed healthy on web1 before ${sys("a", "web1")} in the releases read`,
      },
    ]);
    expect((await channelRelease(store)).release.seq).toBe(4);
  });

  it("repeated rollbacks walk back v3 → v2 → v1 and never flip", async () => {
    await deployed(
      { web1: sys("a", "web1") },
      { web1: sys("b", "web1") },
      { web1: sys("c", "web1") },
    );
    const paths: string[] = [];
    for (let i = 0; i < 3; i++) {
      const [step] = await rollback(["web1"]);
      paths.push(step?.path ?? "none");
    }
    expect(paths).toEqual([sys("b", "web1"), sys("a", "web1"), "none"]);
    // A deploy of c again makes it the newest: one rollback from there is b again.
    await deployed({ web1: sys("c", "web1") });
    expect(await rollback(["web1"])).toEqual([{ host: "web1", path: sys("b", "web1") }]);
  });

  it("a failed system is never a rollback target; it is skipped on the walk back", async () => {
    await deployed({ web1: sys("a", "web1") }, { web1: sys("b", "web1") });
    // A wave of c that failed, answered by its rollback release naming b again.
    const k = keeper();
    const before = await k.entries();
    const failed = await k.publishWave([{ host: "web1", path: sys("c", "web1") }], "switch");
    await hosts.report(failed.release.seq, { web1: "failed" });
    await k.rollBackWave({
      action: "switch",
      failed: [{ host: "web1", path: sys("c", "web1") }],
      withdrawn: [],
      before,
    });
    expect((await channelRelease(store)).release.hosts).toEqual({
      web1: { path: sys("b", "web1") },
    });
    expect(await rollback(["web1"])).toEqual([{ host: "web1", path: sys("a", "web1") }]);
    const to = { kind: "path", path: sys("c", "web1") } as const;
    expect(await rollback(["web1"], to)).toEqual([
      { host: "web1", why: `web1: ${sys("c", "web1")} failed on web1 in release 3` },
    ]);
    // Allowed on purpose, it is named (the cache holds it: its deploy pushed it).
    await inCache(store, [sys("c", "web1")]);
    expect(await rollback(["web1"], to, keeper({ allowFailed: true }))).toEqual([
      { host: "web1", path: sys("c", "web1") },
    ]);
  });

  it("--to: a store path, release:N, and generation:N", async () => {
    await deployed(
      { web1: sys("a", "web1"), web2: sys("a", "web2") },
      { web1: sys("b", "web1") },
      { web1: sys("c", "web1") },
    );
    expect(await rollback(["web1"], { kind: "path", path: sys("a", "web1") })).toEqual([
      { host: "web1", path: sys("a", "web1") },
    ]);
    expect(await rollback(["web1", "web3"], { kind: "release", seq: 2 })).toEqual([
      { host: "web1", path: sys("b", "web1") },
      { host: "web3", why: "release 2 of channel prod does not name web3" },
    ]);
    // Generation 3 of web1 was c (its third activation): found in release 3's success record.
    expect(hosts.generation("web1")).toBe(5);
    expect(await rollback(["web1"], { kind: "generation", generation: 3 })).toEqual([
      { host: "web1", path: sys("c", "web1") },
    ]);
    // The generation the host runs now: found in its latest record.
    expect(await rollback(["web1"], { kind: "generation", generation: 6 })).toEqual([
      { host: "web1", path: sys("c", "web1") },
    ]);
    expect(await rollback(["web1"], { kind: "generation", generation: 40 })).toEqual([
      {
        host: "web1",
        why: "web1 did not report generation 40 in the last 50 releases of channel prod, refreshes not counted (it last reported generation 7); give --to release:N or --to /nix/store/…",
      },
    ]);
    expect(await rollback(["web1"], { kind: "release", seq: 99 })).toEqual([
      { host: "web1", why: "channel prod has no release 99" },
    ]);
    const planted = await plant(store, { web1: { path: sys("y", "web1") } });
    expect(await rollback(["web1"], { kind: "release", seq: planted })).toEqual([
      {
        host: "web1",
        why: `release ${planted} of channel prod is not signed by a trusted release key (one since dropped from releases.publicKeys? --to /nix/store/… sends the host to the system it named: docs/keys.md)`,
      },
    ]);
  });

  // Anyone who can write to the store can write web1's status record: the system it names for a
  // generation is sent only when a verified release named it for web1 (the release key would
  // otherwise sign the writer's choice, e.g. another host's system).
  it("--to generation:N takes no system from an unsigned record that no release named for the host", async () => {
    await deployed({ web1: sys("a", "web1"), web2: sys("a", "web2") }, { web1: sys("b", "web1") });
    const forged = sys("a", "web2");
    await store.put(
      hostStatusKey("web1"),
      Buffer.from(
        JSON.stringify({
          version: 1,
          host: "web1",
          mode: "agent",
          channel: CHANNEL,
          seq: 2,
          desired: sys("b", "web1"),
          current: forged,
          generation: 7,
          previous: null,
          state: "success",
          phase: null,
          error: null,
          rolledBack: null,
          startedAt: "2026-11-25T06:00:00.000Z",
          updatedAt: "2026-11-25T06:01:00.000Z",
        }),
      ),
    );
    expect(await rollback(["web1"], { kind: "generation", generation: 7 })).toEqual([
      {
        host: "web1",
        why: `web1's status record says generation 7 is ${forged}, which no verified release of channel prod in the releases read named for web1, and the record is not signed (releases.signedReports): give --to /nix/store/… to send it there on purpose`,
      },
    ]);
  });

  // A release file anyone who can write to the store can plant, numbered far above the
  // channel's: it is passed over, and the releases the hosts ran are still read (the window
  // used to start at the highest number and count the missing ones, and saw none of them).
  it("still reads the channel's releases past a planted file numbered above them", async () => {
    await deployed({ web1: sys("a", "web1") }, { web1: sys("b", "web1") });
    await store.put(releaseKey(CHANNEL, 64), Buffer.from("{}"));
    const k = keeper();
    const result = await k.publishRollback(["web1"], undefined);
    expect([...result.refused]).toEqual([]);
    expect(result.hosts).toEqual([{ host: "web1", path: sys("a", "web1") }]);
  });

  it("passes over a release withdrawn by a publisher that lost a race", async () => {
    await deployed({ web1: sys("a", "web1") }, { web1: sys("b", "web1") });
    await store.delete(releaseKey(CHANNEL, 1));
    expect(await rollback(["web1"])).toEqual([
      {
        host: "web1",
        why: `no system was confirmed healthy on web1 before ${sys("b", "web1")} in the releases read`,
      },
    ]);
    expect((await channelRelease(store)).release.seq).toBe(2);
  });

  it("says why a host cannot go back, and publishes nothing when no host can", async () => {
    await deployed({ web1: sys("a", "web1") });
    const k = keeper();
    const result = await k.publishRollback(["web1", "web5"], undefined);
    expect(result.release).toBeUndefined();
    expect(result.hosts).toEqual([]);
    expect([...result.refused]).toEqual([
      [
        "web1",
        `no system was confirmed healthy on web1 before ${sys("a", "web1")} in the releases read`,
      ],
      [
        "web5",
        "release 1 of channel prod does not name web5: it follows no system of this channel yet",
      ],
    ]);
    expect(k.published).toEqual([]);
    expect((await channelRelease(store)).release.seq).toBe(1);
  });

  it("refuses every host of an empty channel", async () => {
    const k = keeper();
    const result = await k.publishRollback(["web1", "web2"], undefined);
    expect(result.release).toBeUndefined();
    expect([...result.refused]).toEqual([
      ["web1", "channel prod has no release yet: there is nothing to go back to"],
      ["web2", "channel prod has no release yet: there is nothing to go back to"],
    ]);
    expect(k.published).toEqual([]);
  });

  it("passes over releases that do not verify: hosts never ran them, and they are not signed now", async () => {
    await deployed({ web1: sys("a", "web1") }, { web1: sys("b", "web1") });
    // Release 2 rewritten in the bucket to a path nobody signed, and a release 3 planted by a
    // key the fleet does not trust; then a genuine release 4.
    const two = releaseKey(CHANNEL, 2);
    const text = (await readAll(store, two))?.toString("utf8") ?? "";
    await store.put(two, Buffer.from(text.replace(sys("b", "web1"), sys("z", "web1"))));
    await plant(store, { web1: { path: sys("y", "web1") } });
    await deployed({ web1: sys("c", "web1") });
    expect((await channelRelease(store)).release.seq).toBe(4);

    expect(await rollback(["web1"])).toEqual([{ host: "web1", path: sys("a", "web1") }]);
    expect((await channelRelease(store)).release.hosts).toEqual({
      web1: { path: sys("a", "web1") },
    });
  });

  it("says which releases it passed over when nothing genuine is left behind them", async () => {
    await deployed({ web1: sys("a", "web1") });
    const one = releaseKey(CHANNEL, 1);
    const text = (await readAll(store, one))?.toString("utf8") ?? "";
    await store.put(one, Buffer.from(text.replace(sys("a", "web1"), sys("z", "web1"))));
    await plant(store, { web1: { path: sys("y", "web1") } });
    // The channel names release 2 (planted) and release 1 no longer verifies: a fresh start.
    await deployed({ web1: sys("c", "web1") });
    expect((await channelRelease(store)).release.seq).toBe(3);
    const k = keeper();
    expect(await rollback(["web1"], undefined, k)).toEqual([
      {
        host: "web1",
        why: `no system was confirmed healthy on web1 before ${sys("c", "web1")} in the releases read (passed over releases 2, 1: not signed by a trusted release key; signed by one since dropped from releases.publicKeys, they name systems --to /nix/store/… still sends the host to: docs/keys.md)`,
      },
    ]);
    expect(k.published).toEqual([]);
  });
});
