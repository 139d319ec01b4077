// A running `nixship agent` whose config is rewritten (as a NixOS switch rewrites
// /etc/nixship/agent.json and leaves the agent running): a release key dropped from the config
// is no longer trusted from its next poll on, and one added is, without a restart. The built
// CLI on a directory store, with releases that never name this host's system (nothing is
// activated).
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import {
  formatPublicKey,
  generateSecretKey,
  publicKeyOf,
  type SecretKey,
} from "../src/nix/keys.js";
import type { StorePath } from "../src/nix/store-path.js";
import { publishRelease } from "../src/release/release-store.js";
import { FsStore } from "../src/store/fs-store.js";
import { NIXSHIP_BIN } from "../support/cli.js";

const oldKey = generateSecretKey("release-1");
const newKey = generateSecretKey("release-2");
let work: string;
let store: FsStore;
let config: string;
let agent: ChildProcess | undefined;
const events: Record<string, unknown>[] = [];
let stderr = "";

const writeConfig = (keys: readonly SecretKey[]) =>
  writeFile(
    config,
    JSON.stringify({
      store: `file://${join(work, "cache")}`,
      channel: "prod",
      // Named by no release: the agent checks only that the channel is signed, and finds no entry.
      host: "h1",
      releaseKeys: keys.map((k) => formatPublicKey(publicKeyOf(k))),
      cacheKeys: [formatPublicKey(publicKeyOf(oldKey))],
      stateDir: join(work, "state"),
      pollInterval: 1,
      jitter: 0,
    }),
  );

/** The channel's next release, naming a host other than this one (nothing to activate). */
const publish = (key: SecretKey) =>
  publishRelease(store, {
    channel: "prod",
    hosts: { h2: { path: `/nix/store/${"b".repeat(32)}-nixos-system-h2` as StorePath } },
    kind: "deploy",
    action: "switch",
    health: { http: [], commands: [] },
    confirmTimeout: 30,
    key,
  });

/** Waits (bounded) for an event after the `from`th that `match` holds of. */
async function nextEvent(from: number, match: (e: Record<string, unknown>) => boolean) {
  for (let i = 0; i < 200; i++) {
    const found = events.slice(from).find(match);
    if (found !== undefined) return found;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`no such event; events: ${JSON.stringify(events)}; stderr: ${stderr}`);
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-agent-config-keys-"));
  await mkdir(join(work, "cache"));
  await writeFile(join(work, "cache", "nix-cache-info"), "StoreDir: /nix/store\n");
  store = new FsStore(join(work, "cache"));
  config = join(work, "agent.json");
});
afterAll(async () => {
  agent?.kill("SIGKILL");
  await store.close();
  await rm(work, { recursive: true, force: true });
});

it("a running agent follows its config's keys: a dropped key's release is refused, a new key's taken", async () => {
  await writeConfig([oldKey]);
  // Release 1 is signed by the new key, which the agent does not trust yet.
  await publish(newKey);
  agent = spawn(process.execPath, [NIXSHIP_BIN, "agent", "--config", config, "--json"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let buffer = "";
  agent.stdout?.setEncoding("utf8").on("data", (d: string) => {
    buffer += d;
    for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
      events.push(JSON.parse(buffer.slice(0, nl)) as Record<string, unknown>);
      buffer = buffer.slice(nl + 1);
    }
  });
  agent.stderr?.setEncoding("utf8").on("data", (d: string) => {
    stderr += d;
  });
  const refused = await nextEvent(0, (e) => e.type === "rejected");
  expect(refused.message).toMatch(/signed by key 'release-2', which is not trusted/);
  // The rotation, as a switch writes it: the new key only. Release 1, signed by it, is now
  // taken without a new release: the channel is read afresh.
  const mark = events.length;
  await writeConfig([newKey]);
  expect(await nextEvent(mark, (e) => e.type === "trust-changed")).toMatchObject({
    releaseKeys: ["release-2"],
    cacheKeys: ["release-1"],
  });
  expect(await nextEvent(mark, (e) => e.type === "release" || e.type === "rejected")).toEqual(
    expect.objectContaining({ type: "release", seq: 1 }),
  );
  // Whoever holds the dropped key publishes release 2: refused.
  const after = events.length;
  await publish(oldKey);
  const second = await nextEvent(after, (e) => e.type === "rejected" || e.type === "release");
  expect(second.type).toBe("rejected");
  expect(second.message).toMatch(/signed by key 'release-1', which is not trusted/);
}, 60_000);
