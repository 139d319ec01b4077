// One reading of a release's shard layout: a signed release that names a host in two shards
// (its own and another, which nixship's publisher never writes) is refused alike, with one
// error naming the release, the host and both shards, by every full reader: `release show`,
// `cache gc` (which names it and keeps nothing for it) and the dashboard's board. The agent of
// that very host reads its own shard only, which is sound, and applies its entry; the agent of a
// host of the shard at fault refuses it with that error. A directory store; the agents run with
// a stand-in for the host's activation.
import { mkdir, mkdtemp, rm, utimes } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Activator, Applied, HostSystem } from "../src/agent/activator.js";
import { Agent } from "../src/agent/agent.js";
import { escapeHtml } from "../src/dashboard/html.js";
import { releasesMain } from "../src/dashboard/pages.js";
import type { DeployRequest } from "../src/host/activation-session.js";
import { formatPublicKey, generateSecretKey, publicKeyOf } from "../src/nix/keys.js";
import { shardIndex } from "../src/release/release-shard.js";
import { shardKey } from "../src/release/shard-store.js";
import { readStatus } from "../src/status/status-store.js";
import type { ObjectStore } from "../src/store/object-store.js";
import { openStore } from "../src/store/url.js";
import { ReleaseBoard } from "../src/views/release-board.js";
import { nixship } from "../support/cli.js";
import { allKeys, putSyntheticPath, syntheticPath } from "../support/synthetic-cache.js";
import { doubledRelease, releaseOfWebHosts } from "./support/doubled-release.js";

let work: string;
const cacheKey = generateSecretKey("layout-cache-1");
const releaseKey = generateSecretKey("layout-release-1");
const RELEASE_PUBLIC = formatPublicKey(publicKeyOf(releaseKey));
const HOST = "web-7";
const SYSTEM = syntheticPath("layout-system", "nixos-system-web");

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-layout-"));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** The host's activation: answers activated, and keeps what it was asked. */
class StandIn implements Activator {
  readonly asked: DeployRequest[] = [];
  async apply(request: DeployRequest): Promise<Applied> {
    this.asked.push(request);
    return { status: "activated", generation: 1 };
  }
  async judgeBoot(request: DeployRequest): Promise<Applied> {
    this.asked.push(request);
    return { status: "activated", generation: 1 };
  }
  async inspect(): Promise<HostSystem> {
    return { current: null, profile: null, generation: null };
  }
}

/** An agent of `host` on the store, with a state directory of its own. */
async function agentOf(store: ObjectStore, host: string, activator: Activator): Promise<Agent> {
  const stateDir = join(work, `agent-state-${host}`);
  await mkdir(stateDir);
  return new Agent({
    store,
    channel: "prod",
    host,
    releaseKeys: [publicKeyOf(releaseKey)],
    substituters: ["http://127.0.0.1:1"],
    cacheKeys: [formatPublicKey(publicKeyOf(cacheKey))],
    stateDir,
    activator,
    pollInterval: 30,
    jitter: 0,
    emit: () => {},
  });
}

describe("a release that names a host in two shards", () => {
  it("is refused by release show, cache gc and the dashboard alike, with one error, while the host's agent applies its entry from its own sound shard", async () => {
    const dir = join(work, "store");
    const url = `file://${dir}`;
    const store = await openStore(url);
    try {
      await store.put("nix-cache-info", Buffer.from("StoreDir: /nix/store\n"));
      await putSyntheticPath(store, cacheKey, SYSTEM, []);
      const release = {
        ...releaseOfWebHosts(SYSTEM),
        // Valid now, whenever the test runs.
        created: new Date(Date.now() - 3600_000).toISOString(),
        expires: new Date(Date.now() + 86400_000).toISOString(),
      };
      const { head, own, other } = await doubledRelease(release, releaseKey, HOST, { store });
      const ref = head.shards[other];
      if (ref === undefined) throw new Error("no such shard");
      const said = `${shardKey("prod", 1, other, ref.digest)}: release 1 of channel prod names host '${HOST}' in shard ${other}, but its shard is ${own} (the first 4 bytes of sha256 of its name, modulo 2): a host is named once, in its own shard`;
      const old = new Date(Date.now() - 2 * 86400_000);
      for (const k of await allKeys(store)) await utimes(join(dir, k), old, old);

      // The agent of the host named twice: its own shard holds its entry, and is sound; it reads
      // no other shard, so it applies its entry.
      const activator = new StandIn();
      const agent = await agentOf(store, HOST, activator);
      expect(await agent.pollOnce()).toBe("applied");
      expect(activator.asked.map((r) => r.path)).toEqual([SYSTEM]);
      const record = await readStatus(store, HOST);
      expect(record).toMatchObject({ state: "success", seq: 1, desired: SYSTEM });

      // The agent of a host of the shard at fault refuses it, with the full readers' error.
      const neighbour = Object.keys(release.hosts).find(
        (h) => h !== HOST && shardIndex(h, 2) === other,
      ) as string;
      const refuser = new StandIn();
      expect(await (await agentOf(store, neighbour, refuser)).pollOnce()).toBe("rejected");
      expect(refuser.asked).toEqual([]);
      const neighbourRecord = await readStatus(store, neighbour);
      expect(neighbourRecord).toMatchObject({ state: "rejected", phase: "verify", desired: null });
      expect(neighbourRecord?.error).toBe(`release refused: ${said}`);

      // release show, verified or not.
      for (const keys of [[], ["--trusted-key", RELEASE_PUBLIC]]) {
        const shown = await nixship([
          "release",
          "show",
          "latest",
          "--channel",
          "prod",
          "--store",
          url,
          "--json",
          ...keys,
        ]);
        expect(shown.code, shown.stderr).toBe(2);
        const { error } = JSON.parse(shown.stdout) as { error: { code: string; message: string } };
        expect(error).toMatchObject({ code: "release-host-twice", message: said });
      }

      // cache gc: names the release with that error and keeps nothing for it; the host whose
      // agent applied its entry keeps its system by its record.
      const gc = await nixship(["cache", "gc", "--cache", url, "--grace", "0", "--json"]);
      expect(gc.code, gc.stderr).toBe(0);
      const report = JSON.parse(gc.stdout) as {
        refusedReleases: { name: string; problem: string }[];
        deletedPaths: { storePath: string }[];
      };
      expect(report.refusedReleases).toEqual([
        { name: "releases/prod/1.json", problem: said },
        { name: "channels/prod.json", problem: said },
      ]);
      expect(report.deletedPaths.map((p) => p.storePath)).toEqual([]);
      const text = await nixship(["cache", "gc", "--cache", url, "--grace", "0", "--dry-run"]);
      expect(text.code, text.stderr).toBe(0);
      expect(text.stderr).toContain(
        `refused release releases/prod/1.json (nixship refuses it, so it keeps nothing; a host that applied its entry keeps its system by its record): ${said}`,
      );

      // The dashboard's board: the channel's release and the release file, refused.
      const channels = await new ReleaseBoard(store, [publicKeyOf(releaseKey)]).poll();
      const prod = channels.find((c) => c.channel === "prod");
      const refused = { status: "refused", key: releaseKey.name, problem: said };
      expect(prod?.currentTrust).toEqual(refused);
      expect(prod?.releases.map((r) => r.trust)).toEqual([refused]);
      const shown = releasesMain(channels, new Date()).toString();
      expect(shown).toContain(
        `The channel names release 1, signed by <code>${releaseKey.name}</code>, which nixship refuses: the agents of the shard at fault refuse it, the others may apply their entries. ${escapeHtml(said)}`,
      );
    } finally {
      await store.close();
    }
  });
});
