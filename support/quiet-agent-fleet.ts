// A quiet fleet of agent hosts in a store, for the tests and the bench of what one host's junk
// costs the views: one signed release naming each host, each host's success record of it and
// one heartbeat.
import type { SecretKey } from "../src/nix/keys.js";
import type { StorePath } from "../src/nix/store-path.js";
import { publishRelease } from "../src/release/release-store.js";
import { statusRecord } from "../src/status/status.js";
import { writeHeartbeat, writeStatus } from "../src/status/status-store.js";
import type { ObjectStore } from "../src/store/object-store.js";

export async function writeQuietAgentFleet(
  store: ObjectStore,
  key: SecretKey,
  hosts: readonly string[],
  system: StorePath,
): Promise<void> {
  await publishRelease(store, {
    channel: "prod",
    hosts: Object.fromEntries(hosts.map((h) => [h, { path: system }])),
    kind: "deploy",
    action: "switch",
    health: { http: [], commands: [] },
    confirmTimeout: 30,
    key,
  });
  const now = new Date().toISOString();
  for (const host of hosts) {
    await writeStatus(
      store,
      statusRecord({
        host,
        mode: "agent",
        release: { channel: "prod", seq: 1 },
        desired: system,
        system: { current: system, generation: 2 },
        what: { state: "success", phase: null, error: null, rolledBack: null },
        startedAt: now,
        updatedAt: now,
      }),
    );
    await writeHeartbeat(store, {
      host,
      channel: "prod",
      state: "running",
      every: 330,
      lastSeq: 1,
      at: now,
    });
  }
}
