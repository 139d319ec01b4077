// `nixship agent --once` exits 0 only when the host is done with the channel's current release,
// run again or not: a refusal, a paused agent or a channel body that does not parse is 1, said on
// stderr; `agent status` shows a refusal newer than the last result. The built CLI on a
// directory store, with releases that never name this host's system (nothing is activated).
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  formatPublicKey,
  generateSecretKey,
  publicKeyOf,
  type SecretKey,
} from "../src/nix/keys.js";
import type { StorePath } from "../src/nix/store-path.js";
import { channelKey, publishRelease } from "../src/release/release-store.js";
import { FsStore } from "../src/store/fs-store.js";
import { nixship } from "../support/cli.js";

const trusted = generateSecretKey("release-1");
const stranger = generateSecretKey("stranger-1");
let work: string;
let store: FsStore;
let config: string;
let stateDir: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-agent-once-"));
  const cache = join(work, "cache");
  await mkdir(cache);
  await writeFile(join(cache, "nix-cache-info"), "StoreDir: /nix/store\n");
  store = new FsStore(cache);
  stateDir = join(work, "state");
  config = join(work, "agent.json");
  const pub = formatPublicKey(publicKeyOf(trusted));
  await writeFile(
    config,
    JSON.stringify({
      store: `file://${cache}`,
      channel: "prod",
      host: "h1",
      releaseKeys: [pub],
      cacheKeys: [pub],
      stateDir,
    }),
  );
});
afterAll(async () => {
  await store.close();
  await rm(work, { recursive: true, force: true });
});

/** The channel's next release, naming `host` (a system that is never built). */
function publish(host: string, key: SecretKey = trusted) {
  return publishRelease(store, {
    channel: "prod",
    hosts: { [host]: { path: `/nix/store/${"a".repeat(32)}-nixos-system-${host}` as StorePath } },
    kind: "deploy",
    action: "switch",
    health: { http: [], commands: [] },
    confirmTimeout: 30,
    key,
  });
}

const agent = (...args: string[]) => nixship(["agent", ...args, "--config", config]);

describe("agent --once, run again", () => {
  it("exits 0 while the channel's release names no entry for the host", async () => {
    // Release 1 names h1 (so the agent starts), release 2, the channel's, names h2 only.
    await publish("h1");
    await publish("h2");
    const first = await agent("--once");
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toContain("release 2 has no entry for this host");
    const again = await agent("--once");
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain("release 2 names no entry for this host: nothing new to apply");
  });

  it("exits 1 after a refusal, every time, saying why; agent status shows it", async () => {
    await publish("h2", stranger);
    const first = await agent("--once");
    expect(first.code, first.stderr).toBe(1);
    expect(first.stderr).toContain("refused:");
    // A 304 on the refused channel's etag: still refused, not a success.
    const again = await agent("--once");
    expect(again.code, again.stderr).toBe(1);
    expect(again.stderr).toMatch(
      /nixship-agent: refused release 3 at \S+: .*stranger-1.*; nothing new to apply\n/,
    );
    const status = await agent("status");
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toContain("last      release 2: no-entry\n");
    expect(status.stdout).toMatch(/\nrefused {3}release 3 at \S+: .*stranger-1.*\n/);
  });

  it("exits 1 while the agent is paused", async () => {
    expect((await agent("pause")).code).toBe(0);
    const paused = await agent("--once");
    expect(paused.code, paused.stderr).toBe(1);
    expect(paused.stderr).toContain("not done: the agent is paused");
    expect((await agent("resume")).code).toBe(0);
  });

  it("refuses a channel body that does not parse at once (read twice), and exits 1", async () => {
    await store.put(channelKey("prod"), Buffer.from("{ torn"));
    const torn = await agent("--once");
    expect(torn.code, torn.stderr).toBe(1);
    expect(torn.stderr).toContain("refused:");
    const status = await agent("status");
    expect(status.stdout).toMatch(/\nrefused {3}the channel's document at \S+: /);
  });

  it("exits 0 again once a release is acted on after the refusal, which status no longer shows", async () => {
    await publish("h2");
    const next = await agent("--once");
    expect(next.code, next.stderr).toBe(0);
    const again = await agent("--once");
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain("release 4 names no entry for this host: nothing new to apply");
    const status = await agent("status");
    expect(status.stdout).toContain("last      release 4: no-entry\n");
    expect(status.stdout).not.toContain("refused");
  });

  it("shows a refusal without the control characters the state file holds", async () => {
    const state = JSON.parse(await readFile(join(stateDir, "state.json"), "utf8"));
    await writeFile(
      join(stateDir, "state.json"),
      JSON.stringify({
        ...state,
        refused: { seq: 5, reason: "bad\u001b[2J\u009bkey", at: "2026-11-21T10:00:00.000Z" },
      }),
    );
    const status = await agent("status");
    expect(status.stdout).toContain(
      "refused   release 5 at 2026-11-21T10:00:00.000Z: bad\ufffd[2J\ufffdkey\n",
    );
  });
});
