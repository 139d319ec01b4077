// What `nixship agent --once` exits with: a fresh agent per run, as each --once is a process of
// its own, on a real fs store in a temp dir and a scripted activator. Run again with nothing new
// in the channel, it exits as the release it acted on last ended here, saying why; not done is 1.
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { generateSecretKey, publicKeyOf, type SecretKey } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import { channelKey, publishRelease } from "../release/release-store.js";
import { FsStore } from "../store/fs-store.js";
import type { Activator, Applied, HostSystem } from "./activator.js";
import { Agent, type PollOutcome } from "./agent.js";
import { onceExit, pollForExit, rebootBackText } from "./standing.js";
import { type AgentState, EMPTY_STATE, loadState } from "./state.js";

const releaseKey = generateSecretKey("release-1");
const intruderKey = generateSecretKey("intruder-1");
const CHANNEL = "prod";
const HOST = "web1";
const CLOCK = new Date("2026-11-21T10:00:00.000Z");
const sys = (c: string) => `/nix/store/${c.repeat(32)}-nixos-system-web1` as StorePath;

let dir: string;
let stateDir: string;
let store: FsStore;
/** Answers for the next applies, in order; when empty, apply activates. */
let script: Applied[];
let system: HostSystem;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-agent-standing-"));
  stateDir = join(dir, "state");
  await mkdir(stateDir);
  store = new FsStore(join(dir, "bucket"), { fsync: false });
  script = [];
  system = { current: null, profile: null, generation: null };
});

afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

const activator: Activator = {
  async apply(request) {
    const answer = script.shift() ?? { status: "activated", generation: 1 };
    if (answer.status === "activated") {
      system = { current: request.path, profile: request.path, generation: 1 };
    }
    return answer;
  },
  async inspect() {
    return system;
  },
  async judgeBoot() {
    throw new Error("no reboot in these tests");
  },
};

/** `nixship agent --once`: a new agent on the same state directory, one poll, its exit. */
async function once(): Promise<{ outcome: PollOutcome; code: 0 | 1; why: string | undefined }> {
  const agent = new Agent({
    store,
    channel: CHANNEL,
    host: HOST,
    releaseKeys: [publicKeyOf(releaseKey)],
    substituters: [],
    cacheKeys: [],
    stateDir,
    activator,
    pollInterval: 30,
    jitter: 0,
    now: () => CLOCK,
  });
  await agent.start();
  const { outcome, code, why } = await pollForExit(agent);
  return { outcome, code, why };
}

function publish(hosts: Record<string, StorePath>, key: SecretKey = releaseKey) {
  return publishRelease(store, {
    channel: CHANNEL,
    hosts: Object.fromEntries(Object.entries(hosts).map(([h, path]) => [h, { path }])),
    kind: "deploy",
    action: "switch",
    health: { http: [], commands: [] },
    confirmTimeout: 30,
    key,
    now: CLOCK,
  });
}

describe("agent --once run again with nothing new in the channel", () => {
  it("exits 1 after a failure, saying when and why; 0 once a release is applied", async () => {
    await publish({ [HOST]: sys("a") });
    script.push({
      status: "failed",
      phase: "health",
      message: "health check answered 503",
      rolledBack: true,
    });
    expect(await once()).toMatchObject({ outcome: "failed", code: 1 });
    // A 304 on the channel's etag: the release that failed is not tried again.
    expect(await once()).toEqual({
      outcome: "unchanged",
      code: 1,
      why: `release 1 failed here at ${CLOCK.toISOString()}: health check answered 503; nothing new to apply (a failed release is not tried again)`,
    });
    await publish({ [HOST]: sys("b") });
    expect(await once()).toMatchObject({ outcome: "applied", code: 0 });
    expect(await once()).toEqual({
      outcome: "unchanged",
      code: 0,
      why: "release 2 was applied here already: nothing new to apply",
    });
  });

  it("exits 1 after a refusal, saying why, until a release is acted on after it", async () => {
    await publish({ [HOST]: sys("a") });
    expect(await once()).toMatchObject({ outcome: "applied", code: 0 });
    await publish({ [HOST]: sys("b") }, intruderKey);
    const refused = await once();
    expect(refused).toMatchObject({ outcome: "rejected", code: 1 });
    const state = await loadState(stateDir);
    expect(state).toMatchObject({ lastSeq: 1, lastResult: "success" });
    expect(state.refused).toEqual({
      seq: 2,
      reason: expect.stringContaining("intruder-1"),
      at: CLOCK.toISOString(),
    });
    const again = await once();
    expect(again).toMatchObject({ outcome: "unchanged", code: 1 });
    expect(again.why).toBe(
      `refused release 2 at ${CLOCK.toISOString()}: ${state.refused?.reason}; nothing new to apply`,
    );
    // Release 3 names another host only: this host has nothing to run, and the refusal is past.
    await publish({ web2: sys("c") });
    expect(await once()).toMatchObject({ outcome: "no-entry", code: 0 });
    expect((await loadState(stateDir)).refused).toBeNull();
    expect(await once()).toEqual({
      outcome: "unchanged",
      code: 0,
      why: "release 3 names no entry for this host: nothing new to apply",
    });
  });

  it("reads a channel body that does not parse a second time at once, then refuses it", async () => {
    await publish({ [HOST]: sys("a") });
    expect(await once()).toMatchObject({ outcome: "applied", code: 0 });
    await store.put(channelKey(CHANNEL), Buffer.from("{ not json"));
    // Not "unchanged" with release 1's success: the channel holds something else now.
    expect(await once()).toMatchObject({ outcome: "rejected", code: 1 });
    const again = await once();
    expect(again).toMatchObject({ outcome: "unchanged", code: 1 });
    expect(again.why).toMatch(/^refused the channel's document at .*; nothing new to apply$/);
  });
});

describe("onceExit: a host that is not done exits 1", () => {
  const applying = {
    ...EMPTY_STATE,
    lastSeq: 1,
    lastDigest: "sha256-x",
    lastResult: "success",
    applying: { seq: 2, digest: "sha256-y", path: sys("b"), startedAt: CLOCK.toISOString() },
  } satisfies AgentState;

  it.each([
    ["paused", EMPTY_STATE, /^not done: the agent is paused/],
    ["busy", EMPTY_STATE, /^not done: another activation holds this host/],
    ["rebooting", applying, /^not done: the host reboots into release 2;/],
    ["unchanged", applying, /^not done: release 2 is being applied/],
    ["unchanged", EMPTY_STATE, /^no release of the channel was applied here yet$/],
  ] as const)("%s", (outcome, state, why) => {
    const exit = onceExit(outcome, state);
    expect(exit.code).toBe(1);
    expect(exit.why).toMatch(why);
  });

  it("exits 0 on a channel with no release, saying so", () => {
    expect(onceExit("no-release", EMPTY_STATE)).toEqual({
      code: 0,
      why: "the channel has no release yet: nothing new to apply",
    });
  });
});

describe("rebootBackText: agent status on an awaited reboot back", () => {
  const back = { bootId: "b1", since: "2026-11-30T10:00:00.000Z", timeout: 600 };
  it("says releases wait within the reboot timeout", () => {
    expect(rebootBackText(back, Date.parse("2026-11-30T10:10:00.000Z"))).toBe(
      "rebooting back into the previous generation since 2026-11-30T10:00:00.000Z (releases wait for that boot, 600s at most)",
    );
  });
  it("says it is overdue past it, and what the next poll does", () => {
    expect(rebootBackText(back, Date.parse("2026-11-30T10:10:01.000Z"))).toBe(
      "rebooting back into the previous generation since 2026-11-30T10:00:00.000Z: overdue (600s passed), the agent reads the channel again at its next poll",
    );
  });
});
