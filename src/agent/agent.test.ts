// The pull agent's logic on a real fs store in a temp dir, with a scripted fake Activator and a
// thin wrapper that records every store call: what it applies, what it reports, what it refuses,
// how little it asks of the store while nothing changes, and how it recovers and backs off.
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { doubledRelease } from "../../test/support/doubled-release.js";
import { readHistory } from "../channel/history-store.js";
import { hasFailed } from "../channel/host-history.js";
import { putSecretsBundle, secretsBundleKey } from "../channel/secrets-store.js";
import { InputError } from "../errors.js";
import type { Action } from "../fleet/action.js";
import type { HealthChecks } from "../fleet/fleet.js";
import type { DeployRequest } from "../host/activation-session.js";
import { generateSecretKey, publicKeyOf, type SecretKey } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import {
  headOf,
  type ReleaseHost,
  type ReleaseKind,
  type SignedRelease,
} from "../release/release.js";
import { canonicalForms, canonicalJson, releaseDigest } from "../release/release-canonical.js";
import { parseReleaseHead } from "../release/release-parse.js";
import { shardIndex, signRelease } from "../release/release-shard.js";
import { formatRelease, formatShardedHead } from "../release/release-sign.js";
import { channelKey, publishRelease } from "../release/release-store.js";
import { putShards, shardKey } from "../release/shard-store.js";
import { heartbeatKey } from "../status/heartbeat.js";
import { hostKeyObjectKey, readPublishedHostKey } from "../status/host-key-store.js";
import {
  formatStatusRecord,
  hostStatusKey,
  progressKey,
  progressPrefix,
  type StatusRecord,
} from "../status/status.js";
import { readRecord, readStatus } from "../status/status-store.js";
import { FsStore } from "../store/fs-store.js";
import { listAll, readAll } from "../store/helpers.js";
import type { GetOptions, ObjectStore } from "../store/object-store.js";
import { withoutControls } from "../util/text.js";
import type { Activator, Applied, HostSystem } from "./activator.js";
import { Agent, type AgentEvent, type AgentOptions } from "./agent.js";
import { EMPTY_STATE, loadState, saveState, setPaused } from "./state.js";

const releaseKey = generateSecretKey("release-1");
const intruderKey = generateSecretKey("intruder-1");
const CHANNEL = "prod";
const HOST = "web1";
const CLOCK = new Date("2026-11-21T10:00:00.000Z");
/** A system path; `c` must be a nix32 character (not e, o, u or t). */
const sys = (c: string) => `/nix/store/${c.repeat(32)}-nixos-system-web1` as StorePath;
const HEALTH: HealthChecks = {
  http: [{ url: "http://{address}:8080/health?host={name}", expectStatus: 200, timeout: 3 }],
  commands: [{ run: "systemctl is-active nginx", timeout: 5 }],
};

interface StoreCall {
  readonly op: "get" | "head" | "put" | "putFile" | "list" | "delete";
  readonly key: string;
  /** For get: the etag it was conditional on. */
  readonly ifNoneMatch?: string;
}

/** `inner` with every call recorded; `fail` (when it returns an error) makes a call throw it. */
function counting(
  inner: ObjectStore,
  fail: (call: StoreCall) => Error | undefined = () => undefined,
) {
  const calls: StoreCall[] = [];
  const note = (call: StoreCall): void => {
    calls.push(call);
    const err = fail(call);
    if (err !== undefined) throw err;
  };
  const store: ObjectStore = {
    url: inner.url,
    get: (async (key: string, options?: GetOptions) => {
      note({
        op: "get",
        key,
        ...(options?.ifNoneMatch !== undefined ? { ifNoneMatch: options.ifNoneMatch } : {}),
      });
      return inner.get(key, options);
    }) as ObjectStore["get"],
    head: async (key) => {
      note({ op: "head", key });
      return inner.head(key);
    },
    put: async (key, body, options) => {
      note({ op: "put", key });
      return inner.put(key, body, options);
    },
    putFile: async (key, file, options) => {
      note({ op: "putFile", key });
      return inner.putFile(key, file, options);
    },
    makeStagingDir: () => inner.makeStagingDir(),
    list: async (prefix, options) => {
      note({ op: "list", key: prefix });
      return inner.list(prefix, options);
    },
    delete: async (key) => {
      note({ op: "delete", key });
      return inner.delete(key);
    },
    close: () => inner.close(),
  };
  return { store, calls };
}

/** An Activator that answers from a script (default: activated) and tracks the host's system. */
class FakeActivator implements Activator {
  readonly requests: DeployRequest[] = [];
  /** Answers for the next apply calls, in order; when empty, apply activates. */
  readonly script: Applied[] = [];
  system: HostSystem = { current: null, profile: null, generation: null };
  /** When set, apply answers only once it settles (an apply that takes a while). */
  hold: Promise<void> | undefined;
  /** When set, inspect fails with it. */
  inspectError: Error | undefined;
  #generation = 0;

  /** Answers for the next judgeBoot calls, in order; when empty, the boot is kept. */
  readonly judged: Applied[] = [];

  async judgeBoot(request: DeployRequest): Promise<Applied> {
    this.requests.push(request);
    const answer = this.judged.shift() ?? {
      status: "activated",
      generation: this.system.generation,
    };
    if (answer.status === "activated") {
      this.system = { ...this.system, current: request.path, bootId: "boot-2" };
    }
    return answer;
  }

  async apply(request: DeployRequest, onLog: (line: string) => void): Promise<Applied> {
    this.requests.push(request);
    onLog(`switching to ${request.path}`);
    await this.hold;
    const answer = this.script.shift() ?? {
      status: "activated",
      generation: (this.system.generation ?? this.#generation) + 1,
    };
    // A dry run changes nothing on the host.
    if (answer.status === "activated" && request.action !== "dry-activate") {
      this.#generation = answer.generation ?? this.#generation;
      this.system = {
        current: request.path,
        profile: request.path,
        generation: answer.generation,
        ...(request.secrets !== undefined
          ? { secrets: request.secrets.digest }
          : this.system.secrets !== undefined
            ? { secrets: this.system.secrets }
            : {}),
      };
    }
    return answer;
  }

  async inspect(): Promise<HostSystem> {
    if (this.inspectError !== undefined) throw this.inspectError;
    return this.system;
  }
}

let dir: string;
let stateDir: string;
/** The bucket itself: what the deployer (and the tests' set-up) write through, uncounted. */
let store: FsStore;
/** What the agent sees: the same bucket, every call recorded. */
let agentStore: ObjectStore;
let calls: StoreCall[];
let activator: FakeActivator;
let events: AgentEvent[];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-agent-test-"));
  stateDir = join(dir, "state");
  await mkdir(stateDir);
  store = new FsStore(join(dir, "bucket"), { fsync: false });
  ({ store: agentStore, calls } = counting(store));
  activator = new FakeActivator();
  events = [];
});

afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

function makeAgent(overrides: Partial<AgentOptions> = {}): Agent {
  return new Agent({
    store: agentStore,
    channel: CHANNEL,
    host: HOST,
    releaseKeys: [publicKeyOf(releaseKey)],
    substituters: ["http://127.0.0.1:37515"],
    cacheKeys: ["cache-1:lWwOmhFw0ds2rFa+bN7VVTYVXK7ujJv76J6gVTXevhM="],
    stateDir,
    activator,
    pollInterval: 30,
    jitter: 0,
    emit: (e) => events.push(e),
    now: () => CLOCK,
    ...overrides,
  });
}

/** Publishes the next release of the channel (as the deployer does), naming `hosts`. */
function publish(
  hosts: Record<string, StorePath> = { [HOST]: sys("a") },
  key: SecretKey = releaseKey,
): Promise<SignedRelease> {
  return publishEntries(
    Object.fromEntries(Object.entries(hosts).map(([h, path]) => [h, { path }])),
    key,
  );
}

/** Publishes the next release of the channel with these entries (a switch deploy's, by default). */
function publishEntries(
  hosts: Record<string, ReleaseHost>,
  key: SecretKey = releaseKey,
  as: { readonly kind?: ReleaseKind; readonly action?: Action } = {},
): Promise<SignedRelease> {
  return publishRelease(store, {
    channel: CHANNEL,
    hosts,
    kind: as.kind ?? "deploy",
    action: as.action ?? "switch",
    health: HEALTH,
    confirmTimeout: 45,
    key,
    now: CLOCK,
  });
}

/** Publishes a release naming HOST's system with a secrets bundle stored as the deployer does. */
async function publishWithSecrets(path: StorePath, bundle: string, manifest: string) {
  const sha = await putSecretsBundle(store, HOST, bundle);
  return publishEntries({ [HOST]: { path, secrets: { bundle: sha, manifest } } });
}

/** Replaces what the channel object holds, as an attacker with write access to the bucket could. */
async function writeChannel(bytes: Uint8Array | string): Promise<void> {
  await store.put(channelKey(CHANNEL), typeof bytes === "string" ? Buffer.from(bytes) : bytes);
}

async function channelBytes(): Promise<Buffer> {
  const bytes = await readAll(store, channelKey(CHANNEL));
  if (bytes === undefined) throw new Error("no channel");
  return bytes;
}

async function hostRecord(): Promise<StatusRecord> {
  const record = await readStatus(store, HOST);
  if (record === undefined) throw new Error(`${HOST} never reported`);
  return record;
}

async function markers(seq: number): Promise<string[]> {
  const found: string[] = [];
  for await (const info of listAll(store, progressPrefix(CHANNEL, seq))) found.push(info.key);
  return found;
}

/** The calls made since `mark` (an index into `calls`). */
const since = (mark: number) => calls.slice(mark);

/** Release 1 of the channel, a switch that names `hosts`, as the doubled-shard tests sign it. */
function firstDeployRelease<H>(hosts: H) {
  return {
    version: 1 as const,
    channel: CHANNEL,
    seq: 1,
    created: CLOCK.toISOString(),
    expires: new Date(CLOCK.getTime() + 3600_000).toISOString(),
    previous: null,
    kind: "deploy" as const,
    action: "switch" as const,
    health: HEALTH,
    confirmTimeout: 45,
    hosts,
  };
}
const ofType = <T extends AgentEvent["type"]>(type: T) =>
  events.filter((e): e is Extract<AgentEvent, { type: T }> => e.type === type);

describe("Agent.pollOnce: the host key", () => {
  it("publishes the host's SSH host key once, for secrets rekey", async () => {
    const file = join(dir, "ssh_host_ed25519_key");
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "root@web1", "-f", file]);
    const [type, base64] = (await readFile(`${file}.pub`, "utf8")).split(" ");
    await publish();
    const agent = makeAgent({ hostKeyFile: `${file}.pub` });
    await agent.start();
    await agent.pollOnce();
    expect(await readPublishedHostKey(store, HOST)).toBe(`${type} ${base64}`);
    const mark = calls.length;
    await agent.pollOnce();
    expect(since(mark).filter((c) => c.key === hostKeyObjectKey(HOST))).toEqual([]);
  });

  it("says once that a key it cannot read is not published, and goes on", async () => {
    await publish();
    const agent = makeAgent({ hostKeyFile: join(dir, "no-such-key.pub") });
    await agent.start();
    expect(await agent.pollOnce()).toBe("applied");
    await agent.pollOnce();
    const warnings = ofType("warning").filter((w) => w.message.includes("host key"));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.message).toContain("no-such-key.pub");
    expect(await readPublishedHostKey(store, HOST)).toBeUndefined();
  });
});

describe("Agent.pollOnce: secrets", () => {
  const BUNDLE = `nixship-secrets 1\ntoken root root 0400 /run/keys/token ${"a".repeat(64)} QUJD\n`;
  const ROTATED = BUNDLE.replace("QUJD", "REVG");

  it("fetches the bundle the release names and hands it to the activation", async () => {
    await publishWithSecrets(sys("a"), BUNDLE, "1".repeat(64));
    const agent = makeAgent();
    await agent.start();
    expect(await agent.pollOnce()).toBe("applied");
    expect(activator.requests[0]?.secrets).toEqual({
      bundle: BUNDLE,
      digest: "1".repeat(64),
      age: undefined,
    });
    // Its record says which secrets it has, so a deploy knows when they change.
    expect((await hostRecord()).secrets).toBe("1".repeat(64));
  });

  it("a dry-activate fetches no bundle and hands the activation none: the host's secrets stay", async () => {
    const sha = await putSecretsBundle(store, HOST, BUNDLE);
    await publishRelease(store, {
      channel: CHANNEL,
      hosts: { [HOST]: { path: sys("a"), secrets: { bundle: sha, manifest: "1".repeat(64) } } },
      kind: "deploy",
      action: "dry-activate",
      health: HEALTH,
      confirmTimeout: 45,
      key: releaseKey,
      now: CLOCK,
    });
    const agent = makeAgent();
    await agent.start();
    expect(await agent.pollOnce()).toBe("applied");
    expect(activator.requests).toHaveLength(1);
    expect(activator.requests[0]?.action).toBe("dry-activate");
    expect(activator.requests[0]?.secrets).toBeUndefined();
    expect(calls.filter((c) => c.key === secretsBundleKey(HOST, sha))).toEqual([]);
  });

  it("applies again when only the secrets change, and not when nothing does", async () => {
    await publishWithSecrets(sys("a"), BUNDLE, "1".repeat(64));
    const agent = makeAgent();
    await agent.start();
    expect(await agent.pollOnce()).toBe("applied");
    await publishWithSecrets(sys("a"), BUNDLE, "1".repeat(64));
    expect(await agent.pollOnce()).toBe("applied");
    expect(activator.requests).toHaveLength(1);
    await publishWithSecrets(sys("a"), ROTATED, "2".repeat(64));
    expect(await agent.pollOnce()).toBe("applied");
    expect(activator.requests).toHaveLength(2);
    expect(activator.requests[1]?.secrets?.bundle).toBe(ROTATED);
  });

  it("refuses a bundle changed in the store before anything runs, without counting it against the system", async () => {
    const signed = await publishWithSecrets(sys("a"), BUNDLE, "1".repeat(64));
    const sha = signed.release.hosts[HOST]?.secrets?.bundle as string;
    await store.put(secretsBundleKey(HOST, sha), Buffer.from(ROTATED));
    const agent = makeAgent();
    await agent.start();
    expect(await agent.pollOnce()).toBe("rejected");
    expect(activator.requests).toHaveLength(0);
    const record = await hostRecord();
    expect(record).toMatchObject({
      state: "rejected",
      phase: "secrets",
      desired: sys("a"),
      seq: signed.release.seq,
    });
    expect(record.error).toContain(`not the ${sha} its release signed: refused`);
    // The store's fault, not the system's: the history holds nothing against it, and the
    // apply it began is over (no recovery of it on the next start).
    const history = await readHistory(store, { channel: CHANNEL, trustedKeys: undefined });
    expect(hasFailed(history.hosts.get(HOST) ?? [], sys("a"))).toBe(false);
    expect((await loadState(stateDir)).applying).toBeNull();
    // A release with a sound bundle for the same system is then applied.
    await publishWithSecrets(sys("a"), BUNDLE, "1".repeat(64));
    expect(await agent.pollOnce()).toBe("applied");
    expect(activator.requests).toHaveLength(1);
  });
});

describe("Agent.pollOnce: a store that fails while the bundle comes", () => {
  it("leaves no apply begun: a restart recovers nothing, and the next poll applies", async () => {
    const BUNDLE = `nixship-secrets 1\ntoken root root 0400 /run/keys/token ${"a".repeat(64)} QUJD\n`;
    let storeDown = true;
    ({ store: agentStore, calls } = counting(store, (call) =>
      storeDown && call.op === "get" && call.key.startsWith("secrets/")
        ? new Error("connect ECONNREFUSED 127.0.0.1:9")
        : undefined,
    ));
    await publishWithSecrets(sys("a"), BUNDLE, "1".repeat(64));
    const agent = makeAgent();
    await agent.start();
    await expect(agent.pollOnce()).rejects.toThrow("ECONNREFUSED");
    expect(activator.requests).toHaveLength(0);
    expect((await loadState(stateDir)).applying).toBeNull();
    // Restarted meanwhile: no activation to recover, as none began.
    const restarted = makeAgent();
    await restarted.start();
    expect(ofType("recovering")).toEqual([]);
    storeDown = false;
    expect(await restarted.pollOnce()).toBe("applied");
    expect(activator.requests).toHaveLength(1);
  });
});

describe("Agent.pollOnce: the host's own checks (policy per role)", () => {
  it("applies its entry's checks in place of the release's, and the release's without them", async () => {
    const own = {
      health: { http: [], commands: [{ run: "test -e /run/worker.ok", timeout: 7 }] },
      confirmTimeout: 12,
      keepGenerations: 4,
    };
    const signed = await publishEntries({
      [HOST]: { path: sys("a"), policy: own },
      web2: { path: sys("b") },
    });
    // The entry's policy is signed with the rest, and reads back as written.
    expect(signed.release.hosts[HOST]?.policy).toEqual(own);
    const agent = makeAgent();
    await agent.start();
    expect(await agent.pollOnce()).toBe("applied");
    expect(activator.requests[0]).toMatchObject({
      commandChecks: own.health.commands,
      httpChecks: [],
      confirmTimeout: 12,
      keepGenerations: 4,
    });
    const other = makeAgent({ host: "web2", stateDir: join(dir, "state-web2") });
    await mkdir(join(dir, "state-web2"));
    await other.start();
    expect(await other.pollOnce()).toBe("applied");
    expect(activator.requests[1]).toMatchObject({
      commandChecks: HEALTH.commands,
      confirmTimeout: 45,
    });
  });

  it("says the release's outcome again when a refused channel document is put back", async () => {
    const signed = await publish();
    const agent = makeAgent();
    await agent.start();
    expect(await agent.pollOnce()).toBe("applied");
    const applied = await hostRecord();
    // A bucket writer puts a document the agent refuses (a byte-order mark before the release)…
    await writeChannel(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(signed.bytes)]));
    // (A body that does not parse is read twice before it is refused: a torn read.)
    expect(await agent.pollOnce()).toBe("unchanged");
    expect(await agent.pollOnce()).toBe("rejected");
    expect(await hostRecord()).toMatchObject({ state: "rejected" });
    // …then the release back, byte for byte: the host's record is its outcome again.
    await writeChannel(Buffer.from(signed.bytes));
    expect(await agent.pollOnce()).toBe("unchanged");
    const back = await hostRecord();
    expect(back).toMatchObject({ ...applied, updatedAt: expect.any(String) });
    expect(back.state).toBe("success");
    expect(activator.requests).toHaveLength(1);
    expect(agent.state).toMatchObject({ refused: null, beforeRefusal: null });
  });

  it("refuses an entry whose policy is malformed, naming where", async () => {
    const signed = await publish();
    const text = JSON.parse(Buffer.from(signed.bytes).toString("utf8"));
    text.hosts[HOST].policy = {
      health: { http: [], commands: [{ run: 5, timeout: 1 }] },
      confirmTimeout: 1,
    };
    await writeChannel(`${JSON.stringify(text)}\n`);
    const agent = makeAgent();
    await agent.start();
    // (A body that does not parse is read twice before it is refused: a torn read.)
    expect(await agent.pollOnce()).toBe("unchanged");
    expect(await agent.pollOnce()).toBe("rejected");
    expect((await hostRecord()).error).toContain(`hosts.${HOST}.policy.health.commands[0].run`);
  });
});

describe("Agent.pollOnce: applying releases", () => {
  it("applies a release naming the host once and reports success (record and markers)", async () => {
    await publish();
    const agent = makeAgent();
    await agent.start();
    expect(await agent.pollOnce()).toBe("applied");

    expect(activator.requests).toEqual([
      {
        path: sys("a"),
        action: "switch",
        substituters: ["http://127.0.0.1:37515"],
        trustedKeys: ["cache-1:lWwOmhFw0ds2rFa+bN7VVTYVXK7ujJv76J6gVTXevhM="],
        commandChecks: [{ run: "systemctl is-active nginx", timeout: 5 }],
        // The agent is the host: {address} is loopback, {name} the host's own name.
        httpChecks: [
          { url: "http://127.0.0.1:8080/health?host=web1", expectStatus: 200, timeout: 3 },
        ],
        confirmTimeout: 45,
        // No activationTimeout in the agent's options: the documented default.
        activationTimeout: 600,
      },
    ]);
    const record = await hostRecord();
    expect(record).toEqual({
      version: 1,
      host: HOST,
      mode: "agent",
      channel: CHANNEL,
      seq: 1,
      desired: sys("a"),
      current: sys("a"),
      generation: 1,
      previous: null,
      // The release put its system there: its origin document names who and from what.
      origin: { kind: "release", channel: CHANNEL, seq: 1 },
      state: "success",
      phase: null,
      error: null,
      rolledBack: null,
      // The activation's log, for the deployer to show.
      log: { from: 0, lines: [`switching to ${sys("a")}`] },
      startedAt: CLOCK.toISOString(),
      updatedAt: CLOCK.toISOString(),
    });
    // The apply ended within reportApplyingAfter: only its outcome is reported.
    expect(await markers(1)).toEqual([progressKey(CHANNEL, 1, HOST, "success")]);
    expect(await readRecord(store, progressKey(CHANNEL, 1, HOST, "success"))).toEqual(record);
    expect(agent.state).toMatchObject({ lastSeq: 1, lastResult: "success", applying: null });
    expect(await loadState(stateDir)).toEqual(agent.state);
    expect(events.map((e) => e.type)).toEqual(["started", "release", "applying", "log", "applied"]);
    // One read of the channel and, with no state yet, one of the release after it (is there a
    // newer one?), then the record + success marker, then the agent's first heartbeat (every
    // 10 polls of 30 s at most: 300 s).
    expect(calls.map((c) => `${c.op} ${c.key}`)).toEqual([
      `get ${channelKey(CHANNEL)}`,
      `get releases/${CHANNEL}/2.json`,
      `put ${hostStatusKey(HOST)}`,
      `put ${progressKey(CHANNEL, 1, HOST, "success")}`,
      `put ${heartbeatKey(HOST, "running", 300)}`,
    ]);
  });

  it("polls an unchanged channel with one conditional GET and nothing else", async () => {
    await publish();
    const agent = makeAgent();
    expect(await agent.pollOnce()).toBe("applied");
    const etag = agent.state.etag;
    expect(etag).not.toBeNull();
    for (let i = 0; i < 3; i++) {
      const mark = calls.length;
      expect(await agent.pollOnce()).toBe("unchanged");
      expect(since(mark)).toEqual([{ op: "get", key: channelKey(CHANNEL), ifNoneMatch: etag }]);
    }
    expect(activator.requests).toHaveLength(1);
  });

  it("reads the channel again when its etag changes but applies nothing for the same release", async () => {
    await publish();
    const agent = makeAgent();
    expect(await agent.pollOnce()).toBe("applied");
    // The same bytes written again: a new etag, the same release.
    await writeChannel(await channelBytes());
    const mark = calls.length;
    expect(await agent.pollOnce()).toBe("unchanged");
    expect(since(mark).map((c) => c.op)).toEqual(["get"]);
    expect(activator.requests).toHaveLength(1);
    // …and remembers the new etag: the poll after that is conditional and answered 304.
    const again = calls.length;
    expect(await agent.pollOnce()).toBe("unchanged");
    expect(since(again)).toEqual([
      { op: "get", key: channelKey(CHANNEL), ifNoneMatch: agent.state.etag },
    ]);
  });

  it("applies a newer release", async () => {
    await publish({ [HOST]: sys("a") });
    const agent = makeAgent();
    expect(await agent.pollOnce()).toBe("applied");
    await publish({ [HOST]: sys("b") });
    expect(await agent.pollOnce()).toBe("applied");
    expect(activator.requests.map((r) => r.path)).toEqual([sys("a"), sys("b")]);
    expect(await hostRecord()).toMatchObject({ seq: 2, state: "success", current: sys("b") });
    expect(await markers(2)).toEqual([progressKey(CHANNEL, 2, HOST, "success")]);
    expect(agent.state).toMatchObject({ lastSeq: 2, lastResult: "success" });
    expect(await agent.pollOnce()).toBe("unchanged");
    // Release 2 moved it to b: its record names release 2 as what put b there. Release 3 names
    // b again (another host changed): the host already runs it, and release 2 keeps the word.
    expect((await hostRecord())?.origin).toEqual({ kind: "release", channel: CHANNEL, seq: 2 });
    activator.system = { current: sys("b"), profile: sys("b"), generation: 2 };
    await publish({ [HOST]: sys("b"), web2: sys("a") });
    expect(await agent.pollOnce()).toBe("applied");
    expect(await hostRecord()).toMatchObject({
      seq: 3,
      state: "success",
      origin: { kind: "release", channel: CHANNEL, seq: 2 },
    });
  });

  it("says of a refresh that it only carried its entry, and of a release that named it that it did not", async () => {
    await publish({ [HOST]: sys("a") });
    const agent = makeAgent();
    expect(await agent.pollOnce()).toBe("applied");
    expect(await hostRecord()).not.toHaveProperty("carried");
    // `release refresh`: the same entries signed again, which ask nothing new; told by the
    // release's kind, with no read of the release before it.
    await publishEntries({ [HOST]: { path: sys("a") } }, releaseKey, { kind: "refresh" });
    const mark = calls.length;
    expect(await agent.pollOnce()).toBe("applied");
    expect(since(mark).map((c) => `${c.op} ${c.key}`)).not.toContain(
      `get releases/${CHANNEL}/1.json`,
    );
    expect(await hostRecord()).toMatchObject({ seq: 2, carried: true });
    expect(await readRecord(store, progressKey(CHANNEL, 2, HOST, "success"))).toMatchObject({
      carried: true,
    });
    // A deploy's release naming it, even with the same system (an operator's word on it).
    await publish({ [HOST]: sys("a") });
    expect(await agent.pollOnce()).toBe("applied");
    expect(await hostRecord()).toMatchObject({ seq: 3, desired: sys("a") });
    expect(await hostRecord()).not.toHaveProperty("carried");
  });

  it("reports a dry run on its release's marker alone: it asks nothing, and the host's record keeps its word", async () => {
    await publish({ [HOST]: sys("a") });
    const agent = makeAgent();
    expect(await agent.pollOnce()).toBe("applied");
    const kept = await hostRecord();
    await publishEntries({ [HOST]: { path: sys("b") } }, releaseKey, { action: "dry-activate" });
    const mark = calls.length;
    expect(await agent.pollOnce()).toBe("applied");
    expect(activator.requests.at(-1)).toMatchObject({ path: sys("b"), action: "dry-activate" });
    // The deploy that watches release 2 reads how the dry run went on its marker, which names
    // the system it tried; the host's record still says what it was last asked, and runs.
    const marker = progressKey(CHANNEL, 2, HOST, "success");
    expect(
      since(mark).filter((c) => c.op === "put" && !c.key.startsWith("status/heartbeats/")),
    ).toEqual([{ op: "put", key: marker }]);
    expect(await readRecord(store, marker)).toMatchObject({
      seq: 2,
      state: "success",
      desired: sys("b"),
      current: sys("a"),
      action: "dry-activate",
    });
    expect(await hostRecord()).toEqual(kept);
    expect(agent.state).toMatchObject({ lastSeq: 2, lastResult: "success", reported: kept });
    // The next record is folded from the host's own (here by an agent started afresh).
    await publish({ [HOST]: sys("c") });
    expect(await makeAgent().pollOnce()).toBe("applied");
    expect(await hostRecord()).toMatchObject({ seq: 3, desired: sys("c"), previous: sys("a") });
    expect(await hostRecord()).not.toHaveProperty("action");
  });

  it("reports applying once an apply has run reportApplyingAfter, and its outcome after that", async () => {
    await publish();
    const applyingMarker = progressKey(CHANNEL, 1, HOST, "applying");
    let written: () => void = () => {};
    // The apply goes on until the agent has reported it as applying: no race on the clock.
    activator.hold = new Promise((resolve) => {
      written = resolve;
    });
    const observed = counting(store, (call) => {
      if (call.op === "put" && call.key === hostStatusKey(HOST)) written();
      return undefined;
    });
    const agent = makeAgent({ store: observed.store, reportApplyingAfter: 0.05 });
    expect(await agent.pollOnce()).toBe("applied");
    expect(observed.calls.map((c) => `${c.op} ${c.key}`).slice(2, 6)).toEqual([
      `put ${hostStatusKey(HOST)}`,
      `put ${applyingMarker}`,
      `put ${hostStatusKey(HOST)}`,
      `put ${progressKey(CHANNEL, 1, HOST, "success")}`,
    ]);
    expect(await markers(1)).toEqual([applyingMarker, progressKey(CHANNEL, 1, HOST, "success")]);
    expect(await readRecord(store, applyingMarker)).toMatchObject({
      state: "applying",
      desired: sys("a"),
      current: null,
    });
    // The outcome is the host's last word.
    expect(await hostRecord()).toMatchObject({ seq: 1, state: "success", current: sys("a") });
  });

  it("holds a closure the store could not give against the store, not the system: rejected, no failed marker", async () => {
    await publish({ [HOST]: sys("a") });
    const message = `cannot realise ${sys("a")} from http://127.0.0.1:1: not there, not signed by a trusted key, or its copy there is corrupt (the log above says which)`;
    activator.script.push({ status: "failed", phase: "realise", message, rolledBack: false });
    const agent = makeAgent();
    expect(await agent.pollOnce()).toBe("rejected");
    expect(await hostRecord()).toMatchObject({
      seq: 1,
      state: "rejected",
      phase: "realise",
      desired: sys("a"),
      error: `release not applied, the store's fault: ${message}`,
    });
    // A rejection says nothing of the system: the next release may name it again unflagged.
    expect(await markers(1)).toEqual([progressKey(CHANNEL, 1, HOST, "rejected")]);
    expect(agent.state).toMatchObject({ applying: null, refused: { seq: 1 } });
    await publish({ [HOST]: sys("a") });
    expect(await agent.pollOnce()).toBe("applied");
    expect(await markers(2)).toEqual([progressKey(CHANNEL, 2, HOST, "success")]);
  });

  it("a realise the host stopped (its activation timeout) is a failure of the release, not the store's fault", async () => {
    await publish({ [HOST]: sys("a") });
    const message = `realising ${sys("a")} ran past the activation timeout of 600s; stopped it`;
    activator.script.push({
      status: "failed",
      phase: "realise",
      message,
      rolledBack: false,
      timedOutOnHost: true,
    });
    expect(await makeAgent().pollOnce()).toBe("failed");
    expect(await hostRecord()).toMatchObject({
      seq: 1,
      state: "failed",
      phase: "realise",
      error: message,
    });
    expect(await markers(1)).toEqual([progressKey(CHANNEL, 1, HOST, "failed")]);
  });

  it("a realise the stopping signal interrupted is applied again at start, not held against the store", async () => {
    await publish({ [HOST]: sys("a") });
    activator.script.push({
      status: "failed",
      phase: "realise",
      message: "interrupted by SIGTERM",
      rolledBack: false,
      interruptedOnHost: true,
    });
    const stopping = new AbortController();
    stopping.abort();
    const agent = makeAgent();
    expect(await agent.pollOnce(stopping.signal)).toBe("interrupted");
    expect(await loadState(stateDir)).toMatchObject({ applying: { seq: 1, path: sys("a") } });
    expect(agent.state.refused ?? null).toBeNull();
  });

  it("reports a failed activation with its reason, does not retry it, but applies a newer release", async () => {
    await publish({ [HOST]: sys("a") });
    activator.script.push({
      status: "failed",
      phase: "health",
      message: "http://127.0.0.1:8080/health?host=web1 answered 503",
      rolledBack: true,
    });
    const agent = makeAgent();
    expect(await agent.pollOnce()).toBe("failed");
    expect(await hostRecord()).toMatchObject({
      seq: 1,
      state: "failed",
      phase: "health",
      desired: sys("a"),
      current: null,
      error: "http://127.0.0.1:8080/health?host=web1 answered 503",
      rolledBack: true,
    });
    expect(await markers(1)).toEqual([progressKey(CHANNEL, 1, HOST, "failed")]);
    expect(agent.state).toMatchObject({ lastSeq: 1, lastResult: "failed", applying: null });
    expect(ofType("failed")).toEqual([
      {
        type: "failed",
        seq: 1,
        message: "http://127.0.0.1:8080/health?host=web1 answered 503",
        rolledBack: true,
      },
    ]);

    // Later polls leave it alone (a conditional GET each), even when the channel object is
    // rewritten with the same bytes.
    const mark = calls.length;
    expect(await agent.pollOnce()).toBe("unchanged");
    expect(since(mark)).toEqual([
      { op: "get", key: channelKey(CHANNEL), ifNoneMatch: agent.state.etag },
    ]);
    await writeChannel(await channelBytes());
    expect(await agent.pollOnce()).toBe("unchanged");
    expect(await agent.pollOnce()).toBe("unchanged");
    expect(activator.requests).toHaveLength(1);
    expect(await hostRecord()).toMatchObject({ seq: 1, state: "failed" });

    await publish({ [HOST]: sys("b") });
    expect(await agent.pollOnce()).toBe("applied");
    expect(activator.requests.map((r) => r.path)).toEqual([sys("a"), sys("b")]);
    expect(await hostRecord()).toMatchObject({ seq: 2, state: "success", current: sys("b") });
  });

  it("holds an activation the stopping signal interrupted on the host as interrupted, and applies it again at start", async () => {
    await publish({ [HOST]: sys("a") });
    const interrupted: Applied = {
      status: "failed",
      phase: "switch",
      message: "interrupted by SIGTERM",
      rolledBack: true,
      interruptedOnHost: true,
    };
    // The same answer while the agent is not stopping: the activation was stopped by someone
    // else, on purpose, and the release failed here.
    activator.script.push(interrupted);
    expect(await makeAgent().pollOnce(new AbortController().signal)).toBe("failed");
    expect(await hostRecord()).toMatchObject({ seq: 1, state: "failed" });

    await publish({ [HOST]: sys("b") });
    activator.script.push(interrupted);
    const stopping = new AbortController();
    stopping.abort();
    const agent = makeAgent();
    expect(await agent.pollOnce(stopping.signal)).toBe("interrupted");
    expect(ofType("interrupted")).toEqual([
      { type: "interrupted", seq: 2, message: "interrupted by SIGTERM" },
    ]);
    expect(ofType("failed")).toHaveLength(1); // release 1's
    // Not reported failed: the record says it was being applied, and the state keeps it so.
    expect(await hostRecord()).not.toMatchObject({ seq: 2, state: "failed" });
    expect(await loadState(stateDir)).toMatchObject({ applying: { seq: 2, path: sys("b") } });

    // The agent started again applies release 2 in full.
    const again = makeAgent();
    await again.start();
    expect(ofType("recovering")).toEqual([{ type: "recovering", seq: 2, path: sys("b") }]);
    expect(await again.pollOnce()).toBe("applied");
    expect(activator.requests.map((r) => r.path)).toEqual([sys("a"), sys("b"), sys("b")]);
    expect(await hostRecord()).toMatchObject({ seq: 2, state: "success" });
  });

  it("records a release without an entry for the host and activates nothing", async () => {
    await publish({ web2: sys("a") });
    const agent = makeAgent();
    expect(await agent.pollOnce()).toBe("no-entry");
    expect(activator.requests).toEqual([]);
    expect(agent.state).toMatchObject({ lastSeq: 1, lastResult: "no-entry", applying: null });
    expect(await loadState(stateDir)).toMatchObject({ lastSeq: 1, lastResult: "no-entry" });
    expect(ofType("no-entry")).toEqual([{ type: "no-entry", seq: 1 }]);
    // The GET, the GET of the next release file (no state yet), the first heartbeat, and with
    // it the one look at the host's record this process makes to see whether the host runs
    // what the record says (it wrote none yet, so it reads it).
    expect(calls.map((c) => c.op)).toEqual(["get", "get", "put", "get"]);
    const mark = calls.length;
    expect(await agent.pollOnce()).toBe("unchanged");
    expect(since(mark)).toEqual([
      { op: "get", key: channelKey(CHANNEL), ifNoneMatch: agent.state.etag },
    ]);
    // A later release that names it is applied.
    await publish({ web2: sys("a"), [HOST]: sys("b") });
    expect(await agent.pollOnce()).toBe("applied");
    expect(activator.requests.map((r) => r.path)).toEqual([sys("b")]);
  });

  it("reports no-release while the channel does not exist, with unconditional GETs", async () => {
    const agent = makeAgent();
    expect(await agent.pollOnce()).toBe("no-release");
    expect(await agent.pollOnce()).toBe("no-release");
    expect(calls).toEqual([
      { op: "get", key: channelKey(CHANNEL) },
      { op: "put", key: heartbeatKey(HOST, "running", 300) },
      { op: "get", key: channelKey(CHANNEL) },
    ]);
  });

  it("reports success without applying when the host already runs its entry", async () => {
    await publish({ [HOST]: sys("a") });
    activator.system = { current: sys("a"), profile: sys("a"), generation: 7 };
    const agent = makeAgent();
    expect(await agent.pollOnce()).toBe("applied");
    expect(activator.requests).toEqual([]);
    expect(ofType("applied")).toEqual([{ type: "applied", seq: 1, generation: 7 }]);
    expect(await hostRecord()).toMatchObject({
      seq: 1,
      state: "success",
      current: sys("a"),
      generation: 7,
    });
    expect(await agent.pollOnce()).toBe("unchanged");
  });

  it("applies when the host's system cannot be read, leaves it out of the report and says why", async () => {
    await publish();
    activator.inspectError = new Error("EACCES: /nix/var/nix/profiles/system");
    const agent = makeAgent();
    expect(await agent.pollOnce()).toBe("applied");
    expect(activator.requests.map((r) => r.path)).toEqual([sys("a")]);
    expect(await hostRecord()).toMatchObject({ state: "success", current: null, generation: null });
    expect(ofType("warning")).toEqual([
      {
        type: "warning",
        message: "cannot read the host's current system: EACCES: /nix/var/nix/profiles/system",
      },
      {
        type: "warning",
        message: "cannot read the host's current system: EACCES: /nix/var/nix/profiles/system",
      },
    ]);
  });

  it("applies when the host runs the entry but its profile points elsewhere (switch)", async () => {
    await publish({ [HOST]: sys("a") });
    // Running sys(a) (e.g. after `test`), but booting into sys(b): switch must set the profile.
    activator.system = { current: sys("a"), profile: sys("b"), generation: 7 };
    const agent = makeAgent();
    expect(await agent.pollOnce()).toBe("applied");
    expect(activator.requests.map((r) => r.path)).toEqual([sys("a")]);
  });
});

describe("Agent.pollOnce: the keys it trusts, as its config changes", () => {
  const newKey = generateSecretKey("release-2");
  const NEW_CACHE_KEY = "cache-2:qPHRW3j6GuuUpH2xW+SE8d5lQ4Hd4l+GXDrq8aFcG3M=";
  const bothKeys = () => ({
    releaseKeys: [publicKeyOf(releaseKey), publicKeyOf(newKey)],
    cacheKeys: [NEW_CACHE_KEY],
  });

  it("stops following a release key dropped from its config at the next poll, without a restart", async () => {
    let trust: AgentOptions["trustNow"] = async () => undefined;
    const agent = makeAgent({ trustNow: () => (trust ?? (async () => undefined))() });
    await publish({ [HOST]: sys("a") });
    expect(await agent.pollOnce()).toBe("applied");
    // The rotation: the config now names the new keys only (a NixOS switch rewrote it).
    trust = async () => ({ releaseKeys: [publicKeyOf(newKey)], cacheKeys: [NEW_CACHE_KEY] });
    // The channel is read afresh: its current release, the old key's, is no longer followed.
    expect(await agent.pollOnce()).toBe("rejected");
    expect(ofType("trust-changed")).toEqual([
      { type: "trust-changed", releaseKeys: ["release-2"], cacheKeys: ["cache-2"] },
    ]);
    trust = async () => undefined;
    // Whoever holds the dropped (leaked) key publishes: refused.
    await publish({ [HOST]: sys("b") }, releaseKey);
    expect(await agent.pollOnce()).toBe("rejected");
    expect(agent.state.refused?.reason).toMatch(
      /signed by key 'release-1', which is not trusted \(trusted: release-2\); this host follows it once its agent's releaseKeys name that key/,
    );
    expect(activator.requests).toHaveLength(1);
    // A release of the new key is taken, and its host's Nix is given the new cache key only.
    await publish({ [HOST]: sys("c") }, newKey);
    expect(await agent.pollOnce()).toBe("applied");
    expect(activator.requests.at(-1)?.trustedKeys).toEqual([NEW_CACHE_KEY]);
  });

  it("takes a release it refused under its old keys once its config trusts the key, with no new release", async () => {
    let trust: AgentOptions["trustNow"] = async () => undefined;
    const agent = makeAgent({ trustNow: () => (trust ?? (async () => undefined))() });
    await publish({ [HOST]: sys("a") }, newKey);
    expect(await agent.pollOnce()).toBe("rejected");
    // Unchanged channel, same keys: one conditional GET, still refused.
    expect(await agent.pollOnce()).toBe("unchanged");
    trust = async () => bothKeys();
    // The channel is read afresh, and the release the new key signed applied.
    expect(await agent.pollOnce()).toBe("applied");
    expect((await hostRecord()).state).toBe("success");
  });

  it("started with other keys, reads the channel afresh and judges a refusal again; with the same, it does not", async () => {
    await publish({ [HOST]: sys("a") }, newKey);
    expect(await makeAgent().pollOnce()).toBe("rejected");
    // Restarted with the same keys: the channel is unchanged (a conditional GET).
    const same = makeAgent();
    const mark = calls.length;
    expect(await same.pollOnce()).toBe("unchanged");
    expect(since(mark).find((c) => c.key === channelKey(CHANNEL))?.ifNoneMatch).toBeDefined();
    // Restarted with a config that trusts the key (the state file keeps the channel's etag).
    const restarted = makeAgent(bothKeys());
    expect(await restarted.pollOnce()).toBe("applied");
    expect(activator.requests).toHaveLength(1);
  });
});

describe("Agent.pollOnce: deltas (an entry's deltaTool)", () => {
  const TOOL = "/nix/store/zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-zstd-1.5.6" as StorePath;
  const REPORT = {
    paths: 40,
    bytes: 9000,
    narBytes: 4_000_000,
    wholePaths: 3,
    wholeNarBytes: 5000,
    failed: 0,
  };

  it("hands the entry's delta tool to the activation, and its record keeps the report", async () => {
    await publishEntries({ [HOST]: { path: sys("a"), deltaTool: TOOL } });
    activator.script.push({ status: "activated", generation: 1, delta: REPORT });
    const agent = makeAgent();
    expect(await agent.pollOnce()).toBe("applied");
    expect(activator.requests[0]?.deltaTool).toBe(TOOL);
    expect(await hostRecord()).toMatchObject({
      state: "success",
      desired: sys("a"),
      delta: REPORT,
    });
    // An entry without it: every path whole, and the host's next system carries no report.
    await publishEntries({ [HOST]: { path: sys("b") } });
    expect(await agent.pollOnce()).toBe("applied");
    expect(activator.requests[1]?.deltaTool).toBeUndefined();
    expect((await hostRecord()).delta).toBeUndefined();
  });
});

/** The reboots' entry: its reboot timeout and rollback. */
const REBOOT = { timeout: 600, rollback: true };

/** The boot of sys("a") begun from sys("b") in boot-1: the host is to reboot. */
async function beginReboot(): Promise<void> {
  await publishEntries({ [HOST]: { path: sys("a"), reboot: REBOOT } });
  activator.system = { current: sys("b"), profile: sys("b"), generation: 1, bootId: "boot-1" };
  activator.script.push({
    status: "rebooting",
    bootId: "boot-1",
    generation: 2,
    previous: sys("b"),
    into: "generation 2",
  });
  expect(await makeAgent().pollOnce()).toBe("rebooting");
}

describe("Agent.pollOnce: reboots (an entry's reboot)", () => {
  const begin = beginReboot;

  it("begins the reboot, and the agent started after the boot judges it and reports", async () => {
    await begin();
    expect(activator.requests[0]?.reboot).toEqual(REBOOT);
    expect((await loadState(stateDir)).applying?.reboot).toMatchObject({
      bootId: "boot-1",
      generation: 2,
      previous: sys("b"),
      timeout: 600,
    });
    expect(await readStatus(store, HOST)).toMatchObject({ state: "applying", phase: "reboot" });
    // Still in the same boot (the agent restarted before the host went down): it waits.
    expect(await makeAgent().pollOnce()).toBe("rebooting");
    expect(activator.requests).toHaveLength(1);
    // The agent of the new boot judges it, with the entry's checks, and reports.
    activator.system = { ...activator.system, bootId: "boot-2" };
    expect(await makeAgent().pollOnce()).toBe("applied");
    expect(activator.requests[1]).toMatchObject({
      path: sys("a"),
      reboot: REBOOT,
      httpChecks: [{ url: "http://127.0.0.1:8080/health?host=web1" }],
    });
    expect(await readStatus(store, HOST)).toMatchObject({
      state: "success",
      seq: 1,
      desired: sys("a"),
      previous: sys("b"),
    });
    expect(await loadState(stateDir)).toMatchObject({
      applying: null,
      lastSeq: 1,
      lastResult: "success",
    });
    // The next poll reads the channel afresh and finds nothing new to do.
    expect(await makeAgent().pollOnce()).toBe("unchanged");
    expect(activator.requests).toHaveLength(2);
  });

  /**
   * The boot begun, judged failed in boot-2, and undone; with `rebootsFrom`, the host reboots
   * back from that boot (the agent cannot outlive it).
   */
  const undoneBoot = async (rebootsFrom?: string) => {
    await begin();
    activator.system = { ...activator.system, bootId: "boot-2" };
    activator.judged.push({
      status: "failed",
      phase: "health",
      message: "health check failed; back on the previous generation, rebooting into it",
      rolledBack: true,
      ...(rebootsFrom === undefined ? {} : { rebootsFrom }),
    });
    expect(await makeAgent().pollOnce()).toBe("failed");
  };

  it("reports the judgement's failure, and does not apply that release again", async () => {
    await undoneBoot();
    expect(await readStatus(store, HOST)).toMatchObject({
      state: "failed",
      phase: "health",
      rolledBack: true,
    });
    expect(await makeAgent().pollOnce()).toBe("unchanged");
  });

  it("after a boot undone by a reboot back, applies nothing until the host runs another boot", async () => {
    await undoneBoot("boot-2");
    expect((await loadState(stateDir)).rebootingBack).toEqual({
      bootId: "boot-2",
      since: CLOCK.toISOString(),
      timeout: 600,
    });
    // The deployer's next release comes before the reboot: it waits, as does a restarted agent.
    await publishEntries({ [HOST]: { path: sys("c") } });
    const agent = makeAgent();
    expect(await agent.pollOnce()).toBe("rebooting");
    expect(await makeAgent().pollOnce()).toBe("rebooting");
    expect(activator.requests).toHaveLength(2);
    // In the boot after it, the release is applied.
    activator.system = { ...activator.system, bootId: "boot-3" };
    expect(await makeAgent().pollOnce()).toBe("applied");
    expect(activator.requests.map((r) => r.path)).toEqual([sys("a"), sys("a"), sys("c")]);
    expect((await loadState(stateDir)).rebootingBack).toBeNull();
  });

  it("after a boot undone, reads the channel again once the reboot back timed out, and says so", async () => {
    await undoneBoot("boot-2");
    await publishEntries({ [HOST]: { path: sys("c") } });
    const later = makeAgent({ now: () => new Date(CLOCK.getTime() + 601_000) });
    expect(await later.pollOnce()).toBe("applied");
    expect(ofType("warning").map((e) => e.message)).toContain(
      "the host did not reboot into the previous generation within 600s of its boot's undoing; reading the channel again",
    );
  });

  it("in a new boot, writes its record again with what a reboot would load (for --reboot auto)", async () => {
    await publish();
    activator.system = { current: null, profile: null, generation: null, bootId: "boot-1" };
    expect(await makeAgent().pollOnce()).toBe("applied");
    const reboot = {
      due: false,
      changed: [],
      since: 1,
      booted: {
        kernel: `${sys("a")}/kernel`,
        initrd: `${sys("a")}/initrd`,
        "kernel-modules": null,
      },
    };
    // The host rebooted (by hand): the next agent's first poll updates the record, once.
    activator.system = { ...activator.system, bootId: "boot-2", reboot };
    const mark = calls.length;
    expect(await makeAgent().pollOnce()).toBe("unchanged");
    expect(await readStatus(store, HOST)).toMatchObject({
      state: "success",
      current: sys("a"),
      reboot,
    });
    const writes = since(mark).filter((c) => c.op === "put" && c.key.startsWith("status/hosts/"));
    expect(writes).toHaveLength(1);
    const again = calls.length;
    expect(await makeAgent().pollOnce()).toBe("unchanged");
    expect(since(again).filter((c) => c.op === "put" && c.key.startsWith("status/hosts/"))).toEqual(
      [],
    );
  });

  it("folds what it saw of the host from its own last record, never a forged one in the store, and writes no release's marker", async () => {
    const keyFile = join(dir, "ssh_host_ed25519_key");
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "", "-f", keyFile]);
    await publish();
    activator.system = { current: null, profile: null, generation: null, bootId: "boot-1" };
    expect(await makeAgent({ signingKeyFile: keyFile }).pollOnce()).toBe("applied");
    const genuine = await hostRecord();
    const forge = (current: StorePath) =>
      store.put(
        hostStatusKey(HOST),
        Buffer.from(
          `${JSON.stringify({ ...genuine, state: "failed", phase: "health", current, error: "forged failure", rolledBack: true })}\n`,
        ),
      );
    const mark = calls.length;
    // Whoever can write the store, without the host's key, plants a failure of release 1;
    // the agent restarts (same boot): its first look at the host must not sign that.
    await forge(sys("z"));
    expect(await makeAgent({ signingKeyFile: keyFile }).pollOnce()).toBe("unchanged");
    // And again before a reboot (the host then runs what its record says it ran before).
    await forge(sys("z"));
    activator.system = { ...activator.system, bootId: "boot-2" };
    expect(await makeAgent({ signingKeyFile: keyFile }).pollOnce()).toBe("unchanged");
    const record = await hostRecord();
    expect(record).toMatchObject({ state: "success", error: null, current: sys("a") });
    // What it wrote is its own word, signed; no marker of release 1 was written again.
    const puts = since(mark)
      .filter((c) => c.op === "put")
      .map((c) => c.key);
    expect(puts.filter((k) => k.startsWith(progressPrefix(CHANNEL, 1)))).toEqual([]);
    expect(await markers(1)).toEqual([`${progressPrefix(CHANNEL, 1)}web1/success`]);
    // A record gone from the store is written again at the agent's next look.
    await store.delete(hostStatusKey(HOST));
    expect(await makeAgent({ signingKeyFile: keyFile }).pollOnce()).toBe("unchanged");
    expect(await hostRecord()).toMatchObject({ state: "success", current: sys("a") });
  });

  it("in a new boot, is not stopped by a host record that does not read: it applies the next release", async () => {
    await publish();
    activator.system = { current: null, profile: null, generation: null, bootId: "boot-1" };
    expect(await makeAgent().pollOnce()).toBe("applied");
    // Whoever can write the store leaves garbage for the host's record; the host reboots.
    await store.put(hostStatusKey(HOST), Buffer.from("{not json"));
    await publish({ [HOST]: sys("b") });
    activator.system = { ...activator.system, bootId: "boot-2" };
    expect(await makeAgent().pollOnce()).toBe("applied");
    expect(await hostRecord()).toMatchObject({ seq: 2, state: "success", current: sys("b") });
  });

  it("reports a host that did not reboot within the reboot timeout as failed", async () => {
    await begin();
    const later = makeAgent({ now: () => new Date(CLOCK.getTime() + 601_000) });
    expect(await later.pollOnce()).toBe("failed");
    expect(await readStatus(store, HOST)).toMatchObject({
      state: "failed",
      phase: "reboot",
      error: expect.stringContaining("did not reboot within 600s"),
    });
    expect(activator.requests).toHaveLength(1);
  });
});

describe("Agent.pollOnce: a boot judged across the agent's stops", () => {
  /** beginReboot, and the token the state holds. */
  const begin = async () => {
    await beginReboot();
    const token = (await loadState(stateDir)).applying?.reboot?.token;
    expect(token).toEqual(expect.any(String));
    return token as string;
  };
  /** What activate.sh's after-boot answers a token with no boot pending under it. */
  const unknownToken = (token: string): Applied => ({
    status: "failed",
    phase: "health",
    message: `no reboot is pending for token ${token}`,
    rolledBack: false,
  });

  /**
   * The boot begun, then judged in boot-2 before the agent stopped (no boot pending now), the
   * host then running sys("a") and booting `profile` next: the next agent's poll.
   */
  const afterJudgedBoot = async (profile: StorePath, generation: number) => {
    const token = await begin();
    activator.system = {
      current: sys("a"),
      profile,
      generation,
      bootId: "boot-2",
      pendingBoot: null,
      failed: null,
    };
    activator.judged.push(unknownToken(token));
    const polled = await makeAgent().pollOnce();
    // Judged already: not asked again.
    expect(activator.requests).toHaveLength(1);
    return polled;
  };

  it("stopped after it confirmed the boot and before it saved: reports the boot kept, judging nothing again", async () => {
    expect(await afterJudgedBoot(sys("a"), 2)).toBe("applied");
    expect(await readStatus(store, HOST)).toMatchObject({
      state: "success",
      seq: 1,
      current: sys("a"),
      previous: sys("b"),
    });
    expect(await loadState(stateDir)).toMatchObject({ applying: null, lastResult: "success" });
  });

  it("stopped after it undid the boot: reports it failed and rolled back, and says so", async () => {
    expect(await afterJudgedBoot(sys("b"), 1)).toBe("failed");
    expect(await readStatus(store, HOST)).toMatchObject({
      state: "failed",
      rolledBack: true,
      error: expect.stringContaining("judged before the agent stopped, and not kept"),
    });
  });

  it("judges the boot again while it is still pending under its token", async () => {
    const token = await begin();
    activator.system = { ...activator.system, bootId: "boot-2", pendingBoot: token, failed: null };
    expect(await makeAgent().pollOnce()).toBe("applied");
    expect(activator.requests).toHaveLength(2);
  });

  it("a boot whose judgement finds the lock held waits for it, then judges it", async () => {
    await begin();
    activator.system = { ...activator.system, bootId: "boot-2" };
    const held = "another activation (deploy web-c) holds the lock since 12:00:00";
    activator.judged.push({ status: "busy", message: held }, { status: "busy", message: held });
    const agent = makeAgent();
    expect(await agent.pollOnce()).toBe("busy");
    expect(await agent.pollOnce()).toBe("busy");
    expect(ofType("busy").map((e) => e.message)).toEqual([held]);
    expect((await loadState(stateDir)).applying?.reboot).toMatchObject({ bootId: "boot-1" });
    expect(await agent.pollOnce()).toBe("applied");
    expect(await readStatus(store, HOST)).toMatchObject({ state: "success", seq: 1 });
  });

  it("a host that cannot be read past the reboot timeout is not said to have not rebooted", async () => {
    await begin();
    activator.inspectError = new Error("activate.sh status gave no status: exit 1");
    const later = makeAgent({ now: () => new Date(CLOCK.getTime() + 601_000) });
    expect(await later.pollOnce()).toBe("failed");
    const error = String((await readStatus(store, HOST))?.error);
    expect(error).toContain("could not be read within 600s of the boot activation");
    expect(error).not.toContain("did not reboot");
  });
});

describe("Agent.pollOnce: frozen and replayed channels", () => {
  it("refuses an expired release, says why in its record, and changes nothing", async () => {
    await publishRelease(store, {
      channel: CHANNEL,
      hosts: { [HOST]: { path: sys("a") } },
      kind: "deploy",
      action: "switch",
      health: HEALTH,
      confirmTimeout: 45,
      key: releaseKey,
      now: new Date(CLOCK.getTime() - 8 * 86400_000),
      maxAge: 7 * 86400,
    });
    expect(await makeAgent().pollOnce()).toBe("rejected");
    expect(activator.requests).toEqual([]);
    expect(await hostRecord()).toMatchObject({
      state: "rejected",
      phase: "verify",
      error: expect.stringMatching(
        /^release refused: release 1 of channel prod expired at 2026-11-20T10:00:00\.000Z \(it is 2026-11-21T10:00:00\.000Z\).*nixship release refresh/,
      ),
    });
  });

  it("with no state, refuses a channel replayed to an older signed release than the newest listed", async () => {
    const first = await publish({ [HOST]: sys("a") });
    await publish({ [HOST]: sys("b") });
    await publish({ [HOST]: sys("d") });
    await writeChannel(first.bytes);
    expect(await makeAgent().pollOnce()).toBe("rejected");
    expect(activator.requests).toEqual([]);
    expect((await hostRecord()).error).toContain(
      'the channel names release 1, but release 2 of channel "prod" exists and is signed',
    );
  });

  it("with state, refuses a channel replayed to a release it skipped while a newer is on file", async () => {
    await publish({ [HOST]: sys("a") });
    const agent = makeAgent();
    expect(await agent.pollOnce()).toBe("applied");
    // Releases 2 (found broken) and 3 (its fix) while the host slept; someone who can write
    // the bucket copies 2 over the channel.
    const broken = await publish({ [HOST]: sys("b") });
    await publish({ [HOST]: sys("d") });
    await writeChannel(broken.bytes);
    expect(await agent.pollOnce()).toBe("rejected");
    expect(activator.requests.map((r) => r.path)).toEqual([sys("a")]);
    expect(agent.state.lastSeq).toBe(1);
    expect((await hostRecord()).error).toContain(
      'the channel names release 2, but release 3 of channel "prod" exists and is signed',
    );
  });

  it("refuses a signed release with a byte-order mark in front (two stored forms of one release)", async () => {
    const release = await publish({ [HOST]: sys("a") });
    await writeChannel(new Uint8Array([0xef, 0xbb, 0xbf, ...release.bytes]));
    const agent = makeAgent();
    // Read once more (a torn read looks the same), then refused.
    expect(await agent.pollOnce()).toBe("unchanged");
    expect(await agent.pollOnce()).toBe("rejected");
    expect(activator.requests).toEqual([]);
    expect((await hostRecord()).error).toContain("starts with a byte-order mark");
  });

  it("reads a channel body that does not parse once more before refusing it: a torn read heals", async () => {
    const release = await publish({ [HOST]: sys("a") });
    let torn = true;
    const tearing: ObjectStore = {
      ...agentStore,
      get: (async (key: string, options?: GetOptions) => {
        const got = await agentStore.get(key, options);
        if (!torn || key !== channelKey(CHANNEL) || got?.status !== "found") return got;
        // What a store that writes in place gives a reader during the write: the start of it.
        torn = false;
        got.body.destroy();
        return { ...got, body: Readable.from([release.bytes.subarray(0, 40)]) };
      }) as ObjectStore["get"],
    };
    const agent = makeAgent({ store: tearing });
    expect(await agent.pollOnce()).toBe("unchanged");
    expect(await readStatus(store, HOST)).toBeUndefined();
    expect(await agent.pollOnce()).toBe("applied");
    expect(activator.requests.map((r) => r.path)).toEqual([sys("a")]);
  });

  it("with no state, is not stopped by a release file no release key signed", async () => {
    await publish({ [HOST]: sys("a") });
    const planted = await publish({ [HOST]: sys("b") }, intruderKey);
    await store.put(`releases/${CHANNEL}/2.json`, planted.bytes);
    const first = await readAll(store, `releases/${CHANNEL}/1.json`);
    if (first === undefined) throw new Error("no release 1");
    await writeChannel(first);
    expect(await makeAgent().pollOnce()).toBe("applied");
    expect(activator.requests.map((r) => r.path)).toEqual([sys("a")]);
  });
});

describe("Agent.pollOnce: sharded releases", () => {
  /** 600 hosts (3 shards of the 256-host limit), HOST among them. */
  const fleet = (path: StorePath) =>
    Object.fromEntries(
      [HOST, ...Array.from({ length: 599 }, (_, i) => `host-${i}`)].map((h) => [h, path]),
    );
  const ownShard = (signed: SignedRelease) => {
    const index = shardIndex(HOST, signed.shards?.length ?? 0);
    const shard = signed.shards?.[index];
    if (shard === undefined) throw new Error("not sharded");
    return shardKey(CHANNEL, signed.release.seq, index, shard.digest);
  };
  const shardReads = () => calls.filter((c) => c.key.startsWith("release-shards/"));

  it("applies its entry once the head and its own shard are read and checked, reading no other shard, then polls with one conditional GET", async () => {
    const signed = await publish(fleet(sys("a")));
    expect(signed.release.version).toBe(2);
    expect(signed.shards).toHaveLength(3);
    const agent = makeAgent();
    expect(await agent.pollOnce()).toBe("applied");
    expect(activator.requests.map((r) => r.path)).toEqual([sys("a")]);
    expect(calls.map((c) => `${c.op} ${c.key}`)).toEqual([
      `get ${channelKey(CHANNEL)}`,
      `get releases/${CHANNEL}/2.json`,
      `get ${ownShard(signed)}`,
      `put ${hostStatusKey(HOST)}`,
      `put ${progressKey(CHANNEL, 1, HOST, "success")}`,
      `put ${heartbeatKey(HOST, "running", 300)}`,
    ]);
    // The state keeps the head's digest, as for a release of one file.
    expect(agent.state).toMatchObject({
      lastSeq: 1,
      lastDigest: signed.digest,
      lastResult: "success",
    });
    const mark = calls.length;
    expect(await agent.pollOnce()).toBe("unchanged");
    expect(since(mark).map((c) => c.op)).toEqual(["get"]);
  });

  it("takes a sharded release that does not name the host as no-entry, reading its own shard only", async () => {
    const hosts = fleet(sys("a"));
    delete hosts[HOST];
    hosts["host-600"] = sys("a");
    const signed = await publish(hosts);
    expect(await makeAgent().pollOnce()).toBe("no-entry");
    expect(shardReads().map((c) => c.key)).toEqual([ownShard(signed)]);
    expect(activator.requests).toEqual([]);
  });

  it("refuses its own shard changed in the store, applying nothing", async () => {
    const signed = await publish(fleet(sys("a")));
    const key = ownShard(signed);
    const text = (await readAll(store, key))?.toString("utf8") ?? "";
    expect(text).toContain(sys("a"));
    await store.put(key, Buffer.from(text.replace(sys("a"), sys("c"))));
    const agent = makeAgent();
    expect(await agent.pollOnce()).toBe("rejected");
    expect(activator.requests).toEqual([]);
    expect(shardReads().map((c) => c.key)).toEqual([key]);
    const record = await hostRecord();
    expect(record).toMatchObject({ state: "rejected", phase: "verify", seq: 1, desired: null });
    expect(record.error).toContain(`release refused: ${key}: shard`);
    expect(record.error).toContain("does not match the digest the signed release names");
    // Refused once per channel version: the next poll asks with its etag and changes nothing.
    const mark = calls.length;
    expect(await agent.pollOnce()).toBe("unchanged");
    expect(since(mark).map((c) => c.op)).toEqual(["get"]);
    expect(activator.requests).toEqual([]);
  });

  it("refuses a release whose own shard is missing, naming its key", async () => {
    const signed = await publish(fleet(sys("a")));
    await store.delete(ownShard(signed));
    expect(await makeAgent().pollOnce()).toBe("rejected");
    expect(activator.requests).toEqual([]);
    const record = await hostRecord();
    expect(record.error).toContain(`${ownShard(signed)}: shard`);
    expect(record.error).toContain("is missing");
  });

  it("refuses a signed release whose own shard names a host of another shard (a host named in two shards), applying nothing", async () => {
    const count = 3;
    const mine = shardIndex(HOST, count);
    const hosts = Object.fromEntries(
      Object.entries(fleet(sys("a"))).map(([h, path]) => [h, { path }]),
    );
    // A host whose own shard is another: the release names it there and in this host's shard.
    const doubled = Object.keys(hosts).find((h) => shardIndex(h, count) !== mine) as string;
    const release = firstDeployRelease(hosts);
    const { own, other } = await doubledRelease(release, releaseKey, doubled, {
      other: mine,
      store,
    });
    expect(other).toBe(mine);
    const agent = makeAgent();
    expect(await agent.pollOnce()).toBe("rejected");
    expect(activator.requests).toEqual([]);
    expect(shardReads()).toHaveLength(1);
    const record = await hostRecord();
    expect(record).toMatchObject({ state: "rejected", phase: "verify", seq: 1, desired: null });
    expect(record.error).toContain(
      `names host '${doubled}' in shard ${mine}, but its shard is ${own} (the first 4 bytes of sha256 of its name, modulo 3): a host is named once, in its own shard`,
    );
    expect(events).toContainEqual(
      expect.objectContaining({ type: "rejected", message: expect.stringContaining(doubled) }),
    );
    expect(agent.state).toMatchObject({ lastSeq: null });
  });

  it("refuses a signed release whose own shard gives a name twice, applying nothing", async () => {
    const count = 3;
    const mine = shardIndex(HOST, count);
    const hosts = Object.fromEntries(
      Object.entries(fleet(sys("a"))).map(([h, path]) => [h, { path }]),
    );
    const release = firstDeployRelease(hosts);
    // Signed as the publisher would, then this host's shard given its entry twice and signed
    // again over the doubled bytes: only a signer could write it.
    const shards = signRelease(release, releaseKey).shards ?? [];
    const text = Buffer.from(shards[mine]?.bytes as Uint8Array).toString();
    const entry = `"${HOST}":${canonicalJson(hosts[HOST])}`;
    expect(text).toContain(entry);
    const twice = new Uint8Array(Buffer.from(text.replace(entry, `${entry},${entry}`)));
    const stored = shards.map((s, i) =>
      i === mine ? { ...s, digest: releaseDigest(twice), bytes: twice } : s,
    );
    const head = formatShardedHead(headOf(release), stored, releaseKey);
    await putShards(store, CHANNEL, 1, stored);
    await store.put(`releases/${CHANNEL}/1.json`, head.bytes);
    await store.put(channelKey(CHANNEL), head.bytes);
    const agent = makeAgent();
    expect(await agent.pollOnce()).toBe("rejected");
    expect(activator.requests).toEqual([]);
    expect(shardReads().map((c) => c.key)).toEqual([
      shardKey(CHANNEL, 1, mine, releaseDigest(twice)),
    ]);
    const record = await hostRecord();
    expect(record).toMatchObject({ state: "rejected", phase: "verify", seq: 1, desired: null });
    expect(record.error).toContain(
      `release 1 of channel ${CHANNEL} names host '${HOST}' twice in shard ${mine}`,
    );
  });

  it("applies its entry from its own sound shard when a signer named this very host, or another, in a second shard it does not read", async () => {
    const count = 3;
    const mine = shardIndex(HOST, count);
    const hosts = Object.fromEntries(
      Object.entries(fleet(sys("a"))).map(([h, path]) => [h, { path }]),
    );
    const release = firstDeployRelease(hosts);
    // Its own shard is sound and holds its entry: only the other shard shows the fault, which
    // the full readers refuse (release show, the dashboard) and the agents of that shard.
    const { head, own, other } = await doubledRelease(release, releaseKey, HOST, { store });
    expect(own).toBe(mine);
    const agent = makeAgent();
    expect(await agent.pollOnce()).toBe("applied");
    expect(activator.requests.map((r) => r.path)).toEqual([sys("a")]);
    const ownKey = shardKey(CHANNEL, 1, mine, head.shards[mine]?.digest as string);
    expect(shardReads().map((c) => c.key)).toEqual([ownKey]);
    expect(calls.map((c) => c.key)).not.toContain(
      shardKey(CHANNEL, 1, other, head.shards[other]?.digest as string),
    );
    expect(await hostRecord()).toMatchObject({ state: "success", seq: 1, desired: sys("a") });

    // A host named twice in the two shards that are not this host's: applied alike.
    const stranger = Object.keys(hosts).find((h) => shardIndex(h, count) !== mine) as string;
    const away = [0, 1, 2].find((i) => i !== mine && i !== shardIndex(stranger, count)) as number;
    const next = {
      ...release,
      seq: 2,
      hosts: { ...hosts, [HOST]: { path: sys("b") } },
    };
    await doubledRelease(next, releaseKey, stranger, { other: away, store });
    expect(await agent.pollOnce()).toBe("applied");
    expect(activator.requests.map((r) => r.path)).toEqual([sys("a"), sys("b")]);
    expect(await hostRecord()).toMatchObject({ state: "success", seq: 2, desired: sys("b") });
  });

  it("refuses a head signed by an untrusted key before reading any shard", async () => {
    await publish(fleet(sys("a")), intruderKey);
    expect(await makeAgent().pollOnce()).toBe("rejected");
    expect(shardReads()).toEqual([]);
    expect(activator.requests).toEqual([]);
    expect((await hostRecord()).error).toMatch(/signed by key 'intruder-1', which is not trusted/);
  });

  it("refuses a head signed by an untrusted key when the host has applied before", async () => {
    await publish(fleet(sys("a")));
    const agent = makeAgent();
    expect(await agent.pollOnce()).toBe("applied");
    await publish(fleet(sys("b")), intruderKey);
    const mark = calls.length;
    expect(await agent.pollOnce()).toBe("rejected");
    expect(since(mark).filter((c) => c.key.startsWith("release-shards/"))).toEqual([]);
    expect(activator.requests.map((r) => r.path)).toEqual([sys("a")]);
  });
});

describe("Agent.pollOnce: refusals", () => {
  /** Bytes of a release 2 for the host, signed by `key` but not published. */
  const release2 = (key: SecretKey, previous: string) =>
    formatRelease(
      {
        version: 1,
        channel: CHANNEL,
        seq: 2,
        created: CLOCK.toISOString(),
        expires: new Date(CLOCK.getTime() + 3600_000).toISOString(),
        previous,
        kind: "deploy",
        action: "switch",
        health: HEALTH,
        confirmTimeout: 45,
        hosts: { [HOST]: { path: sys("b") } },
      },
      key,
    );

  const cases: {
    readonly name: string;
    /** Puts the bad bytes in the channel; the host has applied release 1 (sys a) by then. */
    readonly corrupt: (first: SignedRelease) => Promise<void>;
    readonly error: RegExp;
    /** The release number the refusal is filed under (the number the bytes claim). */
    readonly seq: number | null;
    /** The body does not parse: the agent reads it once more before refusing it. */
    readonly unparsed?: boolean;
  }[] = [
    {
      name: "a tampered manifest (a path changed after signing)",
      corrupt: async () => {
        await publish({ [HOST]: sys("b") });
        const text = (await channelBytes()).toString("utf8");
        expect(text).toContain(sys("b"));
        await writeChannel(text.replace(sys("b"), sys("c")));
      },
      error:
        /release 2 of channel prod: the signature by key 'release-1' does not match its content/,
      seq: 2,
    },
    {
      name: "a manifest signed by an unknown key",
      corrupt: async () => {
        await publish({ [HOST]: sys("b") }, intruderKey);
      },
      error: /signed by key 'intruder-1', which is not trusted \(trusted: release-1\)/,
      seq: 2,
    },
    {
      name: "an unsigned manifest",
      corrupt: async (first) => {
        const value = JSON.parse(
          Buffer.from(release2(releaseKey, first.digest).bytes).toString(),
        ) as Record<string, unknown>;
        delete value.signature;
        await writeChannel(`${canonicalJson(value)}\n`);
      },
      error: /release 2 of channel prod is not signed/,
      seq: 2,
    },
    {
      name: "bytes that are not JSON",
      corrupt: async () => {
        await writeChannel("<html>503 Service Unavailable</html>\n");
      },
      error: /channels\/prod\.json/,
      seq: null,
      unparsed: true,
    },
    {
      name: "a replay of an older signed release",
      corrupt: async (first) => {
        // Release 2 is applied first; then the channel is set back to release 1's bytes.
        await publish({ [HOST]: sys("b") });
        const agent = makeAgent();
        expect(await agent.pollOnce()).toBe("applied");
        await writeChannel(first.bytes);
      },
      error: /release 1 is older than release 2 already applied here \(a replay\?\)/,
      seq: 1,
    },
  ];

  for (const c of cases) {
    it(`refuses ${c.name}, leaves the host alone and says why`, async () => {
      const first = await publish({ [HOST]: sys("a") });
      const agent = makeAgent();
      expect(await agent.pollOnce()).toBe("applied");
      await c.corrupt(first);
      // The replay case applied release 2 through its own agent; read the state afresh.
      const fresh = makeAgent();
      await fresh.start();
      const before = { ...fresh.state };
      const applied = activator.requests.length;
      const system = activator.system;

      // A body that does not parse is read once more first (a torn read looks the same).
      if (c.unparsed === true) expect(await fresh.pollOnce()).toBe("unchanged");
      expect(await fresh.pollOnce()).toBe("rejected");
      expect(activator.requests).toHaveLength(applied);
      expect(activator.system).toBe(system);
      expect(fresh.state).toMatchObject({
        lastSeq: before.lastSeq,
        lastDigest: before.lastDigest,
        lastResult: "success",
        applying: null,
      });
      const [event] = ofType("rejected");
      expect(event?.message).toMatch(c.error);

      const record = await hostRecord();
      expect(record).toMatchObject({
        host: HOST,
        mode: "agent",
        state: "rejected",
        phase: "verify",
        desired: null,
        current: system.current,
        seq: c.seq,
        channel: c.seq === null ? null : CHANNEL,
      });
      expect(record.error).toMatch(/^release refused: /);
      expect(record.error).toMatch(c.error);
      if (c.seq !== null) {
        expect(await markers(c.seq)).toContain(progressKey(CHANNEL, c.seq, HOST, "rejected"));
      }

      // Refused once per channel version: the next poll is a conditional GET and nothing else.
      const mark = calls.length;
      expect(await fresh.pollOnce()).toBe("unchanged");
      expect(since(mark)).toEqual([
        { op: "get", key: channelKey(CHANNEL), ifNoneMatch: fresh.state.etag },
      ]);
      expect(activator.requests).toHaveLength(applied);
    });
  }

  it("refuses a different release under the number already applied", async () => {
    const first = await publish({ [HOST]: sys("a") });
    const agent = makeAgent();
    expect(await agent.pollOnce()).toBe("applied");
    // Validly signed, but a second release 1 (a publisher that reused the number).
    const twin = formatRelease(
      { ...first.release, hosts: { [HOST]: { path: sys("b") } } },
      releaseKey,
    );
    await writeChannel(twin.bytes);
    expect(await agent.pollOnce()).toBe("rejected");
    expect(activator.requests.map((r) => r.path)).toEqual([sys("a")]);
    expect((await hostRecord()).error).toMatch(
      /release 1 differs from the release 1 already applied/,
    );
  });

  it("applies a good newer release after refusing a tampered one", async () => {
    await publish({ [HOST]: sys("a") });
    const agent = makeAgent();
    expect(await agent.pollOnce()).toBe("applied");
    await publish({ [HOST]: sys("b") });
    await writeChannel((await channelBytes()).toString("utf8").replace(sys("b"), sys("c")));
    expect(await agent.pollOnce()).toBe("rejected");
    await publish({ [HOST]: sys("d") });
    expect(await agent.pollOnce()).toBe("applied");
    expect(activator.requests.map((r) => r.path)).toEqual([sys("a"), sys("d")]);
    expect(await hostRecord()).toMatchObject({ seq: 3, state: "success", current: sys("d") });
  });

  it("refuses a release for another channel", async () => {
    const other = formatRelease(
      {
        version: 1,
        channel: "staging",
        seq: 9,
        created: CLOCK.toISOString(),
        expires: new Date(CLOCK.getTime() + 3600_000).toISOString(),
        previous: null,
        kind: "deploy",
        action: "switch",
        health: HEALTH,
        confirmTimeout: 0,
        hosts: { [HOST]: { path: sys("b") } },
      },
      releaseKey,
    );
    await writeChannel(other.bytes);
    const agent = makeAgent();
    expect(await agent.pollOnce()).toBe("rejected");
    expect(activator.requests).toEqual([]);
    expect((await hostRecord()).error).toMatch(/is for channel "staging", not "prod"/);
  });
});

describe("Agent.pollOnce: pausing, busy hosts and recovery", () => {
  it("makes no request while paused but a heartbeat that says so", async () => {
    await publish();
    await setPaused(stateDir, true);
    const agent = makeAgent();
    expect(await agent.pollOnce()).toBe("paused");
    expect(await agent.pollOnce()).toBe("paused");
    expect(calls).toEqual([{ op: "put", key: heartbeatKey(HOST, "paused", 300) }]);
    expect(activator.requests).toEqual([]);
    expect(ofType("paused")).toHaveLength(2);
    await setPaused(stateDir, false);
    expect(await agent.pollOnce()).toBe("applied");
  });

  it("does not mark a release applied when the host is busy, and retries it next poll", async () => {
    await publish();
    activator.script.push({ status: "busy", message: "another activation holds the lock" });
    const agent = makeAgent();
    expect(await agent.pollOnce()).toBe("busy");
    expect(ofType("busy")).toEqual([
      { type: "busy", message: "another activation holds the lock" },
    ]);
    expect(agent.state).toMatchObject({ etag: null, lastSeq: null, applying: null });
    expect(await loadState(stateDir)).toMatchObject({ etag: null, lastSeq: null, applying: null });
    // Busy again with the same: not said again.
    activator.script.push({ status: "busy", message: "another activation holds the lock" });
    expect(await agent.pollOnce()).toBe("busy");
    expect(ofType("busy")).toHaveLength(1);

    const mark = calls.length;
    expect(await agent.pollOnce()).toBe("applied");
    // The retry reads the channel in full (no etag kept), then applies.
    expect(since(mark)[0]).toEqual({ op: "get", key: channelKey(CHANNEL) });
    expect(activator.requests.map((r) => r.path)).toEqual([sys("a"), sys("a"), sys("a")]);
    expect(await hostRecord()).toMatchObject({ seq: 1, state: "success" });
    expect(await agent.pollOnce()).toBe("unchanged");
  });

  it("applies an interrupted release again in full after a crash, then stays quiet", async () => {
    const first = await publish({ [HOST]: sys("a") });
    // As a SIGKILL mid-activation leaves it: `applying` set, and the host already switched.
    await saveState(stateDir, {
      ...EMPTY_STATE,
      etag: (await store.head(channelKey(CHANNEL)))?.etag ?? null,
      applying: {
        seq: 1,
        digest: first.digest,
        path: sys("a"),
        startedAt: "2026-11-21T09:59:00.000Z",
      },
    });
    activator.system = { current: sys("a"), profile: sys("a"), generation: 4 };

    const agent = makeAgent();
    await agent.start();
    expect(ofType("recovering")).toEqual([{ type: "recovering", seq: 1, path: sys("a") }]);
    expect(await loadState(stateDir)).toMatchObject({ etag: null, applying: null });
    expect(calls).toEqual([]);

    expect(await agent.pollOnce()).toBe("applied");
    // inspect() says sys(a) is current, yet the interrupted activation runs again in full.
    expect(activator.requests.map((r) => r.path)).toEqual([sys("a")]);
    expect(calls[0]).toEqual({ op: "get", key: channelKey(CHANNEL) });
    expect(await hostRecord()).toMatchObject({ seq: 1, state: "success", generation: 5 });
    expect(agent.state).toMatchObject({ lastSeq: 1, lastResult: "success", applying: null });

    for (let i = 0; i < 2; i++) {
      const mark = calls.length;
      expect(await agent.pollOnce()).toBe("unchanged");
      expect(since(mark)).toEqual([
        { op: "get", key: channelKey(CHANNEL), ifNoneMatch: agent.state.etag },
      ]);
    }
    expect(activator.requests).toHaveLength(1);
  });

  it("reports the interrupted apply failed, and what the host runs, when the next release names the host no more", async () => {
    const first = await publish({ [HOST]: sys("a") });
    // The host's first deploy: applying reported, then the agent killed mid-switch.
    await store.put(
      hostStatusKey(HOST),
      formatStatusRecord({
        version: 1,
        host: HOST,
        mode: "agent",
        channel: CHANNEL,
        seq: 1,
        desired: sys("a"),
        current: null,
        generation: null,
        state: "applying",
        phase: "switch",
        error: null,
        rolledBack: null,
        startedAt: CLOCK.toISOString(),
        updatedAt: CLOCK.toISOString(),
      }),
    );
    await saveState(stateDir, {
      ...EMPTY_STATE,
      applying: { seq: 1, digest: first.digest, path: sys("a"), startedAt: CLOCK.toISOString() },
    });
    activator.system = { current: sys("a"), profile: sys("a"), generation: 1 };
    // The deploy's watch gave up; its wave's rollback names no entry for the host.
    await publishEntries({}, releaseKey, { kind: "rollback" });
    const agent = makeAgent();
    await agent.start();
    expect(await agent.pollOnce()).toBe("no-entry");
    expect(activator.requests).toEqual([]);
    expect(await hostRecord()).toMatchObject({
      seq: 1,
      state: "failed",
      current: sys("a"),
      rolledBack: false,
      error:
        "its activation of release 1 was interrupted here, and release 2 names no entry for this host: that apply is withdrawn; the host runs /nix/store/" +
        `${"a".repeat(32)}-nixos-system-web1`,
    });
    expect(agent.state).toMatchObject({ lastSeq: 2, interrupted: null });
  });

  it("applies in full a newer release that names the interrupted system (a refresh, another host's deploy)", async () => {
    const first = await publish({ [HOST]: sys("a") });
    await saveState(stateDir, {
      ...EMPTY_STATE,
      applying: { seq: 1, digest: first.digest, path: sys("a"), startedAt: CLOCK.toISOString() },
    });
    // The killed run switched the host; the channel has moved on to release 2, same entry.
    activator.system = { current: sys("a"), profile: sys("a"), generation: 4 };
    await publish({ [HOST]: sys("a") });
    const agent = makeAgent();
    await agent.start();
    expect(await agent.pollOnce()).toBe("applied");
    // The host looks current, but its checks never ran: release 2 activates it in full.
    expect(activator.requests.map((r) => r.path)).toEqual([sys("a")]);
    expect(await hostRecord()).toMatchObject({ seq: 2, state: "success", generation: 5 });
    // Once checked, a later release that names it again has nothing to do.
    await publish({ [HOST]: sys("a") });
    expect(await agent.pollOnce()).toBe("applied");
    expect(activator.requests).toHaveLength(1);
  });

  it("still applies an interrupted release in full when the first retry finds the host busy", async () => {
    const first = await publish({ [HOST]: sys("a") });
    await saveState(stateDir, {
      ...EMPTY_STATE,
      applying: { seq: 1, digest: first.digest, path: sys("a"), startedAt: CLOCK.toISOString() },
    });
    activator.system = { current: sys("a"), profile: sys("a"), generation: 4 };
    activator.script.push({ status: "busy", message: "another activation holds the lock" });
    const agent = makeAgent();
    expect(await agent.pollOnce()).toBe("busy");
    expect(await agent.pollOnce()).toBe("applied");
    // Busy, then applied for real: inspect() looking current does not let it skip the apply.
    expect(activator.requests.map((r) => r.path)).toEqual([sys("a"), sys("a")]);
    expect(await agent.pollOnce()).toBe("unchanged");
  });

  it("still applies an interrupted release in full after a second restart that came before it could", async () => {
    const first = await publish({ [HOST]: sys("a") });
    await saveState(stateDir, {
      ...EMPTY_STATE,
      applying: { seq: 1, digest: first.digest, path: sys("a"), startedAt: CLOCK.toISOString() },
    });
    activator.system = { current: sys("a"), profile: sys("a"), generation: 4 };
    // Restarted during the boot, before the store answered: nothing was applied again yet.
    await makeAgent().start();
    expect(await loadState(stateDir)).toMatchObject({
      applying: null,
      interrupted: { seq: 1, digest: first.digest, path: sys("a") },
    });
    // Restarted once more: the host looks current, yet its checks never ran.
    const agent = makeAgent();
    await agent.start();
    expect(await agent.pollOnce()).toBe("applied");
    expect(activator.requests.map((r) => r.path)).toEqual([sys("a")]);
    expect(await loadState(stateDir)).toMatchObject({ interrupted: null, lastSeq: 1 });
  });

  it("refuses a replayed release older than the one whose activation was interrupted, and takes that one", async () => {
    const first = await publish({ [HOST]: sys("a") });
    const second = await publish({ [HOST]: sys("b") });
    const third = await publish({ [HOST]: sys("c") });
    // Release 1 was applied; the agent was killed applying release 3, the host switched to it.
    await saveState(stateDir, {
      ...EMPTY_STATE,
      lastSeq: 1,
      lastDigest: first.digest,
      lastResult: "success",
      applying: { seq: 3, digest: third.digest, path: sys("c"), startedAt: CLOCK.toISOString() },
    });
    activator.system = { current: sys("c"), profile: sys("c"), generation: 4 };
    // A bucket writer puts release 2 back on the channel: genuinely signed, not expired.
    await writeChannel(Buffer.from(second.bytes));
    const agent = makeAgent();
    await agent.start();
    expect(await agent.pollOnce()).toBe("rejected");
    expect(ofType("rejected")[0]?.message).toBe(
      "release 2 is older than release 3, whose activation began here and was interrupted (a replay?)",
    );
    expect(activator.requests).toEqual([]);
    expect(activator.system.current).toBe(sys("c"));
    // Release 3 back: applied in full.
    await writeChannel(Buffer.from(third.bytes));
    expect(await agent.pollOnce()).toBe("applied");
    expect(activator.requests.map((r) => r.path)).toEqual([sys("c")]);
  });

  it("keeps an outcome whose report failed and reports it first on the next poll", async () => {
    await publish();
    // The store fails the success report's first write (the host's record) once.
    let failures = 1;
    const flaky = counting(store, (call) =>
      call.op === "put" && call.key === hostStatusKey(HOST) && failures-- > 0
        ? new Error("503 Slow Down")
        : undefined,
    );
    const agent = makeAgent({ store: flaky.store });
    await expect(agent.pollOnce()).rejects.toThrow("503 Slow Down");
    // Applied and remembered as applied (never again), with the record waiting in the state file.
    const waiting = await loadState(stateDir);
    expect(waiting).toMatchObject({ lastSeq: 1, lastResult: "success", applying: null });
    expect(waiting.unreported).toMatchObject({ host: HOST, seq: 1, state: "success" });
    expect(await readStatus(store, HOST)).toBeUndefined();

    // A restarted agent (a new process) finds it there: the channel is unchanged (one
    // conditional GET), yet the success is reported before anything else.
    const restarted = makeAgent({ store: flaky.store });
    const mark = flaky.calls.length;
    expect(await restarted.pollOnce()).toBe("unchanged");
    expect(flaky.calls.slice(mark).map((c) => `${c.op} ${c.key}`)).toEqual([
      `put ${hostStatusKey(HOST)}`,
      `put ${progressKey(CHANNEL, 1, HOST, "success")}`,
      `get ${channelKey(CHANNEL)}`,
      `put ${heartbeatKey(HOST, "running", 300)}`,
    ]);
    expect(flaky.calls.at(-2)?.ifNoneMatch).toBe(waiting.etag);
    expect(await hostRecord()).toEqual(waiting.unreported);
    expect(await markers(1)).toEqual([progressKey(CHANNEL, 1, HOST, "success")]);
    expect(await loadState(stateDir)).toMatchObject({ unreported: null, lastSeq: 1 });
    expect(activator.requests).toHaveLength(1);

    // Reported once: the next poll is one conditional GET again.
    const after = flaky.calls.length;
    expect(await restarted.pollOnce()).toBe("unchanged");
    expect(flaky.calls.slice(after).map((c) => c.op)).toEqual(["get"]);
  });

  it("reports an outcome whose report failed on the next poll, paused or not", async () => {
    await publish();
    let failures = 1;
    const flaky = counting(store, (call) =>
      call.op === "put" && call.key === hostStatusKey(HOST) && failures-- > 0
        ? new Error("503 Slow Down")
        : undefined,
    );
    await expect(makeAgent({ store: flaky.store }).pollOnce()).rejects.toThrow("503 Slow Down");
    const waiting = await loadState(stateDir);
    expect(waiting.unreported).toMatchObject({ host: HOST, seq: 1, state: "success" });
    // Paused since (an operator's `nixship agent pause`): the record is written all the same.
    await setPaused(stateDir, true);
    expect(await makeAgent({ store: flaky.store }).pollOnce()).toBe("paused");
    expect(await hostRecord()).toEqual(waiting.unreported);
    expect(await loadState(stateDir)).toMatchObject({ unreported: null, lastSeq: 1 });
  });

  it("keeps a refusal whose report failed, and reports it on the next poll", async () => {
    await publish({ [HOST]: sys("a") }, intruderKey);
    let failures = 1;
    const flaky = counting(store, (call) =>
      call.op === "put" && call.key === hostStatusKey(HOST) && failures-- > 0
        ? new Error("connect ECONNREFUSED")
        : undefined,
    );
    const agent = makeAgent({ store: flaky.store });
    await expect(agent.pollOnce()).rejects.toThrow("ECONNREFUSED");
    expect((await loadState(stateDir)).unreported).toMatchObject({ state: "rejected" });
    expect(await readStatus(store, HOST)).toBeUndefined();

    expect(await agent.pollOnce()).toBe("unchanged");
    expect(await hostRecord()).toMatchObject({ state: "rejected", phase: "verify" });
    expect((await hostRecord()).error).toContain("intruder-1");
    expect(activator.requests).toEqual([]);
  });

  it("recovers through pollOnce without an explicit start()", async () => {
    const first = await publish({ [HOST]: sys("a") });
    await saveState(stateDir, {
      ...EMPTY_STATE,
      applying: { seq: 1, digest: first.digest, path: sys("a"), startedAt: CLOCK.toISOString() },
    });
    activator.system = { current: sys("a"), profile: sys("a"), generation: 4 };
    const agent = makeAgent();
    expect(await agent.pollOnce()).toBe("applied");
    expect(activator.requests).toHaveLength(1);
  });
});

describe("Agent.run", () => {
  it("backs off on store errors, doubling the wait, and starts over after a success", async () => {
    let gets = 0;
    const failing = counting(store, (call) => {
      if (call.op !== "get") return undefined;
      gets++;
      // Polls 1-3 fail, poll 4 succeeds (no release yet), polls 5+ fail again.
      return gets === 4 ? undefined : new Error(`bucket unreachable (${gets})`);
    });
    const controller = new AbortController();
    const safety = setTimeout(() => controller.abort(), 10_000);
    const agent = makeAgent({
      store: failing.store,
      pollInterval: 0.01,
      emit: (e) => {
        events.push(e);
        if (ofType("store-error").length >= 6) controller.abort();
      },
    });
    try {
      await agent.run(controller.signal);
    } finally {
      clearTimeout(safety);
    }
    const errors = ofType("store-error");
    expect(errors.map((e) => e.retryIn)).toEqual([0.02, 0.04, 0.08, 0.02, 0.04, 0.08]);
    expect(errors[0]?.message).toBe("bucket unreachable (1)");
    expect(gets).toBe(7);
  });

  it("keeps growing the wait while the store stays down (bounded run)", async () => {
    const failing = counting(store, () => new Error("connect ECONNREFUSED 127.0.0.1:9000"));
    const controller = new AbortController();
    const agent = makeAgent({ store: failing.store, pollInterval: 0.01 });
    setTimeout(() => controller.abort(), 400);
    const started = Date.now();
    await agent.run(controller.signal);
    expect(Date.now() - started).toBeLessThan(2_000);
    const waits = ofType("store-error").map((e) => e.retryIn);
    expect(waits.length).toBeGreaterThanOrEqual(4);
    for (let i = 1; i < waits.length; i++) {
      expect(waits[i]).toBeGreaterThan(waits[i - 1] ?? Number.POSITIVE_INFINITY);
    }
    // With polls in between only every 20, 40, 80, 160 ms…: far fewer than 400 ms / 10 ms.
    expect(failing.calls.length).toBe(waits.length);
    expect(failing.calls.length).toBeLessThan(10);
  });

  it("polls every interval, applies once, and stops promptly when aborted mid-wait", async () => {
    await publish();
    const controller = new AbortController();
    const channelGets = () => calls.filter((c) => c.op === "get" && c.key === channelKey(CHANNEL));
    let applied = false;
    const agent = makeAgent({
      pollInterval: 0.05,
      emit: (e) => {
        events.push(e);
        if (e.type === "applied") applied = true;
      },
    });
    // Stopped once it applied and polled twice more, however slowly the machine runs.
    const watch = setInterval(() => {
      if (applied && channelGets().length >= 3) controller.abort();
    }, 10);
    await agent.run(controller.signal).finally(() => clearInterval(watch));
    expect(activator.requests).toHaveLength(1);
    const gets = channelGets();
    // The first poll read the channel; every later one was conditional.
    expect(gets.length).toBeGreaterThanOrEqual(3);
    expect(gets.slice(1).every((c) => c.ifNoneMatch === agent.state.etag)).toBe(true);

    // Aborting during an hour's wait ends run() (well within the test's own deadline).
    const slow = new AbortController();
    const waiting = makeAgent({ pollInterval: 3600 });
    const running = waiting.run(slow.signal);
    setTimeout(() => slow.abort(), 50);
    await running;
  });

  it("stops with an error on an unreadable state file instead of retrying", async () => {
    await writeFile(join(stateDir, "state.json"), "{ half a state");
    const controller = new AbortController();
    const safety = setTimeout(() => controller.abort(), 5_000);
    try {
      const failure = await makeAgent({ pollInterval: 0.01 })
        .run(controller.signal)
        .then(
          () => undefined,
          (err: unknown) => err,
        );
      expect(failure).toBeInstanceOf(InputError);
      expect((failure as InputError).code).toBe("bad-agent-state");
    } finally {
      clearTimeout(safety);
    }
    expect(calls).toEqual([]);
  });

  it("stops with an error when it cannot tell whether it is paused, rather than run as if not", async () => {
    // A pause flag that cannot be looked at (here a symlink loop: ELOOP, not ENOENT).
    await symlink(join(stateDir, "paused"), join(stateDir, "paused"));
    const failure = await makeAgent()
      .pollOnce()
      .then(
        () => undefined,
        (err: unknown) => err,
      );
    expect(failure).toBeInstanceOf(InputError);
    expect((failure as InputError).code).toBe("bad-agent-state");
    expect((failure as InputError).message).toContain(
      `${join(stateDir, "paused")}: cannot tell whether the agent is paused (ELOOP)`,
    );
    expect(calls).toEqual([]);
  });
});

describe("Agent heartbeats", () => {
  const beats = () => calls.filter((c) => c.key.startsWith("status/heartbeats/")).map((c) => c.key);

  it("writes one every heartbeatEvery polls, and at once when it pauses or resumes", async () => {
    await publish();
    const agent = makeAgent({ heartbeatEvery: 3, pollInterval: 10, jitter: 0.5 });
    expect(agent.heartbeatPeriod).toBe(45);
    const running = heartbeatKey(HOST, "running", 45);
    const paused = heartbeatKey(HOST, "paused", 45);
    for (let i = 0; i < 7; i++) await agent.pollOnce();
    // Polls 1, 4 and 7.
    expect(beats()).toEqual([running, running, running]);
    await setPaused(stateDir, true);
    for (let i = 0; i < 4; i++) expect(await agent.pollOnce()).toBe("paused");
    // At once, then 3 polls later.
    expect(beats().slice(3)).toEqual([paused, paused]);
    await setPaused(stateDir, false);
    await agent.pollOnce();
    expect(beats().slice(5)).toEqual([running]);
    // The body names the host, its state and the newest release it handled.
    const body = await readAll(store, running);
    expect(JSON.parse(String(body))).toEqual({
      version: 1,
      host: HOST,
      channel: CHANNEL,
      state: "running",
      every: 45,
      lastSeq: 1,
      at: CLOCK.toISOString(),
    });
  });

  it("reports a system switched by hand with its next heartbeat; an unchanged host costs no read", async () => {
    await publish({ [HOST]: sys("a") });
    const agent = makeAgent({ heartbeatEvery: 1 });
    expect(await agent.pollOnce()).toBe("applied");
    expect((await hostRecord()).current).toBe(sys("a"));
    const recordCalls = (mark: number) => since(mark).filter((c) => c.key === hostStatusKey(HOST));
    const quiet = calls.length;
    await agent.pollOnce();
    expect(recordCalls(quiet)).toEqual([]);
    // Someone switches the host by hand (nixos-rebuild switch).
    activator.system = { current: sys("h"), profile: sys("h"), generation: 9 };
    const switched = calls.length;
    expect(await agent.pollOnce()).toBe("unchanged");
    expect(recordCalls(switched).map((c) => c.op)).toEqual(["get", "put"]);
    // What it was given stays; what it runs is now what the host says.
    expect(await hostRecord()).toMatchObject({
      desired: sys("a"),
      current: sys("h"),
      generation: 9,
      state: "success",
    });
    expect(activator.requests.map((r) => r.path)).toEqual([sys("a")]);
    const after = calls.length;
    await agent.pollOnce();
    expect(recordCalls(after)).toEqual([]);
  });

  it("keeps beating during an activation that outlasts the heartbeat period", async () => {
    await publish();
    let release: () => void = () => {};
    const slow: Activator = {
      apply: async () => {
        await new Promise<void>((resolve) => {
          release = resolve;
        });
        return { status: "activated", generation: 1 };
      },
      judgeBoot: async () => ({ status: "activated", generation: 1 }),
      inspect: async () => ({ current: null, profile: null, generation: null }),
    };
    // A period of 1 s: pollInterval 1, one poll per heartbeat, no jitter.
    const agent = makeAgent({ activator: slow, pollInterval: 1, heartbeatEvery: 1 });
    const polling = agent.pollOnce();
    const deadline = Date.now() + 10_000;
    while (beats().length < 2 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(beats().length).toBeGreaterThanOrEqual(2);
    release();
    expect(await polling).toBe("applied");
  });
});

describe("Agent.pollOnce: a hostile document's words", () => {
  /** Release 1's fields as release 2, signed by a key whose name the bucket's writer chose. */
  async function plantSignedBy(name: string): Promise<void> {
    const { head, hosts } = parseReleaseHead(await channelBytes(), "planted");
    if (hosts === undefined) throw new Error("release 1 is sharded: its hosts are elsewhere");
    const signature = `${name}:${Buffer.alloc(64, 1).toString("base64")}`;
    const planted = canonicalForms({ ...head, seq: 2 }, { hosts }, signature).stored;
    await writeChannel(planted);
  }

  it("keeps a refusal quoting a 10,000-character key name short and clean: the agent starts again, the record reads", async () => {
    await publish();
    const agent = makeAgent();
    await agent.start();
    expect(await agent.pollOnce()).toBe("applied");
    await plantSignedBy(`\u001b]0;pwned\u0007\u001b[2J${"k".repeat(10_000)}`);
    expect(await agent.pollOnce()).toBe("rejected");
    const [refusal] = ofType("rejected");
    expect(refusal?.message).toMatch(/signed by key '\ufffd\]0;pwned\ufffd\ufffd\[2Jk+…'/);
    expect(refusal?.message.length).toBeLessThanOrEqual(2000);
    const record = await hostRecord();
    expect(record).toMatchObject({ state: "rejected" });
    expect(record.error).toBe(withoutControls(record.error ?? ""));
    // What a restart reads (systemd's Restart=always after a reboot or a crash): the state file
    // holds, and the agent goes on to the next genuine release.
    expect((await loadState(stateDir)).refused?.reason).toBe(refusal?.message);
    const restarted = makeAgent();
    await restarted.start();
    await publish({ [HOST]: sys("b") });
    expect(await restarted.pollOnce()).toBe("applied");
    expect(activator.system.current).toBe(sys("b"));
  });

  it("names an unknown key of 9,000 characters clipped, and starts again after refusing it", async () => {
    await publish();
    const agent = makeAgent();
    await agent.start();
    expect(await agent.pollOnce()).toBe("applied");
    await writeChannel(JSON.stringify({ version: 1, [`\u001b[2J${"x".repeat(9000)}`]: 1 }));
    // (A body that does not parse is read twice before it is refused: a torn read.)
    expect(await agent.pollOnce()).toBe("unchanged");
    expect(await agent.pollOnce()).toBe("rejected");
    const record = await hostRecord();
    expect(record.error).toMatch(/\["\\u001b\[2Jx+…\]: unknown key/);
    expect(record.error?.length).toBeLessThan(2000);
    await loadState(stateDir);
    await makeAgent().start();
  });
});
