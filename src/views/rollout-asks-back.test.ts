// The fleet's last ask of a host read back past the newest 20 rollouts, over a real directory
// store: a host an old rollout skipped stays behind however many rollouts to other hosts came
// since; the reading stops at a host's own newer record, and at ASK_LOOKBACK records, where a
// host with an older record is said not judged. Counted, not timed.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { withBehindRollouts } from "../deploy/plan-behind.js";
import { readPlanRecords } from "../deploy/plan-records.js";
import type { Fleet } from "../fleet/fleet.js";
import { parseFleetValue } from "../fleet/fleet-file.js";
import type { DeployPlan } from "../fleet/plan.js";
import { formatPublicKey, generateSecretKey, publicKeyOf, type SecretKey } from "../nix/keys.js";
import { type RolloutHost, type RolloutRecord, rolloutKey } from "../status/rollout.js";
import {
  ASK_BYTES,
  ASK_LOOKBACK,
  ASK_ROLLOUTS,
  listNewestRollouts,
  readAskedRecord,
  readAsksBack,
  readLastAsks,
  writeRollout,
} from "../status/rollout-store.js";
import type { StatusRecord } from "../status/status.js";
import { writeStatus } from "../status/status-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { countReads } from "../store/wrap-store.js";
import { formatStatusTable } from "../ui/status-table.js";
import { hostState } from "./host-state.js";
import { RolloutWatch } from "./rollout-watch.js";
import type { StoredRow } from "./status-rows.js";
import { readStatusView } from "./status-view.js";

const V1 = "/nix/store/11111111111111111111111111111111-web-v1";
const V2 = "/nix/store/22222222222222222222222222222222-web-v2";

let dir: string;
let store: ObjectStore;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-asks-back-"));
  store = await openStore(`file://${dir}?fsync=false`);
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

/** When the `n`th rollout started: one a minute from 10:00. */
const at = (n: number) => new Date(Date.UTC(2026, 10, 25, 10, n)).toISOString();

function rollout(n: number, hosts: readonly RolloutHost[]): RolloutRecord {
  return {
    version: 1,
    id: n.toString(16).padStart(8, "0"),
    mode: "ssh",
    action: "switch",
    state: "partial",
    stopped: null,
    waves: [{ index: 1, kind: "main", hosts }],
    startedAt: at(n),
    updatedAt: at(n),
  };
}

const entry = (host: string, state: RolloutHost["state"]): RolloutHost => ({
  host,
  state,
  phase: null,
  system: V2,
  message: state === "unreachable" ? "no route to host" : null,
});

/** The fleet's cache key, which signs its deploys' rollout records. */
const KEY = generateSecretKey("asks-back-1");
const KEYS = [publicKeyOf(KEY)];
/** The plan with its hosts behind a rollout said, from the fleet's records as a plan reads them. */
async function planBehind(plan: DeployPlan): Promise<DeployPlan> {
  const records = await readPlanRecords(
    cache(),
    plan.hosts.map((h) => h.host),
  );
  try {
    return await withBehindRollouts(records, plan);
  } finally {
    await records?.close();
  }
}

/** The fleet's cache, as a fleet file gives it. */
const cache = () => ({
  url: `file://${dir}`,
  publicKeys: [formatPublicKey(publicKeyOf(KEY))],
  substituter: undefined,
});

/**
 * A record newer than the others that names web5 up to date on what it runs, and one that
 * undoes rollout 0 leaving web5: each unsigned, or signed by another key, as anyone who can
 * write the store's `status/rollouts/` could put there.
 */
async function forgedAsks(): Promise<SecretKey> {
  const stranger = generateSecretKey("stranger-1");
  await writeRollout(store, rollout(10, [{ ...entry("web5", "up-to-date"), system: V1 }]));
  await writeRollout(
    store,
    { ...rollout(11, [{ ...entry("web5", "confirmed"), system: V1 }]), undoes: "00000000" },
    stranger,
  );
  return stranger;
}

/** Rollout 0 skips `web5` as unreachable; rollouts 1…`others` deploy web3 alone. */
async function skippedThenOthers(others: number): Promise<void> {
  await writeRollout(
    store,
    rollout(0, [entry("web3", "confirmed"), entry("web5", "unreachable")]),
    KEY,
  );
  for (let n = 1; n <= others; n++)
    await writeRollout(store, rollout(n, [entry("web3", "confirmed")]), KEY);
}

/** web5's own record: it ran V1 when its deploy began at `startedAt`. */
function record(startedAt: string): StatusRecord {
  return {
    version: 1,
    host: "web5",
    mode: "ssh",
    channel: null,
    seq: null,
    desired: V1,
    current: V1,
    generation: 3,
    state: "success",
    phase: null,
    error: null,
    rolledBack: null,
    startedAt,
    updatedAt: startedAt,
  };
}

describe("the fleet's last ask, read back", () => {
  it(`finds a host a rollout skipped ${ASK_ROLLOUTS * 2 + 5} rollouts ago, and reads no further`, async () => {
    await skippedThenOthers(ASK_ROLLOUTS * 2 + 5);
    const { store: counted, counts } = countReads(store);
    const { asks, unjudged } = await readLastAsks(counted, ["web3", "web5"], KEYS, new Map());
    expect(asks.get("web5")).toMatchObject({ system: V2, entry: { state: "unreachable" } });
    expect(asks.get("web5")?.rollout.key).toBe(rolloutKey(new Date(at(0)), "00000000"));
    expect(asks.get("web3")?.rollout.startedAt).toBe(at(ASK_ROLLOUTS * 2 + 5));
    expect(unjudged).toEqual([]);
    // Every record once, the oldest included: two listings (20, then up to ASK_LOOKBACK).
    expect(counts).toMatchObject({ list: 2, get: ASK_ROLLOUTS * 2 + 6 });
  });

  it("stops at the host's own record: the rollouts before it are not read", async () => {
    await skippedThenOthers(ASK_ROLLOUTS * 3);
    const { store: counted, counts } = countReads(store);
    // web5 reported at rollout 45's start: what came before is its older word.
    const since = new Map([["web5", at(45)]]);
    const { asks, unjudged } = await readLastAsks(counted, ["web3", "web5"], KEYS, since);
    expect(asks.has("web5")).toBe(false);
    expect(unjudged).toEqual([]);
    expect(counts.get).toBe(ASK_ROLLOUTS);
  });

  it(`reads at most ${ASK_LOOKBACK} records; a host with an older record is not judged`, async () => {
    await skippedThenOthers(ASK_LOOKBACK + 4);
    const { store: counted, counts } = countReads(store);
    const older = await readLastAsks(counted, ["web5"], KEYS, new Map([["web5", at(0)]]));
    expect(older.asks.has("web5")).toBe(false);
    expect(older.unjudged).toEqual(["web5"]);
    expect(counts.get).toBe(ASK_LOOKBACK);
    // A host that never reported is not said in step by its record: nothing to warn of.
    expect((await readLastAsks(store, ["web5"], KEYS, new Map())).unjudged).toEqual([]);
  });

  it("reads no record past its byte budget, by the listing's sizes; a host with an older record is not judged", async () => {
    await skippedThenOthers(ASK_ROLLOUTS * 2);
    const listed = await listNewestRollouts(store, ASK_LOOKBACK);
    const size = listed[0]?.size ?? 0;
    expect(size).toBeGreaterThan(0);
    const { store: counted, counts } = countReads(store);
    const source = {
      list: (count: number) => listNewestRollouts(counted, count),
      read: ({ key }: { key: string }) => readAskedRecord(counted, key, KEYS),
    };
    // A budget of 25 records: the first listing's 20, then 5 of the next.
    const since = new Map([["web5", at(0)]]);
    const read = await readAsksBack(source, ["web5"], since, new Date(), size * 25 + size / 2);
    expect(read).toMatchObject({ unjudged: ["web5"], lookedBack: 25 });
    expect(read.asks.has("web5")).toBe(false);
    expect(counts.get).toBe(25);
    // The newest record is read whatever its size.
    const one = await readAsksBack(source, ["web5"], since, new Date(), 1);
    expect(one).toMatchObject({ unjudged: ["web5"], lookedBack: 1 });
  });

  it("the dashboard's watch reads each record once while its etag holds, and keeps the map", async () => {
    await skippedThenOthers(ASK_ROLLOUTS + 3);
    const { store: counted, counts } = countReads(store);
    const watch = new RolloutWatch(counted, KEYS);
    const first = await watch.asks(["web5"]);
    expect(first.asks.get("web5")?.entry.state).toBe("unreachable");
    expect(counts.get).toBe(ASK_ROLLOUTS + 4);
    const second = await watch.asks(["web5"]);
    expect(second.asks).toBe(first.asks);
    expect(counts.get).toBe(ASK_ROLLOUTS + 4);
  });
});

describe("status --stored", () => {
  let fleet: Fleet;
  beforeEach(() => {
    fleet = parseFleetValue(
      {
        cache: { url: `file://${dir}`, publicKeys: [formatPublicKey(publicKeyOf(KEY))] },
        hosts: {
          web3: { address: "192.0.2.3", system: V2 },
          web5: { address: "192.0.2.5", system: V2 },
        },
      },
      "rollout-asks-back.test.ts",
    );
  });

  it("says a host behind a rollout 30 rollouts ago, however many went to other hosts since", async () => {
    await writeStatus(store, record(at(-1)));
    await skippedThenOthers(30);
    const view = await readStatusView(fleet, fleet.hosts, { stored: true });
    const web5 = view.rows.find((r) => r.host === "web5");
    expect(web5).toMatchObject({ inStep: false, behindRollout: { rollout: "00000000" } });
    expect(view.warnings).toEqual([]);
  });

  it(`warns of a host whose record is older than the newest ${ASK_LOOKBACK} rollouts`, async () => {
    await writeStatus(store, record(at(-1)));
    await skippedThenOthers(ASK_LOOKBACK + 1);
    const view = await readStatusView(fleet, fleet.hosts, { stored: true });
    expect(view.warnings).toEqual([
      expect.stringMatching(
        new RegExp(
          `^web5: its record is older than the newest ${ASK_LOOKBACK} rollouts \\(a view reads the newest ${ASK_LOOKBACK} at most, and ${ASK_BYTES / 1024 / 1024} MiB of records\\), none of which names it: whether an older rollout left it behind is not judged`,
        ),
      ),
    ]);
  });

  it("names the rollout a host failed in, its state still its record's", async () => {
    await writeStatus(store, {
      ...record(at(1)),
      desired: V2,
      state: "failed",
      rolledBack: true,
      error: "health check failed",
    });
    await writeRollout(store, rollout(1, [entry("web5", "rolled-back")]), KEY);
    const view = await readStatusView(fleet, fleet.hosts, { stored: true });
    const web5 = view.rows.find((r) => r.host === "web5") as StoredRow;
    expect(web5).toMatchObject({ inStep: false, behindRollout: { rollout: "00000001" } });
    // It went back: status's STATE column and the dashboard both say so.
    expect(hostState(web5)).toBe("rolled-back");
    expect(formatStatusTable([web5])).toMatch(
      /^web5\s+\S+\s+\S+\s+\S+\s+rolled-back\s+failed in rollout 00000001;/m,
    );
  });
});

describe("rollout records not signed by the fleet's cache key", () => {
  it("ask nothing of status, the dashboard's watch or a plan: the host a signed rollout skipped stays behind, and status names them", async () => {
    await writeStatus(store, record(at(-1)));
    await skippedThenOthers(2);
    const stranger = await forgedAsks();
    const fleet = parseFleetValue(
      {
        cache: cache(),
        hosts: { web5: { address: "192.0.2.5", system: V2 } },
      },
      "rollout-asks-back.test.ts",
    );
    const view = await readStatusView(fleet, fleet.hosts, { stored: true });
    expect(view.rows[0]).toMatchObject({ inStep: false, behindRollout: { rollout: "00000000" } });
    expect(view.warnings).toEqual([
      "rollout records not to be believed were passed over: 0000000b (it is signed by key 'stranger-1', which is not in cache.publicKeys (one dropped from them, rotated or leaked, or a stranger's)), 0000000a (it is not signed); they ask nothing of their hosts (anyone who can write the store could have put them there): a deploy signs its record with the cache key it pushes with, and a key rotated (not leaked) may be listed in cache.publicKeys again (docs/keys.md)",
    ]);
    const watched = await new RolloutWatch(store, KEYS).asks(["web5"]);
    expect(watched.asks.get("web5")?.rollout.id).toBe("00000000");
    expect(watched.undone.size).toBe(0);
    expect(watched.disbelieved.map((d) => d.id)).toEqual(["0000000b", "0000000a"]);
    const plan = {
      hosts: [{ host: "web5", action: "activate", current: V1, desired: V2 }],
    } as unknown as DeployPlan;
    expect((await planBehind(plan)).hosts[0]?.behindRollout).toMatchObject({
      rollout: "00000000",
    });
    // Believed, they would have cleared it (what every view did before it weighed records).
    const all = await new RolloutWatch(store, [publicKeyOf(stranger)]).asks(["web5"]);
    expect(all.asks.get("web5")?.rollout.id).toBe("0000000b");
    expect(all.undone.get("web5")).toBeUndefined();
  });
});

describe("a plan's word on a host behind a rollout", () => {
  const plan = {
    hosts: [{ host: "web5", action: "activate", current: V1, desired: V2 }],
  } as unknown as DeployPlan;
  const behind = async () => (await planBehind(plan)).hosts[0]?.behindRollout;

  it("says it, as every view does, until the host's own newer record says otherwise", async () => {
    await skippedThenOthers(2);
    expect(await behind()).toMatchObject({ rollout: "00000000" });
    // web5 deployed since (its record, newer than rollout 0): it is behind it no longer.
    await writeStatus(store, record(at(3)));
    expect(await behind()).toBeUndefined();
    // A record older than the rollout is no newer word.
    await writeStatus(store, record(at(0).replace("10:00", "09:59")));
    expect(await behind()).toMatchObject({ rollout: "00000000" });
  });
});
