// How often the pull agent writes its state file (each a fsynced file and its directory, the
// largest part of an apply's own CPU): an apply saves before its activation and once its outcome
// is stored; a host already on its entry, and a refusal, once their record is stored; a store
// that fails keeps the record in the file.
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { generateSecretKey, publicKeyOf, type SecretKey } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import { publishRelease } from "../release/release-store.js";
import { hostStatusKey } from "../status/status.js";
import { readStatus } from "../status/status-store.js";
import { FsStore } from "../store/fs-store.js";
import type { ObjectStore } from "../store/object-store.js";
import type { Activator, HostSystem } from "./activator.js";
import { Agent } from "./agent.js";
import { type AgentState, saveState } from "./state.js";

// saveState as it is, every call recorded.
vi.mock("./state.js", async (importOriginal) => {
  const actual = await importOriginal<typeof import("./state.js")>();
  return { ...actual, saveState: vi.fn(actual.saveState) };
});

const releaseKey = generateSecretKey("release-1");
const CHANNEL = "prod";
const HOST = "web1";
const SYSTEM = `/nix/store/${"a".repeat(32)}-nixos-system-web1` as StorePath;

let dir: string;
let stateDir: string;
let store: FsStore;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-agent-saves-"));
  stateDir = join(dir, "state");
  await mkdir(stateDir);
  store = new FsStore(join(dir, "bucket"), { fsync: false });
  vi.mocked(saveState).mockClear();
});

afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

/** An activator that switches at once, as the host's activate.sh answers a quick switch. */
function quickActivator(): Activator & { system: HostSystem } {
  const activator = {
    system: { current: null, profile: null, generation: null } as HostSystem,
    apply: async (request: { path: StorePath }) => {
      activator.system = { current: request.path, profile: request.path, generation: 1 };
      return { status: "activated" as const, generation: 1 };
    },
    judgeBoot: async () => ({ status: "activated" as const, generation: 1 }),
    inspect: async () => activator.system,
  };
  return activator;
}

function makeAgent(agentStore: ObjectStore = store, activator = quickActivator()): Agent {
  return new Agent({
    store: agentStore,
    channel: CHANNEL,
    host: HOST,
    releaseKeys: [publicKeyOf(releaseKey)],
    substituters: [],
    cacheKeys: [],
    stateDir,
    activator,
    pollInterval: 30,
    jitter: 0,
  });
}

function publish(key: SecretKey = releaseKey) {
  return publishRelease(store, {
    channel: CHANNEL,
    hosts: { [HOST]: { path: SYSTEM } },
    kind: "deploy",
    action: "switch",
    health: { http: [], commands: [] },
    confirmTimeout: 0,
    key,
  });
}

/** The bucket, with `put` in front of its own. */
function withPut(put: ObjectStore["put"]): ObjectStore {
  return {
    url: store.url,
    get: store.get.bind(store),
    head: (key) => store.head(key),
    put,
    putFile: (key, file, options) => store.putFile(key, file, options),
    makeStagingDir: () => store.makeStagingDir(),
    list: (prefix, options) => store.list(prefix, options),
    delete: (key) => store.delete(key),
    close: async () => {},
  };
}

const saved = (): AgentState[] => vi.mocked(saveState).mock.calls.map(([, state]) => state);

describe("the agent's state saves", () => {
  it("an apply saves twice: before its activation, and once its outcome is stored", async () => {
    await publish();
    let atReport: AgentState[] | undefined;
    const watching = withPut(async (key, body, options) => {
      if (key === hostStatusKey(HOST)) atReport = saved();
      return store.put(key, body, options);
    });
    expect(await makeAgent(watching).pollOnce()).toBe("applied");
    const states = saved();
    expect(states).toHaveLength(2);
    expect(states[0]).toMatchObject({ applying: { seq: 1, path: SYSTEM }, lastSeq: null });
    // The outcome's record went to the store before the state file said the release was done.
    expect(atReport).toEqual(states.slice(0, 1));
    const record = await readStatus(store, HOST);
    expect(record).toMatchObject({ seq: 1, state: "success", current: SYSTEM });
    expect(states[1]).toMatchObject({
      applying: null,
      lastSeq: 1,
      lastResult: "success",
      unreported: null,
      reported: record,
    });
  });

  it("a host that already runs its entry runs nothing and saves once, after its report", async () => {
    await publish();
    const activator = quickActivator();
    activator.system = { current: SYSTEM, profile: SYSTEM, generation: 3 };
    let applies = 0;
    const apply = activator.apply;
    activator.apply = (...args) => {
      applies++;
      return apply(...args);
    };
    expect(await makeAgent(store, activator).pollOnce()).toBe("applied");
    expect(applies).toBe(0);
    expect(saved()).toEqual([
      expect.objectContaining({
        applying: null,
        lastSeq: 1,
        lastResult: "success",
        unreported: null,
      }),
    ]);
    expect(await readStatus(store, HOST)).toMatchObject({
      seq: 1,
      state: "success",
      generation: 3,
    });
  });

  it("a refusal saves once, after its record is stored", async () => {
    await publish(generateSecretKey("intruder-1"));
    expect(await makeAgent().pollOnce()).toBe("rejected");
    expect(saved()).toEqual([
      expect.objectContaining({
        unreported: null,
        reported: expect.objectContaining({ state: "rejected" }),
      }),
    ]);
  });

  it("an outcome the store does not take is saved as unreported, and reported on the next poll", async () => {
    await publish();
    let failures = 1;
    const flaky = withPut(async (key, body, options) => {
      if (key === hostStatusKey(HOST) && failures-- > 0) throw new Error("503 Slow Down");
      return store.put(key, body, options);
    });
    const agent = makeAgent(flaky);
    await expect(agent.pollOnce()).rejects.toThrow("503 Slow Down");
    expect(saved().at(-1)).toMatchObject({
      applying: null,
      lastSeq: 1,
      lastResult: "success",
      unreported: { seq: 1, state: "success" },
    });
    expect(await agent.pollOnce()).toBe("unchanged");
    expect(await readStatus(store, HOST)).toMatchObject({ seq: 1, state: "success" });
    expect(saved().at(-1)).toMatchObject({ unreported: null, reported: { state: "success" } });
  });
});
