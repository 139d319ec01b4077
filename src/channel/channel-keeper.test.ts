// ChannelKeeper on a directory store, with the hosts' reports written as their agents write them
// (status markers and records): what each release names (a wave's, the rollback after a wave, a
// settling one, a refresh), the refusal of failed systems, the carry-over of other hosts'
// entries, and a planted channel passed over. Watching hosts apply releases is the agent
// delivery's (delivery/agent.test.ts, with real agents).
import { createHash } from "node:crypto";
import { beforeEach, describe, expect, it } from "vitest";
import {
  CHANNEL,
  channelRelease,
  channelStoreEachTest,
  type Hosts,
  NO_HEALTH,
  plant,
  publishSigned,
  sys,
} from "../../test/support/channel-hosts.js";
import { formatPublicKey, generateSecretKey, publicKeyOf, type SecretKey } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import { channelKey, publishRelease } from "../release/release-store.js";
import type { FsStore } from "../store/fs-store.js";
import { readAll } from "../store/helpers.js";
import { ChannelKeeper, type ChannelKeeperOptions } from "./channel-keeper.js";
import { readHistory } from "./history-store.js";
import { secretsBundleKey } from "./secrets-store.js";
import { readChannelToUpdate } from "./trusted-release.js";

const releaseKeyPair = generateSecretKey("release-1");

const fixture = channelStoreEachTest("channel-keeper");
let store: FsStore;
let hosts: Hosts;

beforeEach(() => {
  ({ store, hosts } = fixture);
});

function keeper(
  options: Partial<ChannelKeeperOptions> & { key?: SecretKey | undefined } = {},
): ChannelKeeper {
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
    ...options,
  });
}

/** One wave entry per host: its system, nothing else. */
const wave = (paths: Record<string, StorePath>) =>
  Object.entries(paths).map(([host, path]) => ({ host, path }));

/** Publishes a wave with a keeper of its own, and has every named host report success. */
async function deployed(paths: Record<string, StorePath>): Promise<number> {
  const signed = await keeper().publishWave(wave(paths), "switch");
  const seq = signed.release.seq;
  await hosts.report(seq, Object.fromEntries(Object.keys(paths).map((h) => [h, "success"])));
  return seq;
}

/** A wave every host of which fails, answered by its rollback release as the delivery does. */
async function failedWave(paths: Record<string, StorePath>): Promise<number> {
  const k = keeper();
  const before = await k.entries();
  const signed = await k.publishWave(wave(paths), "switch");
  const seq = signed.release.seq;
  await hosts.report(seq, Object.fromEntries(Object.keys(paths).map((h) => [h, "failed"])));
  const failed = Object.entries(paths).map(([host, path]) => ({ host, path }));
  await k.rollBackWave({ action: "switch", failed, withdrawn: [], before });
  return seq;
}

/** A manifest digest (64 hex digits). */
const manifest = (c: string) => c.repeat(64);

describe("ChannelKeeper: the channel never names a failed system", () => {
  it("refuses a system that failed on its host, naming host, system and --allow-failed; allowed, it publishes", async () => {
    await deployed({ web1: sys("a", "web1") });
    await failedWave({ web1: sys("c", "web1") });
    // The failed wave's rollback release named web1 back to a.
    expect((await channelRelease(store)).release).toMatchObject({
      seq: 3,
      kind: "rollback",
      hosts: { web1: { path: sys("a", "web1") } },
    });
    const k = keeper();
    await expect(
      k.plan([{ host: "web1", path: sys("c", "web1"), runs: false }]),
    ).rejects.toMatchObject({
      exitCode: 2,
      message: `web1: ${sys("c", "web1")} failed on web1 in release 2`,
      hint: expect.stringContaining("--allow-failed"),
    });
    await expect(k.publishWave(wave({ web1: sys("c", "web1") }), "switch")).rejects.toMatchObject({
      exitCode: 2,
    });
    expect((await channelRelease(store)).release.seq).toBe(3);
    expect(k.published).toEqual([]);
    // What plan would refuse, said before: the plan's refusedFailed.
    expect(
      await k.failedOn([
        { host: "web1", path: sys("c", "web1") },
        { host: "web1", path: sys("a", "web1") },
      ]),
    ).toEqual(new Map([["web1", `web1: ${sys("c", "web1")} failed on web1 in release 2`]]));
    const allowed = keeper({ allowFailed: true });
    expect(await allowed.failedOn([{ host: "web1", path: sys("c", "web1") }])).toEqual(new Map());
    expect(await allowed.plan([{ host: "web1", path: sys("c", "web1"), runs: false }])).toEqual([]);
    await allowed.publishWave(wave({ web1: sys("c", "web1") }), "switch");
    expect((await channelRelease(store)).release).toMatchObject({
      seq: 4,
      hosts: { web1: { path: sys("c", "web1") } },
    });
  });

  it("a host outside the deploy keeps its entry unless it failed there: then its last confirmed system, or none", async () => {
    await deployed({ web1: sys("a", "web1"), web2: sys("a", "web2") });
    // Stale entries from a release that named broken systems: web2 confirmed a before, web3
    // never confirmed anything.
    const seq = await publishSigned(store, releaseKeyPair, {
      web1: { path: sys("a", "web1") },
      web2: { path: sys("c", "web2") },
      web3: { path: sys("c", "web3") },
    });
    await hosts.report(seq, { web2: "failed", web3: "failed" });
    const k = keeper();
    const notes = [
      `web2: release 2 named ${sys("c", "web2")}, which failed there: the new release names its last confirmed system ${sys("a", "web2")}`,
      `web3: release 2 named ${sys("c", "web3")}, which failed there, and no system was confirmed on web3 in the releases read: the new release names none for it (its agent leaves it on what it runs)`,
    ];
    expect(await k.plan([{ host: "web1", path: sys("b", "web1"), runs: false }])).toEqual(notes);
    // Planned again, the notes are the same ones, not repeated.
    expect(await k.plan([{ host: "web1", path: sys("b", "web1"), runs: false }])).toEqual(notes);
    await k.publishWave(wave({ web1: sys("b", "web1") }), "switch");
    expect((await channelRelease(store)).release.hosts).toEqual({
      web1: { path: sys("b", "web1") },
      web2: { path: sys("a", "web2") },
    });
  });

  it("a dry run's entries are carried as the release it was built on named them, and confirm nothing", async () => {
    await deployed({ web1: sys("a", "web1"), web2: sys("a", "web2") });
    // A dry run of b on web1: its agent tries it and reports success, changing nothing.
    const dry = await keeper().publishWave(wave({ web1: sys("b", "web1") }), "dry-activate");
    await hosts.report(dry.release.seq, { web1: "success", web2: "success" });
    expect((await channelRelease(store)).release.hosts.web1).toEqual({ path: sys("b", "web1") });
    // A deploy of web2 alone: web1 keeps a, the system it runs, not the b it only tried.
    await keeper().publishWave(wave({ web2: sys("c", "web2") }), "switch");
    expect((await channelRelease(store)).release.hosts).toEqual({
      web1: { path: sys("a", "web1") },
      web2: { path: sys("c", "web2") },
    });
    // Nor is b among the systems confirmed on web1.
    const history = await readHistory(store, {
      channel: CHANNEL,
      trustedKeys: [publicKeyOf(releaseKeyPair)],
    });
    expect(history.hosts.get("web1")?.map((e) => e.path)).toEqual([sys("a", "web1")]);
  });

  it("a dry run whose base cannot be read carries nothing, and says so", async () => {
    await deployed({ web1: sys("a", "web1"), web2: sys("a", "web2") });
    const dry = await keeper().publishWave(wave({ web1: sys("b", "web1") }), "dry-activate");
    // The release it was built on, gone (pruned).
    await store.delete(`releases/${CHANNEL}/${dry.release.seq - 1}.json`);
    const k = keeper();
    expect(await k.plan([{ host: "web2", path: sys("c", "web2"), runs: false }])).toEqual([
      expect.stringContaining(
        `names release ${dry.release.seq}, a dry run (--action dry-activate), and the release it was built on cannot be read`,
      ),
    ]);
    await k.publishWave(wave({ web2: sys("c", "web2") }), "switch");
    expect((await channelRelease(store)).release.hosts).toEqual({
      web2: { path: sys("c", "web2") },
    });
  });

  it("a host to leave as it is (a rollback's refused host, changed by hand) gets no entry where its entry names another system", async () => {
    await deployed({ web1: sys("a", "web1"), web2: sys("a", "web2"), web3: sys("a", "web3") });
    // web2 was switched by hand to b; web3 runs its entry still, so nothing moves it anyway.
    const leave = new Map([
      ["web2", sys("b", "web2")],
      ["web3", sys("a", "web3")],
    ]);
    const k = keeper({ leave });
    expect(await k.plan([{ host: "web1", path: sys("c", "web1"), runs: false }])).toEqual([
      `web2: runs ${sys("b", "web2")}, not its channel entry ${sys("a", "web2")} (changed since, and left as it is): the release names no entry for it, so that its agent leaves it on what it runs; a deploy that selects it gives it one again`,
    ]);
    await k.publishWave(wave({ web1: sys("c", "web1") }), "switch");
    expect((await channelRelease(store)).release.hosts).toEqual({
      web1: { path: sys("c", "web1") },
      web3: { path: sys("a", "web3") },
    });
    // A later deploy that selects it gives it an entry again.
    await keeper().publishWave(wave({ web2: sys("a", "web2") }), "switch");
    expect((await channelRelease(store)).release.hosts.web2).toEqual({ path: sys("a", "web2") });
  });

  it("names a selected host that already runs its system in the first release (the channel is explicit)", async () => {
    await deployed({ web1: sys("a", "web1"), web2: sys("a", "web2") });
    // The channel is moved away from web2's system by hand; web2 keeps running a.
    await publishSigned(store, releaseKeyPair, { web1: { path: sys("a", "web1") } });
    const k = keeper();
    await k.plan([
      { host: "web1", path: sys("b", "web1"), runs: false },
      { host: "web2", path: sys("a", "web2"), runs: true },
    ]);
    await k.publishWave(wave({ web1: sys("b", "web1") }), "switch");
    expect((await channelRelease(store)).release.hosts).toEqual({
      web1: { path: sys("b", "web1") },
      web2: { path: sys("a", "web2") },
    });
  });

  it("every host runs its system already: settle publishes only when the channel differs", async () => {
    await deployed({ web1: sys("a", "web1"), web2: sys("a", "web2") });
    // A stale entry: web2's release names c, which failed there; web2 runs a.
    const seq = await publishSigned(store, releaseKeyPair, {
      web1: { path: sys("a", "web1") },
      web2: { path: sys("c", "web2") },
    });
    await hosts.report(seq, { web2: "failed" });
    const k = keeper();
    await k.plan([{ host: "web1", path: sys("a", "web1"), runs: true }]);
    const settled = await k.settle("switch");
    expect(settled).toEqual({ channel: CHANNEL, seq: 3, digest: expect.any(String) });
    expect(settled?.digest).toBe(k.published[0]?.digest);
    expect((await channelRelease(store)).release).toMatchObject({
      seq: 3,
      kind: "deploy",
      hosts: { web1: { path: sys("a", "web1") }, web2: { path: sys("a", "web2") } },
    });
    // A keeper that published already has nothing to settle.
    expect(await k.settle("switch")).toBeUndefined();
    // Planned again, the channel states the plan: nothing more is published.
    const again = keeper();
    await again.plan([{ host: "web1", path: sys("a", "web1"), runs: true }]);
    expect(await again.settle("switch")).toBeUndefined();
    expect((await channelRelease(store)).release.seq).toBe(3);
  });

  it("carries over only entries a release key signed: a planted channel is passed over", async () => {
    await deployed({ web1: sys("a", "web1") });
    // Someone with write access to the bucket but no release key planted release 2.
    await plant(store, { web1: { path: sys("d", "web1") }, web7: { path: sys("d", "web7") } });
    await keeper().publishWave(wave({ web2: sys("b", "web2") }), "switch");
    // Release 3 follows release 1 (the newest that verifies), and never names web7's path.
    const now = (await channelRelease(store)).release;
    expect(now).toMatchObject({
      seq: 3,
      hosts: { web1: { path: sys("a", "web1") }, web2: { path: sys("b", "web2") } },
    });
    expect(Object.keys(now.hosts)).toEqual(["web1", "web2"]);
  });
});

describe("ChannelKeeper: release numbers", () => {
  it("are taken from what a release key signed: a file planted far above (or a channel claiming a number) never numbers the next release", async () => {
    await deployed({ web1: sys("a", "web1") });
    await store.put(`releases/${CHANNEL}/999999999999998.json`, new TextEncoder().encode("{}"));
    const { release } = await keeper().refresh();
    expect(release.release.seq).toBe(2);
    // A stopped publisher's file just above is never reused.
    await store.put(`releases/${CHANNEL}/3.json`, new TextEncoder().encode("{}"));
    expect((await keeper().refresh()).release.release.seq).toBe(4);
  });
});

describe("ChannelKeeper: another channel's release copied over the channel", () => {
  it("is passed over as a planted one: its entries are never signed again as this channel's", async () => {
    await deployed({ web1: sys("a", "web1"), db1: sys("a", "db1") });
    // A staging channel signed by the same release key, two releases ahead, copied over prod's
    // channel file by someone who can write the bucket.
    for (let i = 0; i < 3; i++) {
      await publishRelease(store, {
        channel: "staging",
        hosts: { web1: { path: sys("s", "web1") } },
        kind: "deploy",
        action: "switch",
        health: NO_HEALTH,
        confirmTimeout: 0,
        key: releaseKeyPair,
      });
    }
    const staging = await readAll(store, channelKey("staging"));
    await store.put(channelKey(CHANNEL), staging ?? new Uint8Array());
    expect(
      (await readChannelToUpdate(store, CHANNEL, [publicKeyOf(releaseKeyPair)])).trusted,
    ).toMatchObject({ release: { channel: CHANNEL, seq: 1 } });
    await keeper().refresh();
    // The refresh renews prod's own release 1: both hosts, prod's systems, signed for prod.
    const now = (await channelRelease(store)).release;
    expect(now).toMatchObject({
      channel: CHANNEL,
      kind: "refresh",
      hosts: { web1: { path: sys("a", "web1") }, db1: { path: sys("a", "db1") } },
    });
    expect(Object.keys(now.hosts).sort()).toEqual(["db1", "web1"]);
  });
});

describe("ChannelKeeper.rollBackWave", () => {
  it("names failed hosts back to their last confirmed system (or none), and withdrawn hosts to their earlier entry (or none)", async () => {
    await deployed({ web1: sys("a", "web1"), web2: sys("a", "web2"), web3: sys("a", "web3") });
    const k = keeper();
    const before = await k.entries();
    const secrets = {
      bundle: "age-encryption.org/v1 bundle of web1",
      digest: manifest("1"),
      age: undefined,
    };
    const release = await k.publishWave(
      [
        { host: "web1", path: sys("b", "web1"), secrets },
        { host: "web2", path: sys("b", "web2") },
        { host: "web4", path: sys("b", "web4") },
        { host: "web5", path: sys("b", "web5") },
      ],
      "boot",
    );
    await hosts.report(release.release.seq, { web1: "failed", web5: "failed" });
    const back = await k.rollBackWave({
      action: release.release.action,
      failed: [
        { host: "web1", path: sys("b", "web1") },
        { host: "web5", path: sys("b", "web5") },
      ],
      withdrawn: ["web2", "web4"],
      before,
    });
    if (back === undefined) throw new Error("no rollback release was published");
    expect(back.release).toMatchObject({ seq: 3, kind: "rollback", action: "boot" });
    // A rollback changes the system only: web1 keeps the secrets its entry gives it.
    expect(back.release.hosts).toEqual({
      web1: { path: sys("a", "web1"), secrets: release.release.hosts.web1?.secrets },
      web2: { path: sys("a", "web2") },
      web3: { path: sys("a", "web3") },
    });
    expect(back.release.hosts.web1?.secrets).toMatchObject({ manifest: manifest("1") });
    expect(k.published.map((r) => r.release.kind)).toEqual(["deploy", "rollback"]);
    expect((await channelRelease(store)).release.seq).toBe(3);
  });

  it("names a host that failed on the system it ran (new secrets) back to its entry before the wave, old secrets and all", async () => {
    const old = {
      bundle: "age-encryption.org/v1 old bundle",
      digest: manifest("1"),
      age: undefined,
    };
    const k = keeper();
    const first = await k.publishWave(
      [{ host: "web1", path: sys("a", "web1"), secrets: old }],
      "switch",
    );
    await hosts.report(first.release.seq, { web1: "success" });
    const before = await k.entries();
    // The same system with new secrets, which fail to install on the host (X5's owner that
    // does not exist): before, the rollback named the system confirmed before this one, with
    // the new secrets, and failed again.
    const rotated = {
      bundle: "age-encryption.org/v1 new bundle",
      digest: manifest("2"),
      age: undefined,
    };
    const release = await k.publishWave(
      [{ host: "web1", path: sys("a", "web1"), secrets: rotated }],
      "switch",
    );
    await hosts.report(release.release.seq, { web1: "failed" });
    const back = await k.rollBackWave({
      action: "switch",
      failed: [{ host: "web1", path: sys("a", "web1") }],
      withdrawn: [],
      before,
    });
    expect(back.release.hosts).toEqual({ web1: first.release.hosts.web1 });
    expect(back.release.hosts.web1?.secrets).toMatchObject({ manifest: manifest("1") });
  });

  it("withdraws a first wave with a rollback that names no host, and the next release names none of them", async () => {
    // A first wave: no host had an entry before it, nor a confirmed system to go back to.
    const k = keeper();
    const before = await k.entries();
    expect(before).toEqual({});
    const release = await k.publishWave(
      wave({ web1: sys("b", "web1"), web2: sys("b", "web2") }),
      "switch",
    );
    await hosts.report(release.release.seq, { web1: "failed" });
    const back = await k.rollBackWave({
      action: "switch",
      failed: [{ host: "web1", path: sys("b", "web1") }],
      withdrawn: ["web2"],
      before,
    });
    expect(back.release).toMatchObject({ seq: 2, kind: "rollback", hosts: {} });
    // The channel names it: an agent that polls late applies nothing of the wave.
    expect((await channelRelease(store)).release).toMatchObject({ seq: 2, hosts: {} });
    expect(await k.entries()).toEqual({});
    // A refresh of it has nothing to name: refused, saying why, with nothing written.
    await expect(keeper().refresh()).rejects.toMatchObject({
      code: "usage",
      message: expect.stringContaining(
        `channel ${CHANNEL}'s release 2 names no host to refresh (a rollback that withdrew a first wave`,
      ),
    });
    expect((await channelRelease(store)).release.seq).toBe(2);
    // The next wave's release names its own host only, not the ones rolled back to nothing.
    const next = await k.publishWave(wave({ web3: sys("a", "web3") }), "switch");
    expect(next.release.hosts).toEqual({ web3: { path: sys("a", "web3") } });
  });
});

describe("ChannelKeeper.refresh after a dry run", () => {
  it("renews the entries the dry run was built on, day after day, past the walk's bound", async () => {
    await deployed({ web1: sys("a", "web1"), web2: sys("a", "web2") });
    await keeper().publishWave(wave({ web1: sys("b", "web1") }), "dry-activate");
    // Daily refreshes, more than the 20 releases a carry-over walks back past dry runs.
    for (let day = 1; day <= 25; day++) {
      const { release } = await keeper().refresh();
      expect(release.release).toMatchObject({
        kind: "refresh",
        action: "dry-activate",
        hosts: { web1: { path: sys("a", "web1") }, web2: { path: sys("a", "web2") } },
      });
    }
  }, 30_000);
});

describe("ChannelKeeper: entries and releases", () => {
  it("stores a host's secrets bundle under its digest, and gives a host its own checks only where they differ", async () => {
    const own = {
      health: { http: [], commands: [{ run: "true", timeout: 5 }] },
      confirmTimeout: 9,
    };
    const k = keeper({
      keepGenerations: 3,
      policyOf: (host) =>
        host === "web2" ? own : { health: NO_HEALTH, confirmTimeout: 0, keepGenerations: 3 },
    });
    const bundle = "age-encryption.org/v1 bundle of web1";
    const sha256 = createHash("sha256").update(bundle).digest("hex");
    const age = sys("g", "age");
    const signed = await k.publishWave(
      [
        {
          host: "web1",
          path: sys("a", "web1"),
          secrets: { bundle, digest: manifest("2"), age },
          reboot: { timeout: 120, rollback: true },
        },
        { host: "web2", path: sys("a", "web2") },
      ],
      "switch",
    );
    expect(signed.release).toMatchObject({
      health: NO_HEALTH,
      confirmTimeout: 0,
      keepGenerations: 3,
    });
    expect(signed.release.hosts).toEqual({
      web1: {
        path: sys("a", "web1"),
        secrets: { bundle: sha256, manifest: manifest("2"), age },
        reboot: { timeout: 120, rollback: true },
      },
      web2: { path: sys("a", "web2"), policy: own },
    });
    expect((await readAll(store, secretsBundleKey("web1", sha256)))?.toString("utf8")).toBe(bundle);
  });

  it("publishes nothing without a release key, and says which flag gives one", async () => {
    const k = keeper({ key: undefined });
    await expect(k.publishWave(wave({ web1: sys("a", "web1") }), "switch")).rejects.toMatchObject({
      exitCode: 2,
      message: expect.stringContaining("--release-key SECRET_FILE is needed"),
    });
    expect(k.published).toEqual([]);
    expect(await store.get("channels/prod.json")).toBeUndefined();
  });

  it("refresh: the current release again, of kind refresh, with its action, checks and entries (a failed one replaced)", async () => {
    const health = {
      http: [{ url: "http://{address}/health", expectStatus: 200, timeout: 5 }],
      commands: [],
    };
    const first = await keeper({ health, confirmTimeout: 30, keepGenerations: 2 }).publishWave(
      wave({ web1: sys("a", "web1"), web2: sys("a", "web2") }),
      "boot",
    );
    await hosts.report(1, { web1: "success", web2: "success" });
    await keeper({ health, confirmTimeout: 30, keepGenerations: 2 }).publishWave(
      wave({ web2: sys("c", "web2") }),
      "boot",
    );
    await hosts.report(2, { web2: "failed" });
    // A keeper whose own checks differ: the refresh keeps the release's.
    const { replaced, release } = await keeper().refresh();
    expect(replaced.release.seq).toBe(2);
    expect(release.release).toMatchObject({
      seq: 3,
      kind: "refresh",
      action: "boot",
      health,
      confirmTimeout: 30,
      keepGenerations: 2,
      hosts: { web1: { path: sys("a", "web1") }, web2: { path: sys("a", "web2") } },
    });
    expect(Date.parse(release.release.expires)).toBeGreaterThanOrEqual(
      Date.parse(first.release.expires),
    );
    expect((await channelRelease(store)).release.seq).toBe(3);
  });

  it("a refresh that reads the channel while another publisher is between its release file and the channel waits for it, and builds on its release", async () => {
    await deployed({ web1: sys("a", "web1") });
    let reached: () => void = () => {};
    const atChannel = new Promise<void>((resolve) => {
      reached = resolve;
    });
    let open: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    // Publisher A's channel write waits at the gate (a slow store).
    const slow = new Proxy(store, {
      get(target, prop) {
        if (prop === "put") {
          return async (k: string, body: Uint8Array, o?: unknown) => {
            if (k === `channels/${CHANNEL}.json`) {
              reached();
              await gate;
            }
            return target.put(k, body, o as never);
          };
        }
        const value = Reflect.get(target, prop, target) as unknown;
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const a = keeper({ store: slow }).publishWave(wave({ web1: sys("b", "web1") }), "switch");
    await atChannel;
    // B reads release 1 on the channel and A's release 2 on file; A moves the channel a moment
    // later.
    const b = keeper().refresh();
    setTimeout(open, 500);
    expect((await a).release.seq).toBe(2);
    const { replaced, release } = await b;
    expect(replaced.release.seq).toBe(2);
    expect(release.release).toMatchObject({
      seq: 3,
      kind: "refresh",
      hosts: { web1: { path: sys("b", "web1") } },
    });
  });

  it("refresh signs no release copied one step back over the channel (a replay): refused while no host reported on the newer, built on it once one did", async () => {
    await deployed({ web1: sys("a", "web1") });
    await keeper().publishWave(wave({ web1: sys("b", "web1") }), "switch");
    // Someone who can write the bucket but holds no release key puts release 1 back.
    const release1 = await readAll(store, "releases/prod/1.json");
    if (release1 === undefined) throw new Error("no release 1");
    await store.put("channels/prod.json", release1);
    await expect(keeper().refresh()).rejects.toMatchObject({
      exitCode: 2,
      code: "release-channel-ambiguous",
      message: `channel prod names release 1, but release 2 (${store.url} releases/prod/2.json) is on file and signed by a release key, and no host reported on it: either its publisher stopped before it moved the channel, or release 1 was copied over the channel (a replay, which a new release built on it would sign again, sending hosts back); nothing was published`,
      hint: "if a publish was stopped (killed, a crash) and none is running now, delete releases/prod/2.json; if the channel was replayed, copy releases/prod/2.json over channels/prod.json; then run the command again",
    });
    // Nothing was written: no release 3, the channel as the writer left it.
    expect(await readAll(store, "releases/prod/3.json")).toBeUndefined();
    expect((await channelRelease(store)).release.seq).toBe(1);
    // A host reported on release 2: it was the channel's, and the refresh renews it.
    await hosts.report(2, { web1: "success" });
    const { replaced, release } = await keeper().refresh();
    expect(replaced.release.seq).toBe(2);
    expect(release.release).toMatchObject({ seq: 3, hosts: { web1: { path: sys("b", "web1") } } });
  });

  it("refresh refuses a channel with no release a trusted key signed", async () => {
    await expect(keeper().refresh()).rejects.toMatchObject({
      exitCode: 2,
      message:
        "channel prod has no release signed by a release key of the fleet: there is nothing to refresh",
    });
    await plant(store, { web1: { path: sys("d", "web1") } });
    await expect(keeper().refresh()).rejects.toMatchObject({ exitCode: 2 });
    expect((await channelRelease(store)).release.seq).toBe(1);
  });
});

describe("ChannelKeeper with another publisher at once", () => {
  /** The hosts' systems as the channel names them now. */
  async function named(): Promise<Record<string, StorePath>> {
    const hosts = (await channelRelease(store)).release.hosts;
    return Object.fromEntries(Object.entries(hosts).map(([h, e]) => [h, e.path]));
  }

  it("a release published between two waves is kept for every host the later wave does not name", async () => {
    await deployed({ a1: sys("a", "a1"), a2: sys("a", "a2"), b1: sys("a", "b1") });
    const slow = keeper();
    await slow.plan([
      { host: "a1", path: sys("b", "a1"), runs: false },
      { host: "a2", path: sys("b", "a2"), runs: false },
    ]);
    await slow.publishWave(wave({ a1: sys("b", "a1") }), "switch");
    // Meanwhile another deploy (or `rollback --on`) moves b1 and a1.
    await keeper().publishWave(wave({ b1: sys("c", "b1"), a1: sys("c", "a1") }), "switch");
    await slow.publishWave(wave({ a2: sys("b", "a2") }), "switch");
    expect(await named()).toEqual({ a1: sys("c", "a1"), a2: sys("b", "a2"), b1: sys("c", "b1") });
  });

  it("the rollback after a wave leaves a host that another publisher has named since", async () => {
    await deployed({ web1: sys("a", "web1"), web2: sys("a", "web2") });
    const k = keeper();
    const before = await k.entries();
    const release = await k.publishWave(
      wave({ web1: sys("b", "web1"), web2: sys("b", "web2") }),
      "switch",
    );
    await hosts.report(release.release.seq, { web1: "failed", web2: "failed" });
    await keeper().publishWave(wave({ web2: sys("d", "web2") }), "switch");
    await k.rollBackWave({
      action: "switch",
      failed: [
        { host: "web1", path: sys("b", "web1") },
        { host: "web2", path: sys("b", "web2") },
      ],
      withdrawn: [],
      before,
    });
    expect(await named()).toEqual({ web1: sys("a", "web1"), web2: sys("d", "web2") });
  });

  it("a wave that expects what a rollout gave leaves out a host another publisher has named since", async () => {
    await deployed({ web1: sys("a", "web1"), web2: sys("a", "web2") });
    await deployed({ web1: sys("b", "web1"), web2: sys("b", "web2") });
    // The undo of rollout b planned both hosts back to a; then a deploy moves web2 to d.
    const undo = keeper();
    await keeper().publishWave(wave({ web2: sys("d", "web2") }), "switch");
    const back = [
      { host: "web1", path: sys("a", "web1"), expect: sys("b", "web1") },
      { host: "web2", path: sys("a", "web2"), expect: sys("b", "web2") },
    ];
    const { release, refused } = await undo.publishWaveExpected(back, "switch");
    expect(release?.release.hosts).toMatchObject({
      web1: { path: sys("a", "web1") },
      web2: { path: sys("d", "web2") },
    });
    expect([...refused.keys()]).toEqual(["web2"]);
    expect(refused.get("web2")).toContain(
      `the channel names ${sys("d", "web2")} for it, not ${sys("b", "web2")}`,
    );
    expect(await named()).toEqual({ web1: sys("a", "web1"), web2: sys("d", "web2") });
    // A wave whose every host changed since publishes nothing.
    const seq = (await channelRelease(store)).release.seq;
    const none = await keeper().publishWaveExpected([back[1] as (typeof back)[number]], "switch");
    expect(none.release).toBeUndefined();
    expect(none.refused.has("web2")).toBe(true);
    expect((await channelRelease(store)).release.seq).toBe(seq);
  });

  it("a refresh whose read another release overtook reads again and signs that release's entries", async () => {
    await deployed({ web1: sys("a", "web1") });
    // A deploy lands while the refresh reads the hosts' history (its first listing of status/).
    let landing: (() => Promise<unknown>) | undefined = () =>
      keeper().publishWave(wave({ web1: sys("b", "web1") }), "switch");
    const hooked = new Proxy(store, {
      get(target, prop) {
        // Bound to the store itself: its private fields are not the proxy's.
        const own = Reflect.get(target, prop, target);
        if (prop !== "list") return typeof own === "function" ? own.bind(target) : own;
        return async (prefix: string, ...rest: unknown[]) => {
          const land = prefix.startsWith("status/") ? landing : undefined;
          if (land !== undefined) {
            landing = undefined;
            await land();
          }
          return (target.list as (...a: unknown[]) => unknown).call(target, prefix, ...rest);
        };
      },
    });
    const { replaced, release } = await keeper({ store: hooked }).refresh();
    expect(replaced.release.seq).toBe(2);
    expect(release.release).toMatchObject({ seq: 3, kind: "refresh" });
    expect(await named()).toEqual({ web1: sys("b", "web1") });
  });
});
