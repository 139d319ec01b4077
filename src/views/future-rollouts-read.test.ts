// A rollout record dated more than FUTURE_SKEW ahead of the clock, over a real directory store:
// status, plan's asks and a rollback without --rollout pass over it, as the dashboard does, and
// status and rollback name it.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Fleet } from "../fleet/fleet.js";
import { parseFleetValue } from "../fleet/fleet-file.js";
import { formatPublicKey, generateSecretKey, publicKeyOf, type SecretKey } from "../nix/keys.js";
import { FUTURE_SKEW } from "../status/future-rollouts.js";
import { type RolloutHost, type RolloutRecord, rolloutKey } from "../status/rollout.js";
import { readLastAsks, writeRollout } from "../status/rollout-store.js";
import type { StatusRecord } from "../status/status.js";
import { writeStatus } from "../status/status-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { readUndo } from "./rollout-undo.js";
import { readStatusView } from "./status-view.js";

const V1 = "/nix/store/11111111111111111111111111111111-web-v1";
const V2 = "/nix/store/22222222222222222222222222222222-web-v2";
const V3 = "/nix/store/33333333333333333333333333333333-web-v3";
const HOUR = 3_600_000;

let dir: string;
let store: ObjectStore;
let key: SecretKey;
let fleet: Fleet;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-future-read-"));
  store = await openStore(`file://${dir}?fsync=false`);
  key = generateSecretKey("future-1");
  const publicKeys = [formatPublicKey(publicKeyOf(key))];
  fleet = parseFleetValue(
    {
      cache: { url: `file://${dir}`, publicKeys },
      releases: { channel: "prod", publicKeys },
      hosts: { web1: { delivery: "agent", system: V2 } },
    },
    "future-rollouts-read.test.ts",
  );
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

function rollout(id: string, startedAt: number, host: RolloutHost): RolloutRecord {
  const at = new Date(startedAt).toISOString();
  return {
    version: 1,
    id,
    mode: "agent",
    action: "switch",
    state: host.state === "confirmed" ? "succeeded" : "partial",
    stopped: null,
    waves: host.state === "confirmed" ? [{ index: 1, kind: "main", hosts: [host] }] : [],
    skipped: host.state === "confirmed" ? [] : [host],
    startedAt: at,
    updatedAt: at,
  };
}

/** G, an hour ago, gave web1 V2, which its record says it runs; F, dated 2 h ahead, skipped it. */
async function givenThenAhead(): Promise<{ ahead: string }> {
  const now = Date.now();
  const confirmed = { host: "web1", state: "confirmed", phase: null, message: null } as const;
  await writeRollout(
    store,
    rollout("aaaaaaaaaaaa", now - HOUR, { ...confirmed, system: V2, before: V1 }),
    key,
  );
  const record: StatusRecord = {
    version: 1,
    host: "web1",
    mode: "agent",
    channel: "prod",
    seq: 1,
    desired: V2,
    current: V2,
    generation: 2,
    previous: V1,
    state: "success",
    phase: null,
    error: null,
    rolledBack: null,
    startedAt: new Date(now - HOUR + 60_000).toISOString(),
    updatedAt: new Date(now - HOUR + 120_000).toISOString(),
  };
  await writeStatus(store, record);
  const skipped = {
    host: "web1",
    state: "unreachable",
    phase: null,
    message: "timed out",
  } as const;
  const future = rollout("ffffffffffff", now + 2 * HOUR, { ...skipped, system: V3, before: V2 });
  await writeRollout(store, future, key);
  return { ahead: rolloutKey(new Date(future.startedAt), future.id) };
}

describe(`a rollout record dated more than ${FUTURE_SKEW / 60_000} minutes ahead`, () => {
  it("is no ask of status or plan, and status names it", async () => {
    const { ahead } = await givenThenAhead();
    const view = await readStatusView(fleet, fleet.hosts, { stored: true });
    expect(view.rows[0]?.behindRollout).toBeUndefined();
    expect(view.futureRollout?.key).toBe(ahead);
    const { asks } = await readLastAsks(store, ["web1"], [publicKeyOf(key)]);
    expect(asks.get("web1")?.rollout.id).toBe("aaaaaaaaaaaa");
  });

  it("is not the rollout a rollback without --rollout undoes, and the rollback names it", async () => {
    const { ahead } = await givenThenAhead();
    const read = await readUndo(fleet, {});
    expect(read.record.id).toBe("aaaaaaaaaaaa");
    expect(read.futureRollout?.key).toBe(ahead);
    // Named by its id, it is the one undone.
    expect((await readUndo(fleet, { id: "ffffffffffff" })).record.id).toBe("ffffffffffff");
  });
});
