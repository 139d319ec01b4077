// The agents' history looks back over the channel's last 50 releases that are no refresh: a
// daily `release refresh` (docs/agent.md) repeats the channel's entries, and must not push the
// deploys before it, and what a rollback goes back to, out of the history (and out of what
// `cache gc` keeps). At most HISTORY_READS releases are read, refreshes included.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HISTORY_READS, readHistory } from "../src/channel/history-store.js";
import { confirmedSystems } from "../src/channel/host-history.js";
import { generateSecretKey } from "../src/nix/keys.js";
import type { StorePath } from "../src/nix/store-path.js";
import type { ReleaseKind } from "../src/release/release.js";
import { publishRelease } from "../src/release/release-store.js";
import { writeStatus } from "../src/status/status-store.js";
import type { ObjectStore } from "../src/store/object-store.js";
import { openStore } from "../src/store/url.js";
import { sshRecord, V1, V2 } from "./support/status-records.js";

let work: string;
let store: ObjectStore;
const key = generateSecretKey("history-refresh-1");

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-history-refresh-"));
  store = await openStore(`file://${work}?fsync=false`);
});
afterAll(async () => {
  await store?.close();
  await rm(work, { recursive: true, force: true });
});

/** Publishes release `seq` of `channel` naming web1's `system`, and web1's confirmation of it. */
async function released(channel: string, seq: number, kind: ReleaseKind, system: string) {
  const signed = await publishRelease(store, {
    channel,
    hosts: { web1: { path: system as StorePath } },
    kind,
    action: "switch",
    health: { http: [], commands: [] },
    confirmTimeout: 30,
    key,
  });
  expect(signed.release.seq).toBe(seq);
  await writeStatus(
    store,
    sshRecord({ mode: "agent", channel, seq, desired: system, current: system, previous: null }),
  );
}

describe("the agents' history", () => {
  it("passes over refreshes: V1 stays a confirmed system behind 60 refreshes of V2", async () => {
    await released("daily", 1, "deploy", V1);
    await released("daily", 2, "deploy", V2);
    for (let seq = 3; seq <= 62; seq++) await released("daily", seq, "refresh", V2);
    const history = await readHistory(store, { channel: "daily", trustedKeys: undefined });
    expect(confirmedSystems(history.hosts.get("web1") ?? [])).toEqual([V2, V1]);
    expect(history.getCalls).toBe(62);
  }, 120_000);

  it(`reads ${HISTORY_READS} releases at most, refreshes included`, async () => {
    await released("flood", 1, "deploy", V1);
    await released("flood", 2, "deploy", V2);
    for (let seq = 3; seq <= HISTORY_READS + 2; seq++) {
      await released("flood", seq, "refresh", V2);
    }
    const history = await readHistory(store, { channel: "flood", trustedKeys: undefined });
    expect(history.getCalls).toBe(HISTORY_READS);
    expect(confirmedSystems(history.hosts.get("web1") ?? [])).toEqual([V2]);
  }, 300_000);
});
