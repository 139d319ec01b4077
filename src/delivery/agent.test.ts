// AgentDelivery (the deployer's side of the agent mode) against real Agents on a directory
// store: waves as signed releases, failures answered by a rollback release, offline hosts,
// a channel it cannot verify, and `rollback` as a release that names each host's earlier system.
// Activation is the only fake: a scripted Activator per agent (Nix is not what is tested here).
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Activator, Applied, HostSystem } from "../agent/activator.js";
import { Agent } from "../agent/agent.js";
import type { AgentHost } from "../fleet/fleet.js";
import { parseRelease, type SignedRelease } from "../fleet/release.js";
import { channelKey, publishRelease, readChannel, releaseKey } from "../fleet/release-store.js";
import type { DeployRequest } from "../host/activation-session.js";
import { formatPublicKey, generateSecretKey, publicKeyOf, type SecretKey } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import { FsStore } from "../store/fs-store.js";
import { readAll } from "../store/helpers.js";
import { AgentDelivery } from "./agent.js";
import type { DeliveryEvent, WaveHost } from "./delivery.js";

const CHANNEL = "prod";
const releaseKeyPair = generateSecretKey("release-1");
/** A system path; `c` must be a nix32 character (not e, o, u or t). */
const sys = (c: string, host = "web") =>
  `/nix/store/${c.repeat(32)}-nixos-system-${host}` as StorePath;
const NO_HEALTH = { http: [], commands: [] };

/** Activates anything except the paths in `broken`, tracking the host's generation. */
class ScriptedActivator implements Activator {
  readonly applied: string[] = [];
  system: HostSystem = { current: null, profile: null, generation: null };

  constructor(readonly broken: ReadonlySet<string>) {}

  async apply(request: DeployRequest): Promise<Applied> {
    this.applied.push(request.path);
    if (this.broken.has(request.path)) {
      return {
        status: "failed",
        phase: "health",
        message: "health check failed: curl exited 7",
        rolledBack: this.system.current !== null,
      };
    }
    const generation = (this.system.generation ?? 0) + 1;
    this.system = { current: request.path, profile: request.path, generation };
    return { status: "activated", generation };
  }

  async inspect(): Promise<HostSystem> {
    return this.system;
  }
}

let dir: string;
let store: FsStore;
let stop: AbortController;
let running: Promise<void>[];
const activators = new Map<string, ScriptedActivator>();

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-agent-delivery-"));
  store = new FsStore(join(dir, "bucket"), { fsync: false });
  stop = new AbortController();
  running = [];
  activators.clear();
});

afterEach(async () => {
  stop.abort();
  await Promise.all(running);
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

/** Starts real agents for `hosts`, polling every 50 ms; `broken` paths fail their activation. */
function startAgents(hosts: readonly string[], broken: readonly string[] = []): void {
  for (const host of hosts) {
    const activator = new ScriptedActivator(new Set(broken));
    activators.set(host, activator);
    const agent = new Agent({
      store,
      channel: CHANNEL,
      host,
      releaseKeys: [publicKeyOf(releaseKeyPair)],
      substituters: [],
      cacheKeys: [],
      stateDir: join(dir, "state", host),
      activator,
      pollInterval: 0.05,
      jitter: 0,
    });
    running.push(
      mkdir(join(dir, "state", host), { recursive: true }).then(() => agent.run(stop.signal)),
    );
  }
}

function delivery(options: { key?: SecretKey; offlineTimeout?: number } = {}): AgentDelivery {
  return new AgentDelivery({
    store,
    releases: {
      channel: CHANNEL,
      publicKeys: [formatPublicKey(publicKeyOf(releaseKeyPair))],
      offlineTimeout: options.offlineTimeout ?? 20,
    },
    key: options.key ?? releaseKeyPair,
    health: NO_HEALTH,
    confirmTimeout: 0,
    pollInterval: 50,
  });
}

function host(name: string): AgentHost {
  return {
    name,
    tags: [],
    address: undefined,
    system: { kind: "store-path", path: sys("a", name) },
    delivery: "agent",
  };
}

function wave(paths: Record<string, StorePath>): WaveHost[] {
  return Object.entries(paths).map(([name, path]) => ({
    host: host(name),
    request: {
      path,
      action: "switch",
      substituters: [],
      trustedKeys: [],
      commandChecks: [],
      httpChecks: [],
      confirmTimeout: 0,
      activationTimeout: 600,
    },
  }));
}

/** Publishes a release signed by a key the fleet does not trust, as a bucket writer could. */
async function plant(hosts: Record<string, { path: StorePath }>): Promise<void> {
  await publishRelease(store, {
    channel: CHANNEL,
    hosts,
    kind: "deploy",
    action: "switch",
    health: NO_HEALTH,
    confirmTimeout: 0,
    key: generateSecretKey("intruder-1"),
  });
}

const CONTEXT = { index: 0, kind: "main", parallel: 10, failureBudget: 0 } as const;

async function channel(): Promise<SignedRelease> {
  const read = await readChannel(store, CHANNEL);
  if (read.status !== "found") throw new Error("no channel");
  return parseRelease(read.bytes, channelKey(CHANNEL)) as SignedRelease;
}

describe("AgentDelivery.deployWave", () => {
  it("publishes one release for the wave and resolves when every agent reports success", async () => {
    startAgents(["web1", "web2"]);
    const events: DeliveryEvent[] = [];
    const outcomes = await delivery().deployWave(
      wave({ web1: sys("a", "web1"), web2: sys("b", "web2") }),
      (e) => events.push(e),
      CONTEXT,
    );
    expect(outcomes.map((o) => o.status)).toEqual(["activated", "activated"]);
    expect((await channel()).release).toMatchObject({
      seq: 1,
      kind: "deploy",
      hosts: { web1: { path: sys("a", "web1") }, web2: { path: sys("b", "web2") } },
    });
    expect(activators.get("web1")?.applied).toEqual([sys("a", "web1")]);
    expect(events.filter((e) => e.type === "done").map((e) => e.host)).toHaveLength(2);
  });

  it("names a failed host back to its earlier system in a rollback release", async () => {
    startAgents(["web1", "web2"], [sys("c", "web1")]);
    await delivery().deployWave(
      wave({ web1: sys("a", "web1"), web2: sys("a", "web2") }),
      () => {},
      CONTEXT,
    );
    const d = delivery();
    const outcomes = await d.deployWave(
      wave({ web1: sys("c", "web1"), web2: sys("c", "web2") }),
      () => {},
      CONTEXT,
    );
    expect(outcomes[0]).toMatchObject({
      status: "failed",
      message: expect.stringContaining("health check failed"),
      rolledBack: true,
    });
    expect(outcomes[1]).toMatchObject({ status: "activated" });
    expect(d.published.map((r) => r.release.kind)).toEqual(["deploy", "rollback"]);
    expect((await channel()).release.hosts).toEqual({
      web1: { path: sys("a", "web1") },
      web2: { path: sys("c", "web2") },
    });
  });

  it("reports a host whose agent never answers as offline after releases.offlineTimeout", async () => {
    startAgents(["web1"]);
    const outcomes = await delivery({ offlineTimeout: 1 }).deployWave(
      wave({ web1: sys("a", "web1"), web9: sys("a", "web9") }),
      () => {},
      CONTEXT,
    );
    expect(outcomes[0]).toMatchObject({ status: "activated" });
    expect(outcomes[1]).toMatchObject({
      status: "failed",
      phase: "connect",
      message: expect.stringMatching(/no report from the agent within 1s/),
    });
  });

  it("carries over only entries a release key signed: a planted channel is passed over", async () => {
    startAgents(["web1"]);
    await delivery().deployWave(wave({ web1: sys("a", "web1") }), () => {}, CONTEXT);
    // Someone with write access to the bucket but no release key planted release 2.
    await plant({ web1: { path: sys("d", "web1") }, web7: { path: sys("d", "web7") } });
    startAgents(["web2"]);
    const d = delivery();
    const outcomes = await d.deployWave(wave({ web2: sys("b", "web2") }), () => {}, CONTEXT);
    expect(outcomes).toMatchObject([{ status: "activated" }]);
    // Release 3 follows release 1 (the newest that verifies), and never names web7's path.
    expect((await channel()).release).toMatchObject({
      seq: 3,
      hosts: { web1: { path: sys("a", "web1") }, web2: { path: sys("b", "web2") } },
    });
    expect(Object.keys((await channel()).release.hosts)).toEqual(["web1", "web2"]);
    expect(activators.get("web1")?.applied).toEqual([sys("a", "web1")]);
  });
});

describe("AgentDelivery.rollbackHosts", () => {
  async function deployed(...steps: Record<string, StorePath>[]): Promise<void> {
    for (const step of steps) {
      const outcomes = await delivery().deployWave(wave(step), () => {}, CONTEXT);
      expect(outcomes.every((o) => o.status === "activated")).toBe(true);
    }
  }

  it("sends each host back to the last different system an earlier release named for it", async () => {
    startAgents(["web1", "web2"]);
    await deployed(
      { web1: sys("a", "web1"), web2: sys("a", "web2") },
      { web1: sys("b", "web1") },
      // web1 is named again with the same path: the walk back must pass over it.
      { web2: sys("b", "web2"), web1: sys("b", "web1") },
    );
    const d = delivery();
    const outcomes = await d.rollbackHosts([host("web1")], undefined);
    expect(outcomes).toEqual([{ status: "rolled-back", path: sys("a", "web1"), generation: 3 }]);
    const now = await channel();
    expect(now.release).toMatchObject({ seq: 4, kind: "rollback" });
    // Only web1 moved.
    expect(now.release.hosts).toEqual({
      web1: { path: sys("a", "web1") },
      web2: { path: sys("b", "web2") },
    });
    expect(activators.get("web1")?.system.current).toBe(sys("a", "web1"));
    expect(activators.get("web2")?.applied).toEqual([sys("a", "web2"), sys("b", "web2")]);

    // Rolling back again goes forward to b, as a system profile's rollback would.
    const again = await delivery().rollbackHosts([host("web1")], undefined);
    expect(again).toEqual([{ status: "rolled-back", path: sys("b", "web1"), generation: 4 }]);
  });

  it("passes over a release withdrawn by a publisher that lost a race", async () => {
    startAgents(["web1"]);
    await deployed({ web1: sys("a", "web1") }, { web1: sys("b", "web1") });
    await store.delete(releaseKey(CHANNEL, 1));
    const outcomes = await delivery().rollbackHosts([host("web1")], undefined);
    expect(outcomes).toEqual([
      {
        status: "failed",
        message: "no earlier release of channel prod names another system for web1",
      },
    ]);
    expect((await channel()).release.seq).toBe(2);
  });

  it("says why a host cannot go back, and publishes nothing when no host can", async () => {
    startAgents(["web1"]);
    await deployed({ web1: sys("a", "web1") });
    const d = delivery();
    const outcomes = await d.rollbackHosts([host("web1"), host("web5")], undefined);
    expect(outcomes).toEqual([
      {
        status: "failed",
        message: "no earlier release of channel prod names another system for web1",
      },
      {
        status: "failed",
        message:
          "release 1 of channel prod does not name web5: it follows no system of this channel yet",
      },
    ]);
    expect(d.published).toEqual([]);
  });

  it("fails every host of an empty channel, and refuses --to (agent hosts have no generations)", async () => {
    expect(await delivery().rollbackHosts([host("web1")], undefined)).toEqual([
      {
        status: "failed",
        message: "channel prod has no release yet: there is nothing to go back to",
      },
    ]);
    await expect(delivery().rollbackHosts([host("web1")], 3)).rejects.toMatchObject({
      exitCode: 2,
      message: expect.stringContaining("--to"),
    });
  });

  it("passes over releases that do not verify: hosts never ran them, and they are not signed now", async () => {
    startAgents(["web1"]);
    await deployed({ web1: sys("a", "web1") }, { web1: sys("b", "web1") });
    // Release 2 rewritten in the bucket to a path nobody signed, and a release 3 planted by a
    // key the fleet does not trust; then a genuine release 4.
    const two = releaseKey(CHANNEL, 2);
    const text = (await readAll(store, two))?.toString("utf8") ?? "";
    await store.put(two, Buffer.from(text.replace(sys("b", "web1"), sys("z", "web1"))));
    await plant({ web1: { path: sys("y", "web1") } });
    await deployed({ web1: sys("c", "web1") });
    expect((await channel()).release.seq).toBe(4);

    const outcomes = await delivery().rollbackHosts([host("web1")], undefined);
    expect(outcomes).toEqual([{ status: "rolled-back", path: sys("a", "web1"), generation: 4 }]);
    expect((await channel()).release.hosts).toEqual({ web1: { path: sys("a", "web1") } });
  });

  it("says which releases it passed over when nothing genuine is left behind them", async () => {
    startAgents(["web1"]);
    await deployed({ web1: sys("a", "web1") });
    const one = releaseKey(CHANNEL, 1);
    const text = (await readAll(store, one))?.toString("utf8") ?? "";
    await store.put(one, Buffer.from(text.replace(sys("a", "web1"), sys("z", "web1"))));
    await plant({ web1: { path: sys("y", "web1") } });
    // The channel names release 2 (planted) and release 1 no longer verifies: a fresh start.
    await deployed({ web1: sys("c", "web1") });
    expect((await channel()).release.seq).toBe(3);
    const d = delivery();
    const none = await d.rollbackHosts([host("web1")], undefined);
    expect(none).toEqual([
      {
        status: "failed",
        message:
          "no earlier release of channel prod names another system for web1 (passed over releases 2, 1: not signed by a trusted release key)",
      },
    ]);
    expect(d.published).toEqual([]);
  });
});
