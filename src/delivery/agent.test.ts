// AgentDelivery (the deployer's side of the agent mode) against real Agents on a directory
// store: waves as signed releases, failures answered by a rollback release, offline hosts,
// a channel it cannot verify, and `rollback` as a release that names each host's earlier system.
// Activation is the only fake: a scripted Activator per agent (Nix is not what is tested here).
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { inCache, sys } from "../../test/support/channel-hosts.js";
import { makeHostKey } from "../../test/support/ssh-host-key.js";
import { sshRecord } from "../../test/support/status-records.js";
import type { Activator, Applied, HostSystem } from "../agent/activator.js";
import { Agent } from "../agent/agent.js";
import { narInfoKey } from "../cache/layout.js";
import type { AgentHost } from "../fleet/fleet.js";
import type { DeployRequest } from "../host/activation-session.js";
import { formatPublicKey, generateSecretKey, publicKeyOf, type SecretKey } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import type { SignedRelease } from "../release/release.js";
import { parseRelease } from "../release/release-parse.js";
import { channelKey, publishRelease, readChannel, releaseKey } from "../release/release-store.js";
import { nextRecord } from "../status/next-record.js";
import { judgeReport, loadHostSigningKey } from "../status/report-signature.js";
import { formatStatusRecord, progressKey } from "../status/status.js";
import { writeStatus } from "../status/status-store.js";
import { FsStore } from "../store/fs-store.js";
import { readAll } from "../store/helpers.js";
import { AgentDelivery } from "./agent.js";
import type { DeliveryEvent, WaveHost } from "./delivery.js";

const CHANNEL = "prod";
const releaseKeyPair = generateSecretKey("release-1");
const NO_HEALTH = { http: [], commands: [] };

/** Activates anything except the paths in `broken`, tracking the host's generation. */
class ScriptedActivator implements Activator {
  readonly applied: string[] = [];
  system: HostSystem = { current: null, profile: null, generation: null };

  /** Called when a broken path fails (a test stops the host's agent there). */
  onBroken: (() => void) | undefined;

  constructor(readonly broken: ReadonlySet<string>) {}

  /** What a host given the delta tool says it fetched by delta. */
  static readonly DELTA = {
    paths: 12,
    bytes: 3000,
    narBytes: 900_000,
    wholePaths: 2,
    wholeNarBytes: 800,
    failed: 0,
  };

  async apply(request: DeployRequest): Promise<Applied> {
    this.applied.push(request.path);
    if (this.broken.has(request.path)) {
      this.onBroken?.();
      return {
        status: "failed",
        phase: "health",
        message: "health check failed: curl exited 7",
        rolledBack: this.system.current !== null,
      };
    }
    const generation = (this.system.generation ?? 0) + 1;
    this.system = { current: request.path, profile: request.path, generation };
    return {
      status: "activated",
      generation,
      ...(request.deltaTool === undefined ? {} : { delta: ScriptedActivator.DELTA }),
    };
  }

  async judgeBoot(): Promise<Applied> {
    throw new Error("these releases reboot nobody");
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
/** Each host's agent's own stop, beside the one that stops them all. */
const stops = new Map<string, AbortController>();

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

/** A host's SSH host key pair, made by ssh-keygen: its private key file and public key. */
async function hostKeyPair(host: string): Promise<{ file: string; publicKey: string }> {
  await mkdir(join(dir, "keys"), { recursive: true });
  return makeHostKey(join(dir, "keys"), host);
}

/**
 * Starts real agents for `hosts`, polling every 50 ms; `broken` paths fail their activation;
 * a host of `signingKeys` signs its reports with that private key file.
 */
function startAgents(
  hosts: readonly string[],
  broken: readonly string[] = [],
  signingKeys: ReadonlyMap<string, string> = new Map(),
): void {
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
      ...(signingKeys.has(host) ? { signingKeyFile: signingKeys.get(host) as string } : {}),
    });
    const own = new AbortController();
    stops.set(host, own);
    running.push(
      mkdir(join(dir, "state", host), { recursive: true }).then(() =>
        agent.run(AbortSignal.any([stop.signal, own.signal])),
      ),
    );
  }
}

function delivery(
  options: {
    key?: SecretKey;
    offlineTimeout?: number;
    allowFailed?: boolean;
    reportKeys?: ReadonlyMap<string, string>;
  } = {},
): AgentDelivery {
  return new AgentDelivery({
    store,
    releases: {
      channel: CHANNEL,
      publicKeys: [formatPublicKey(publicKeyOf(releaseKeyPair))],
      offlineTimeout: options.offlineTimeout ?? 20,
      maxAge: 3600,
      signedReports: false,
    },
    key: options.key ?? releaseKeyPair,
    health: NO_HEALTH,
    confirmTimeout: 0,
    pollInterval: 50,
    allowFailed: options.allowFailed === true,
    ...(options.reportKeys === undefined ? {} : { reportKeys: options.reportKeys }),
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

  it("leaves out a host whose entry another publisher changed since the wave expected it, and watches the rest", async () => {
    startAgents(["web1", "web2"]);
    await delivery().deployWave(
      wave({ web1: sys("b", "web1"), web2: sys("b", "web2") }),
      () => {},
      CONTEXT,
    );
    // Another deploy moves web2 to d; then a rollback's wave expects b on both.
    await delivery().deployWave(wave({ web2: sys("d", "web2") }), () => {}, CONTEXT);
    const back = wave({ web1: sys("a", "web1"), web2: sys("a", "web2") }).map((w) => ({
      ...w,
      request: { ...w.request, expect: sys("b", w.host.name) },
    }));
    const events: DeliveryEvent[] = [];
    const outcomes = await delivery().deployWave(back, (e) => events.push(e), CONTEXT);
    expect(outcomes[0]).toMatchObject({ status: "activated" });
    expect(outcomes[1]).toMatchObject({
      status: "skipped",
      reason: "refused",
      message: expect.stringContaining(`names ${sys("d", "web2")} for it, not ${sys("b", "web2")}`),
    });
    expect(events.filter((e) => e.type === "done").map((e) => e.host)).toEqual(["web2", "web1"]);
    expect((await channel()).release.hosts).toEqual({
      web1: { path: sys("a", "web1") },
      web2: { path: sys("d", "web2") },
    });
    expect(activators.get("web2")?.applied).toEqual([sys("b", "web2"), sys("d", "web2")]);
    // Every host changed since: nothing is published, nothing watched.
    const seq = (await channel()).release.seq;
    const none = await delivery().deployWave(back.slice(1), () => {}, CONTEXT);
    expect(none).toEqual([expect.objectContaining({ status: "skipped", reason: "refused" })]);
    expect((await channel()).release.seq).toBe(seq);
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
    // The wave ends once web1 applied the rollback release, and says so.
    expect(outcomes[0]).toMatchObject({
      message: expect.stringContaining(
        `it applied rollback release 3 (it runs ${sys("a", "web1")} again)`,
      ),
    });
  });

  it("says which failed host did not apply the rollback release within the watch's deadline", async () => {
    startAgents(["web1", "web2"], [sys("c", "web1")]);
    await delivery().deployWave(
      wave({ web1: sys("a", "web1"), web2: sys("a", "web2") }),
      () => {},
      CONTEXT,
    );
    // web1 fails the new system, and its agent is gone before the rollback release comes.
    const d = delivery({ offlineTimeout: 1 });
    const web1 = activators.get("web1") as ScriptedActivator;
    web1.onBroken = () => stops.get("web1")?.abort();
    const outcomes = await d.deployWave(
      wave({ web1: sys("c", "web1"), web2: sys("c", "web2") }),
      () => {},
      CONTEXT,
    );
    expect(outcomes[0]).toMatchObject({
      status: "failed",
      message: expect.stringContaining("it did not apply rollback release 3 ("),
    });
    expect(String((outcomes[0] as { message: string }).message)).toContain(
      "check it with 'nixship status --stored'",
    );
  });

  it("a first wave whose hosts fail, or are interrupted, with nothing to go back to is withdrawn by a rollback naming no host", async () => {
    startAgents(["web1"], [sys("c", "web1")]);
    const d = delivery();
    const outcomes = await d.deployWave(wave({ web1: sys("c", "web1") }), () => {}, CONTEXT);
    expect(outcomes[0]).toMatchObject({
      status: "failed",
      message: expect.stringContaining("health check failed"),
    });
    expect(d.published.map((r) => r.release.kind)).toEqual(["deploy", "rollback"]);
    expect((await channel()).release).toMatchObject({ seq: 2, kind: "rollback", hosts: {} });

    // web2 has no agent: the interrupt finds it not done, with no earlier entry either.
    const stopped = new AbortController();
    const next = delivery();
    const interrupted = next.deployWave(wave({ web2: sys("a", "web2") }), () => {}, {
      ...CONTEXT,
      signal: stopped.signal,
    });
    setTimeout(() => stopped.abort(), 200);
    const [outcome] = await interrupted;
    expect(outcome).toMatchObject({
      status: "failed",
      message: expect.stringContaining(
        "release 4 withdraws release 3 for it: its agent goes back to what the channel named before (no entry: the agent leaves the host as it is)",
      ),
    });
    expect(next.published.map((r) => r.release.seq)).toEqual([3, 4]);
    expect((await channel()).release).toMatchObject({ seq: 4, hosts: {} });
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
      phase: "waiting",
      message: expect.stringMatching(/no report from the agent within 1s/),
    });
  });

  it("a host whose agent took a newer release (another deploy's) is refused as overtaken, not waited for as offline, and not rolled back", async () => {
    let published = false;
    const started = Date.now();
    const outcomes = await delivery({ offlineTimeout: 60 }).deployWave(
      wave({ web1: sys("a", "web1") }),
      (e) => {
        // Release 1 is out: another operator publishes release 2 before the agent polls.
        if (e.type !== "phase" || published) return;
        published = true;
        void publishRelease(store, {
          channel: CHANNEL,
          hosts: { web1: { path: sys("b", "web1") } },
          kind: "deploy",
          action: "switch",
          health: NO_HEALTH,
          confirmTimeout: 0,
          key: releaseKeyPair,
        }).then(() => startAgents(["web1"]));
      },
      CONTEXT,
    );
    expect(outcomes).toEqual([
      {
        status: "skipped",
        reason: "refused",
        message:
          "its agent took release 2 of channel prod, published after this one (release 1), and never applied this one: another deploy or publisher got there first",
      },
    ]);
    expect(Date.now() - started).toBeLessThan(30_000);
    // The agent runs the newer release's system; the channel still names it (no rollback).
    expect(activators.get("web1")?.applied).toEqual([sys("b", "web1")]);
    expect((await channel()).release).toMatchObject({ seq: 2 });
  });

  /**
   * Whoever can write the store plants web9's "success" of release 1 (naming `desired`, saying
   * it runs `current`); release 1 then names web9's system a: the wave must not take it.
   */
  async function plantedSuccessIsNotTaken(desired: string, current: string): Promise<void> {
    const planted = {
      version: 1 as const,
      host: "web9",
      mode: "agent" as const,
      channel: CHANNEL,
      seq: 1,
      desired,
      current,
      generation: 9,
      state: "success" as const,
      phase: null,
      error: null,
      rolledBack: null,
      startedAt: new Date().toISOString(),
      updatedAt: new Date().toISOString(),
    };
    await store.put(progressKey(CHANNEL, 1, "web9", "success"), formatStatusRecord(planted));
    const outcomes = await delivery({ offlineTimeout: 1 }).deployWave(
      wave({ web9: sys("a", "web9") }),
      () => {},
      CONTEXT,
    );
    expect(outcomes[0]).toMatchObject({ status: "failed", phase: "waiting" });
  }

  it("takes no success marker planted under the next release's number for a host's report", async () => {
    // Planted before release 1 is published: its record names another system, as no one knows
    // the release's system beforehand.
    await plantedSuccessIsNotTaken(sys("z", "web9"), sys("z", "web9"));
  });

  it("takes no success that names the release's system but says the host runs another", async () => {
    // No agent that applied it writes that (a record whose release fields a forger chose, as
    // an agent once signed one: agent-records.ts observationBase).
    await plantedSuccessIsNotTaken(sys("a", "web9"), sys("z", "web9"));
  });

  it("says why when a failed host's record cannot be read, in a message of bounded length", async () => {
    // What a broken or hostile agent could leave as its failure record for release 1: a
    // record whose host name is 100 kB long.
    const garbage = JSON.stringify({ version: 1, host: "W".repeat(100_000), state: "failed" });
    await store.put(progressKey(CHANNEL, 1, "web9", "failed"), Buffer.from(garbage));
    startAgents(["web1"]);
    const outcomes = await delivery({ offlineTimeout: 5 }).deployWave(
      wave({ web9: sys("a", "web9"), web1: sys("a", "web1") }),
      () => {},
      CONTEXT,
    );
    expect(outcomes[1]).toMatchObject({ status: "activated" });
    expect(outcomes[0]).toMatchObject({
      status: "failed",
      message: expect.stringMatching(
        /^web9 reported failed; its record cannot be read: .*bad host name "W+…$/,
      ),
    });
    expect((outcomes[0] as { message: string }).message.length).toBeLessThan(600);
  });

  it("says which hosts have not reported while it waits, and carries generation and previous", async () => {
    startAgents(["web1"]);
    const first = await delivery().deployWave(wave({ web1: sys("a", "web1") }), () => {}, CONTEXT);
    expect(first).toEqual([{ status: "activated", generation: 1, previous: undefined }]);
    const events: DeliveryEvent[] = [];
    // Long enough for one `waiting` event (every 5 s) about web9, whose agent never runs.
    const outcomes = await delivery({ offlineTimeout: 6 }).deployWave(
      wave({ web1: sys("b", "web1"), web9: sys("b", "web9") }),
      (e) => events.push(e),
      CONTEXT,
    );
    expect(outcomes[0]).toEqual({ status: "activated", generation: 2, previous: sys("a", "web1") });
    expect(events.filter((e) => e.type === "phase" && e.phase === "waiting")).toHaveLength(2);
    const waiting = events.filter((e) => e.type === "waiting");
    expect(waiting.length).toBeGreaterThanOrEqual(1);
    expect(waiting[0]).toMatchObject({ hosts: ["web9"], elapsed: expect.any(Number) });
  });

  it("names the delta tool in the entries of the hosts given it, and carries each host's delta report", async () => {
    startAgents(["web1", "web2"]);
    const tool = "/nix/store/zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-zstd-1.5.6" as StorePath;
    const [web1, web2] = wave({ web1: sys("a", "web1"), web2: sys("a", "web2") });
    const given = { ...(web1 as WaveHost), request: { ...web1?.request, deltaTool: tool } };
    const outcomes = await delivery().deployWave(
      [given as WaveHost, web2 as WaveHost],
      () => {},
      CONTEXT,
    );
    expect((await channel()).release.hosts).toEqual({
      web1: { path: sys("a", "web1"), deltaTool: tool },
      web2: { path: sys("a", "web2") },
    });
    expect(outcomes).toEqual([
      { status: "activated", generation: 1, previous: undefined, delta: ScriptedActivator.DELTA },
      { status: "activated", generation: 1, previous: undefined },
    ]);
  });

  it("says how to get past an agent older than deltas, which refuses a release with the tool", async () => {
    // What such an agent reports: the release's entries carry a key it does not know.
    const error =
      "release refused: channels/prod.json: hosts.web1.deltaTool: unknown key (known keys: path, secrets, policy, reboot)";
    await writeStatus(
      store,
      nextRecord(undefined, {
        host: "web1",
        mode: "agent",
        release: { channel: CHANNEL, seq: 1 },
        desired: null,
        system: { current: sys("a", "web1"), generation: 1 },
        what: { state: "rejected", phase: "verify", error, rolledBack: null },
        startedAt: new Date().toISOString(),
        updatedAt: new Date().toISOString(),
      }),
    );
    const [outcome] = await delivery({ offlineTimeout: 5 }).deployWave(
      wave({ web1: sys("b", "web1") }),
      () => {},
      CONTEXT,
    );
    expect(outcome).toMatchObject({ status: "failed", phase: "connect" });
    expect((outcome as { message: string }).message).toBe(
      `${error}: this host's agent is older than deltas (docs/agent.md, "Deltas"): update it with releases that carry no delta tool (deploy --no-delta the channel's hosts, or the policy's "deltas": false), then deltas reach it`,
    );
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

/** Publishes a release signed by the fleet's key, as an older nixship (or a by-hand publisher) could. */
async function publishSigned(hosts: Record<string, { path: StorePath }>): Promise<number> {
  const signed = await publishRelease(store, {
    channel: CHANNEL,
    hosts,
    kind: "deploy",
    action: "switch",
    health: NO_HEALTH,
    confirmTimeout: 0,
    key: releaseKeyPair,
  });
  return signed.release.seq;
}

/** Waits (bounded) until `host`'s agent has applied `count` activations. */
async function appliedCount(host: string, count: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while ((activators.get(host)?.applied.length ?? 0) < count) {
    if (Date.now() > deadline) throw new Error(`${host} did not apply ${count} activations`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  // The agent writes its status right after the activation.
  await new Promise((resolve) => setTimeout(resolve, 200));
}

describe("AgentDelivery: the channel never names a failed system", () => {
  it("a failed wave's rollback names the last system confirmed on the host, not the channel's stale entry", async () => {
    startAgents(["web1"], [sys("c", "web1"), sys("d", "web1")]);
    await delivery().deployWave(wave({ web1: sys("a", "web1") }), () => {}, CONTEXT);
    // A release signed by the fleet's key that named a broken system, left standing (as an
    // older nixship did): web1 failed it and went back to a.
    await publishSigned({ web1: { path: sys("c", "web1") } });
    await appliedCount("web1", 2);
    const d = delivery();
    const outcomes = await d.deployWave(wave({ web1: sys("d", "web1") }), () => {}, CONTEXT);
    expect(outcomes[0]).toMatchObject({
      status: "failed",
      message: expect.stringContaining("health check failed"),
    });
    expect(d.published.map((r) => r.release.kind)).toEqual(["deploy", "rollback"]);
    // Not c, which the channel named before this deploy: a, the last system web1 confirmed.
    expect((await channel()).release.hosts).toEqual({ web1: { path: sys("a", "web1") } });
  });

  it("refuses a system that failed on its host, naming host, system and --allow-failed; allowed, it publishes", async () => {
    startAgents(["web1"], [sys("c", "web1")]);
    await delivery().deployWave(wave({ web1: sys("a", "web1") }), () => {}, CONTEXT);
    await delivery().deployWave(wave({ web1: sys("c", "web1") }), () => {}, CONTEXT);
    const seq = (await channel()).release.seq;
    const d = delivery();
    await expect(
      d.channel.plan([{ host: "web1", path: sys("c", "web1"), runs: false }]),
    ).rejects.toMatchObject({
      exitCode: 2,
      message: `web1: ${sys("c", "web1")} failed on web1 in release 2`,
      hint: expect.stringContaining("--allow-failed"),
    });
    await expect(
      d.deployWave(wave({ web1: sys("c", "web1") }), () => {}, CONTEXT),
    ).rejects.toMatchObject({ exitCode: 2 });
    expect((await channel()).release.seq).toBe(seq);
    const allowed = delivery({ allowFailed: true, offlineTimeout: 5 });
    expect(
      await allowed.channel.plan([{ host: "web1", path: sys("c", "web1"), runs: false }]),
    ).toEqual([]);
    const outcomes = await allowed.deployWave(wave({ web1: sys("c", "web1") }), () => {}, CONTEXT);
    expect(outcomes[0]).toMatchObject({ status: "failed" });
  });

  it("a host outside the deploy keeps its entry unless it failed there: then its last confirmed system, or none", async () => {
    startAgents(["web1", "web2", "web3"], [sys("c", "web2"), sys("c", "web3")]);
    await delivery().deployWave(
      wave({ web1: sys("a", "web1"), web2: sys("a", "web2") }),
      () => {},
      CONTEXT,
    );
    // Stale entries from a release that named broken systems: web2 confirmed a before, web3
    // never confirmed anything.
    await publishSigned({
      web1: { path: sys("a", "web1") },
      web2: { path: sys("c", "web2") },
      web3: { path: sys("c", "web3") },
    });
    await appliedCount("web2", 2);
    await appliedCount("web3", 1);
    const d = delivery();
    const notes = await d.channel.plan([{ host: "web1", path: sys("b", "web1"), runs: false }]);
    expect(notes).toEqual([
      `web2: release 2 named ${sys("c", "web2")}, which failed there: the new release names its last confirmed system ${sys("a", "web2")}`,
      `web3: release 2 named ${sys("c", "web3")}, which failed there, and no system was confirmed on web3 in the releases read: the new release names none for it (its agent leaves it on what it runs)`,
    ]);
    await d.deployWave(wave({ web1: sys("b", "web1") }), () => {}, CONTEXT);
    expect((await channel()).release.hosts).toEqual({
      web1: { path: sys("b", "web1") },
      web2: { path: sys("a", "web2") },
    });
    // web2 already ran a: it did not switch again.
    expect(activators.get("web2")?.applied).toEqual([sys("a", "web2"), sys("c", "web2")]);
  });

  it("names a selected host that already runs its system in the first release (the channel is explicit)", async () => {
    startAgents(["web1", "web2"]);
    await delivery().deployWave(
      wave({ web1: sys("a", "web1"), web2: sys("a", "web2") }),
      () => {},
      CONTEXT,
    );
    // The channel is moved away from web2's system by hand; web2 keeps running a.
    await publishSigned({ web1: { path: sys("a", "web1") } });
    const d = delivery();
    await d.channel.plan([
      { host: "web1", path: sys("b", "web1"), runs: false },
      { host: "web2", path: sys("a", "web2"), runs: true },
    ]);
    await d.deployWave(wave({ web1: sys("b", "web1") }), () => {}, CONTEXT);
    expect((await channel()).release.hosts).toEqual({
      web1: { path: sys("b", "web1") },
      web2: { path: sys("a", "web2") },
    });
  });

  it("every host runs its system already: channel.settle publishes only when the channel differs", async () => {
    startAgents(["web1", "web2"], [sys("c", "web2")]);
    await delivery().deployWave(
      wave({ web1: sys("a", "web1"), web2: sys("a", "web2") }),
      () => {},
      CONTEXT,
    );
    // A stale entry: web2's release names c, which failed there; web2 runs a.
    await publishSigned({ web1: { path: sys("a", "web1") }, web2: { path: sys("c", "web2") } });
    await appliedCount("web2", 2);
    const d = delivery();
    await d.channel.plan([{ host: "web1", path: sys("a", "web1"), runs: true }]);
    const settled = await d.channel.settle("switch");
    expect(settled).toMatchObject({ channel: CHANNEL, seq: 3, digest: expect.any(String) });
    expect((await channel()).release).toMatchObject({
      seq: 3,
      kind: "deploy",
      hosts: { web1: { path: sys("a", "web1") }, web2: { path: sys("a", "web2") } },
    });
    // Planned again, the channel states the plan: nothing more is published.
    const again = delivery();
    await again.channel.plan([{ host: "web1", path: sys("a", "web1"), runs: true }]);
    expect(await again.channel.settle("switch")).toBeUndefined();
    expect((await channel()).release.seq).toBe(3);
  });
});

describe("AgentDelivery.status", () => {
  const base = {
    version: 1,
    mode: "agent",
    channel: CHANNEL,
    seq: 3,
    generation: 1,
    phase: "health",
    error: "health check failed: exit code 1; no earlier system to go back to",
    startedAt: "2026-11-25T06:00:00.000Z",
    updatedAt: "2026-11-25T06:01:40.000Z",
  } as const;

  it("names a system that failed and that the host could not leave, and no other", async () => {
    const failing = sys("b", "web1");
    await writeStatus(store, {
      ...base,
      host: "web1",
      desired: failing,
      current: failing,
      state: "failed",
      rolledBack: false,
    });
    expect(await delivery().status(host("web1"))).toMatchObject({
      reachable: true,
      current: failing,
      failed: { path: failing, since: 1795586500, reason: base.error },
    });
    // Gone back: the host runs what it ran before, which did not fail.
    await writeStatus(store, {
      ...base,
      host: "web2",
      desired: sys("b", "web2"),
      current: sys("a", "web2"),
      state: "failed",
      rolledBack: true,
    });
    expect(await delivery().status(host("web2"))).not.toHaveProperty("failed");
  });
});

describe("AgentDelivery.rollbackHosts", () => {
  async function deployed(...steps: Record<string, StorePath>[]): Promise<void> {
    for (const step of steps) {
      // Pushed first, as a deploy does: a rollback names only a system the cache holds.
      await inCache(store, Object.values(step));
      const outcomes = await delivery().deployWave(wave(step), () => {}, CONTEXT);
      expect(outcomes.every((o) => o.status === "activated")).toBe(true);
    }
  }

  it("sends each host back to the last system confirmed on it before the channel's", async () => {
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

    // Rolling back again never returns to b: nothing was confirmed before a.
    const again = await delivery().rollbackHosts([host("web1")], undefined);
    expect(again).toEqual([
      {
        status: "failed",
        message: `no system was confirmed healthy on web1 before ${sys("a", "web1")} in the releases read`,
      },
    ]);
    expect((await channel()).release.seq).toBe(4);
  });

  it("repeated rollbacks walk back v3 → v2 → v1 and never flip", async () => {
    startAgents(["web1"]);
    await deployed(
      { web1: sys("a", "web1") },
      { web1: sys("b", "web1") },
      { web1: sys("c", "web1") },
    );
    const paths: string[] = [];
    for (let i = 0; i < 3; i++) {
      const [outcome] = await delivery().rollbackHosts([host("web1")], undefined);
      paths.push(outcome?.status === "rolled-back" ? outcome.path : "none");
    }
    expect(paths).toEqual([sys("b", "web1"), sys("a", "web1"), "none"]);
    expect(activators.get("web1")?.applied).toEqual([
      sys("a", "web1"),
      sys("b", "web1"),
      sys("c", "web1"),
      sys("b", "web1"),
      sys("a", "web1"),
    ]);
    // A deploy of c again makes it the newest: one rollback from there is b again.
    await deployed({ web1: sys("c", "web1") });
    const [back] = await delivery().rollbackHosts([host("web1")], undefined);
    expect(back).toMatchObject({ status: "rolled-back", path: sys("b", "web1") });
  });

  it("a failed system is never a rollback target; it is skipped on the walk back", async () => {
    startAgents(["web1"], [sys("c", "web1")]);
    await deployed({ web1: sys("a", "web1") }, { web1: sys("b", "web1") });
    await delivery().deployWave(wave({ web1: sys("c", "web1") }), () => {}, CONTEXT);
    // The channel names b again (the failed wave's rollback release).
    const [back] = await delivery().rollbackHosts([host("web1")], undefined);
    expect(back).toMatchObject({ status: "rolled-back", path: sys("a", "web1") });
    const [to] = await delivery().rollbackHosts([host("web1")], {
      kind: "path",
      path: sys("c", "web1"),
    });
    expect(to).toEqual({
      status: "failed",
      message: `web1: ${sys("c", "web1")} failed on web1 in release 3`,
    });
  });

  it("--to: a store path, release:N, and generation:N", async () => {
    startAgents(["web1", "web2"]);
    await deployed(
      { web1: sys("a", "web1"), web2: sys("a", "web2") },
      { web1: sys("b", "web1") },
      { web1: sys("c", "web1") },
    );
    const byPath = await delivery().rollbackHosts([host("web1")], {
      kind: "path",
      path: sys("a", "web1"),
    });
    expect(byPath).toEqual([{ status: "rolled-back", path: sys("a", "web1"), generation: 4 }]);
    const byRelease = await delivery().rollbackHosts([host("web1"), host("web3")], {
      kind: "release",
      seq: 2,
    });
    expect(byRelease).toEqual([
      { status: "rolled-back", path: sys("b", "web1"), generation: 5 },
      { status: "failed", message: "release 2 of channel prod does not name web3" },
    ]);
    // Generation 3 of web1 was c (its third activation).
    const byGeneration = await delivery().rollbackHosts([host("web1")], {
      kind: "generation",
      generation: 3,
    });
    expect(byGeneration).toEqual([
      { status: "rolled-back", path: sys("c", "web1"), generation: 6 },
    ]);
    const unknown = await delivery().rollbackHosts([host("web1")], {
      kind: "generation",
      generation: 40,
    });
    expect(unknown).toEqual([
      {
        status: "failed",
        message:
          "web1 did not report generation 40 in the last 50 releases of channel prod, refreshes not counted (it last reported generation 6); give --to release:N or --to /nix/store/…",
      },
    ]);
    const absent = await delivery().rollbackHosts([host("web1")], { kind: "release", seq: 99 });
    expect(absent).toEqual([{ status: "failed", message: "channel prod has no release 99" }]);
  });

  it("refuses a system the cache does not hold, naming it and how to push it; publishes nothing", async () => {
    startAgents(["web1"]);
    await deployed({ web1: sys("a", "web1") }, { web1: sys("b", "web1") });
    // A collection took the system the walk back would name.
    await store.delete(narInfoKey(sys("a", "web1")));
    const before = await channel();
    const outcomes = await delivery().rollbackHosts([host("web1")], undefined);
    expect(outcomes).toEqual([
      {
        status: "failed",
        message: `${sys("a", "web1")} is not in the cache ${store.url} (a 'cache gc' took it, or it was never pushed): push it first ('nixship push ${sys("a", "web1")} --to ${store.url}', from a machine whose store holds it), then roll back`,
      },
    ]);
    const byPath = await delivery().rollbackHosts([host("web1")], {
      kind: "path",
      path: sys("z", "web1"),
    });
    expect(byPath[0]).toMatchObject({
      status: "failed",
      message: expect.stringMatching(/is not in the cache/),
    });
    expect((await channel()).release.seq).toBe(before.release.seq);
  });

  it("passes over a release withdrawn by a publisher that lost a race", async () => {
    startAgents(["web1"]);
    await deployed({ web1: sys("a", "web1") }, { web1: sys("b", "web1") });
    await store.delete(releaseKey(CHANNEL, 1));
    const outcomes = await delivery().rollbackHosts([host("web1")], undefined);
    expect(outcomes).toEqual([
      {
        status: "failed",
        message: `no system was confirmed healthy on web1 before ${sys("b", "web1")} in the releases read`,
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
        message: `no system was confirmed healthy on web1 before ${sys("a", "web1")} in the releases read`,
      },
      {
        status: "failed",
        message:
          "release 1 of channel prod does not name web5: it follows no system of this channel yet",
      },
    ]);
    expect(d.published).toEqual([]);
  });

  it("fails every host of an empty channel", async () => {
    expect(await delivery().rollbackHosts([host("web1")], undefined)).toEqual([
      {
        status: "failed",
        message: "channel prod has no release yet: there is nothing to go back to",
      },
    ]);
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
        message: `no system was confirmed healthy on web1 before ${sys("c", "web1")} in the releases read (passed over releases 2, 1: not signed by a trusted release key; signed by one since dropped from releases.publicKeys, they name systems --to /nix/store/… still sends the host to: docs/keys.md)`,
      },
    ]);
    expect(d.published).toEqual([]);
  });
});

describe("AgentDelivery: reports are believed only when their host's key signed them", () => {
  /** A report of `host` on release `seq`, as whoever can write the store could write one. */
  const forged = (host: string, seq: number, state: "success" | "failed", path: StorePath) =>
    sshRecord({
      host,
      mode: "agent",
      channel: CHANNEL,
      seq,
      desired: path,
      current: path,
      generation: 9,
      state,
      ...(state === "failed"
        ? { phase: "health", error: "health check failed", rolledBack: true }
        : {}),
      startedAt: new Date().toISOString(),
      updatedAt: new Date().toISOString(),
    });

  it("a success planted with the release's own system is the canary's only without the host's key", async () => {
    const web9 = await hostKeyPair("web9");
    // web9's agent is down; the writer reads the release's system once it is published (here:
    // beforehand) and plants its success.
    await store.put(
      progressKey(CHANNEL, 1, "web9", "success"),
      formatStatusRecord(forged("web9", 1, "success", sys("a", "web9"))),
    );
    const [fooled] = await delivery({ offlineTimeout: 1 }).deployWave(
      wave({ web9: sys("a", "web9") }),
      () => {},
      CONTEXT,
    );
    expect(fooled).toMatchObject({ status: "activated" });

    await store.put(
      progressKey(CHANNEL, 2, "web9", "success"),
      formatStatusRecord(forged("web9", 2, "success", sys("b", "web9"))),
    );
    const lines: string[] = [];
    const reportKeys = new Map([["web9", web9.publicKey]]);
    const [judged] = await delivery({ offlineTimeout: 1, reportKeys }).deployWave(
      wave({ web9: sys("b", "web9") }),
      (e) => {
        if (e.type === "log") lines.push(e.line);
      },
      CONTEXT,
    );
    expect(judged).toMatchObject({
      status: "failed",
      phase: "waiting",
      message: expect.stringMatching(
        /^no report from web9's agent to be believed; a report of success on release 2 is not believed: it is not signed; /,
      ),
    });
    expect(lines).toEqual([
      "a report of success on release 2 is not believed: it is not signed; waiting for one to believe",
    ]);
  });

  it("an agent that signs with its host key is believed, on success and on failure", async () => {
    const web1 = await hostKeyPair("web1");
    startAgents(["web1"], [sys("b", "web1")], new Map([["web1", web1.file]]));
    const reportKeys = new Map([["web1", web1.publicKey]]);
    const [ok] = await delivery({ reportKeys }).deployWave(
      wave({ web1: sys("a", "web1") }),
      () => {},
      CONTEXT,
    );
    expect(ok).toMatchObject({ status: "activated", generation: 1 });
    const key = progressKey(CHANNEL, 1, "web1", "success");
    const bytes = (await readAll(store, key)) as Buffer;
    expect(
      judgeReport(bytes, key, web1.publicKey, { host: "web1", channel: CHANNEL, seq: 1 }),
    ).toMatchObject({ trusted: true, record: { desired: sys("a", "web1") } });
    const [failed] = await delivery({ reportKeys }).deployWave(
      wave({ web1: sys("b", "web1") }),
      () => {},
      CONTEXT,
    );
    expect(failed).toMatchObject({
      status: "failed",
      phase: "health",
      message: expect.stringMatching(/^health check failed: curl exited 7; it applied rollback/),
    });
  });

  it("a host that signs with another key than the fleet knows (reinstalled) fails, saying how to take its new key", async () => {
    const web1 = await hostKeyPair("web1");
    const old = await hostKeyPair("web1-before");
    startAgents(["web1"], [], new Map([["web1", web1.file]]));
    const [outcome] = await delivery({
      offlineTimeout: 1,
      reportKeys: new Map([["web1", old.publicKey]]),
    }).deployWave(wave({ web1: sys("a", "web1") }), () => {}, CONTEXT);
    expect(outcome).toMatchObject({
      status: "failed",
      message: expect.stringMatching(
        /^no report from web1's agent to be believed; a report of success on release 1 is not believed: it is not signed by web1's host key \(or was edited since\); if its host key changed, check the new one out of band, then give it as the host's hostKey, or pin it with 'nixship secrets rekey --replace-host-keys'/,
      ),
    });
  });

  it("a signed success hidden under a newer marker someone else wrote still counts", async () => {
    const web1 = await hostKeyPair("web1");
    // web1's agent reported release 1 signed, then went away; then someone wrote a failure
    // over it, newer, which the listing picks.
    await writeStatus(
      store,
      forged("web1", 1, "success", sys("a", "web1")),
      await loadHostSigningKey(web1.file),
    );
    await new Promise((resolve) => setTimeout(resolve, 20));
    await store.put(
      progressKey(CHANNEL, 1, "web1", "failed"),
      formatStatusRecord(forged("web1", 1, "failed", sys("a", "web1"))),
    );
    const [outcome] = await delivery({
      offlineTimeout: 2,
      reportKeys: new Map([["web1", web1.publicKey]]),
    }).deployWave(wave({ web1: sys("a", "web1") }), () => {}, CONTEXT);
    expect(outcome).toMatchObject({ status: "activated", generation: 9 });
  });

  it("a refusal of a document that only claimed the release's number is not a refusal of the release", async () => {
    const web1 = await hostKeyPair("web1");
    startAgents(["web1"], [], new Map([["web1", web1.file]]));
    const reportKeys = new Map([["web1", web1.publicKey]]);
    const [first] = await delivery({ reportKeys }).deployWave(
      wave({ web1: sys("a", "web1") }),
      () => {},
      CONTEXT,
    );
    expect(first).toMatchObject({ status: "activated" });
    // Someone without the release key writes a channel file claiming release 2; web1's agent
    // refuses it, signed, under release 2; then the channel file is put back as it was.
    const head = (await readAll(store, channelKey(CHANNEL))) as Buffer;
    const claim = JSON.parse(head.toString("utf8")) as Record<string, unknown>;
    await store.put(channelKey(CHANNEL), Buffer.from(JSON.stringify({ ...claim, seq: 2 })));
    const refusal = progressKey(CHANNEL, 2, "web1", "rejected");
    for (let i = 0; i < 200 && (await readAll(store, refusal)) === undefined; i++) {
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    expect(await readAll(store, refusal)).toBeDefined();
    await store.put(channelKey(CHANNEL), head);
    // The real release 2: the refusal names another document, so web1 is waited for, and
    // applies it.
    const lines: string[] = [];
    const [second] = await delivery({ reportKeys }).deployWave(
      wave({ web1: sys("b", "web1") }),
      (e) => {
        if (e.type === "log") lines.push(e.line);
      },
      CONTEXT,
    );
    expect((await channel()).release.seq).toBe(2);
    expect(second).toMatchObject({ status: "activated" });
    expect(lines.join("\n")).toMatch(
      /a report of rejected on release 2 is not believed: it refused another document that claimed release 2 \(sha256-/,
    );
  });

  it("rollback --to generation:N reads the generation from reports the host signed only", async () => {
    // Pushed, as a deploy does: a rollback names only a system the cache holds.
    await inCache(
      store,
      ["a", "b", "c"].map((c) => sys(c, "web1")),
    );
    const web1 = await hostKeyPair("web1");
    startAgents(["web1"], [], new Map([["web1", web1.file]]));
    const reportKeys = new Map([["web1", web1.publicKey]]);
    for (const path of [sys("a", "web1"), sys("b", "web1")]) {
      const [o] = await delivery({ reportKeys }).deployWave(
        wave({ web1: path }),
        () => {},
        CONTEXT,
      );
      expect(o).toMatchObject({ status: "activated" });
    }
    // Someone writes web1's record: generation 7 is a system of their choosing.
    await store.put(
      "status/hosts/web1.json",
      formatStatusRecord({ ...forged("web1", 2, "success", sys("z", "web1")), generation: 7 }),
    );
    stops.get("web1")?.abort();
    const to = { kind: "generation", generation: 7 } as const;
    const [refused] = await delivery({ reportKeys }).rollbackHosts([host("web1")], to);
    expect(refused).toMatchObject({
      status: "failed",
      message: expect.stringMatching(/^web1 did not report generation 7 in the last 50 releases/),
    });
    // Its own generation 1, from its signed success on release 1.
    const [back] = await delivery({ reportKeys, offlineTimeout: 1 }).rollbackHosts([host("web1")], {
      kind: "generation",
      generation: 1,
    });
    expect((await channel()).release.hosts.web1).toEqual({ path: sys("a", "web1") });
    expect(back).toMatchObject({ status: "failed" });
  });

  it("a host's record is believed by the plan only when its key signed it (else the plan could leave it out as up to date)", async () => {
    const web1 = await hostKeyPair("web1");
    await store.put(
      "status/hosts/web1.json",
      formatStatusRecord(forged("web1", 1, "success", sys("a", "web1"))),
    );
    const reportKeys = new Map([["web1", web1.publicKey]]);
    expect(await delivery().status(host("web1"))).toMatchObject({ current: sys("a", "web1") });
    expect(await delivery({ reportKeys }).status(host("web1"))).toMatchObject({
      current: undefined,
      reported: false,
    });
    await writeStatus(
      store,
      forged("web1", 1, "success", sys("a", "web1")),
      await loadHostSigningKey(web1.file),
    );
    expect(await delivery({ reportKeys }).status(host("web1"))).toMatchObject({
      current: sys("a", "web1"),
      reported: true,
    });
  });

  it("a failure its host did not sign steers neither a rollback nor what the channel carries over", async () => {
    // Pushed, as a deploy does: a rollback names only a system the cache holds.
    await inCache(
      store,
      ["a", "b", "c"].map((c) => sys(c, "web1")),
    );
    const web1 = await hostKeyPair("web1");
    startAgents(["web1", "web2"], [], new Map([["web1", web1.file]]));
    const reportKeys = new Map([["web1", web1.publicKey]]);
    const steps: Record<string, StorePath>[] = [
      { web1: sys("a", "web1"), web2: sys("a", "web2") },
      { web1: sys("b", "web1") },
      { web1: sys("c", "web1") },
    ];
    for (const step of steps) {
      const outcomes = await delivery({ reportKeys }).deployWave(wave(step), () => {}, CONTEXT);
      expect(outcomes.every((o) => o.status === "activated")).toBe(true);
    }
    // Whoever can write the store says web1 failed b (release 2) and c (release 3, what the
    // channel names for it): a publisher would carry web1 back to a, and a rollback skip b.
    for (const [seq, path] of [
      [2, sys("b", "web1")],
      [3, sys("c", "web1")],
    ] as const) {
      await store.put(
        progressKey(CHANNEL, seq, "web1", "failed"),
        formatStatusRecord(forged("web1", seq, "failed", path)),
      );
    }
    const d = delivery({ reportKeys });
    const notes = await d.channel.plan([{ host: "web2", path: sys("b", "web2"), runs: false }]);
    expect(notes).toEqual([
      "web1: a failure report on release 2 is not believed (it is not signed): its signed success on that release counts instead",
      "web1: a failure report on release 3 is not believed (it is not signed): its signed success on that release counts instead",
    ]);
    const [web2] = await d.deployWave(wave({ web2: sys("b", "web2") }), () => {}, CONTEXT);
    expect(web2).toMatchObject({ status: "activated" });
    expect((await channel()).release.hosts.web1).toEqual({ path: sys("c", "web1") });
    const [back] = await delivery({ reportKeys }).rollbackHosts([host("web1")], undefined);
    expect(back).toMatchObject({ status: "rolled-back", path: sys("b", "web1") });
  });
  it("a success its host did not sign, written after the failure it signed, erases neither", async () => {
    // Pushed, as a deploy does: a rollback names only a system the cache holds.
    await inCache(
      store,
      ["a", "b", "c"].map((c) => sys(c, "web1")),
    );
    const web1 = await hostKeyPair("web1");
    startAgents(["web1", "web2"], [sys("c", "web1")], new Map([["web1", web1.file]]));
    const reportKeys = new Map([["web1", web1.publicKey]]);
    for (const step of [{ web1: sys("a", "web1") }, { web1: sys("b", "web1") }]) {
      const [o] = await delivery({ reportKeys }).deployWave(wave(step), () => {}, CONTEXT);
      expect(o).toMatchObject({ status: "activated" });
    }
    const d = delivery({ reportKeys });
    const [failed] = await d.deployWave(wave({ web1: sys("c", "web1") }), () => {}, CONTEXT);
    expect(failed).toMatchObject({ status: "failed", rolledBack: true });
    expect(d.published.map((r) => [r.release.seq, r.release.kind])).toEqual([
      [3, "deploy"],
      [4, "rollback"],
    ]);
    // Whoever can write the store says web1 confirmed c on release 3 after all: the newer
    // marker, beside the failure web1 signed. A rollback from b would go to c, the failed system.
    await new Promise((r) => setTimeout(r, 20));
    await store.put(
      progressKey(CHANNEL, 3, "web1", "success"),
      formatStatusRecord(forged("web1", 3, "success", sys("c", "web1"))),
    );
    const next = delivery({ reportKeys });
    const notes = await next.channel.plan([{ host: "web2", path: sys("a", "web2"), runs: false }]);
    expect(notes).toEqual([
      "web1: a success report on release 3 is not believed (it is not signed): its signed failure on that release counts instead",
    ]);
    const [back] = await delivery({ reportKeys }).rollbackHosts([host("web1")], undefined);
    expect(back).toMatchObject({ status: "rolled-back", path: sys("a", "web1") });
  });
});
