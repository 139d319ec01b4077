// The plan's survey completed from the records: a host on its desired system whose last deploy
// failed there without going back (a bake failed, its rollback never reached the host) is
// failed, so the plan activates it again; over a real directory store.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { FleetHost } from "../fleet/fleet.js";
import type { HostState } from "../fleet/plan.js";
import { formatPublicKey, generateSecretKey, publicKeyOf } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import type { RolloutHost, RolloutRecord } from "../status/rollout.js";
import { writeRollout } from "../status/rollout-store.js";
import { writeStatus } from "../status/status-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { withRecordedOutcomes } from "./plan-recorded-outcomes.js";
import { readPlanRecords } from "./plan-records.js";
import type { Survey } from "./survey.js";

/** The fleet's cache key, which signs its deploys' rollout records. */
const KEY = generateSecretKey("cache-1");
/** The survey completed from the fleet's records in the cache at `url`, read as a plan reads them. */
async function outcomes(url: string, hosts: readonly FleetHost[], found: Survey): Promise<Survey> {
  const records = await readPlanRecords(
    cacheAt(url),
    hosts.map((h) => h.name),
  );
  try {
    return await withRecordedOutcomes(records, hosts, () => V2, found);
  } finally {
    await records?.close();
  }
}

/** The fleet's cache at `url`, its key listed. */
const cacheAt = (url: string) => ({
  url,
  publicKeys: [formatPublicKey(publicKeyOf(KEY))],
  substituter: undefined,
});

const V1 = "/nix/store/11111111111111111111111111111111-web-v1" as StorePath;
const V2 = "/nix/store/22222222222222222222222222222222-web-v2" as StorePath;

let dir: string;
let store: ObjectStore;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-plan-failed-"));
  store = await openStore(`file://${dir}?fsync=false`);
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

const host = (name: string) => ({ name }) as FleetHost;
const reported = (current: StorePath): HostState => ({
  kind: "reported",
  current,
  generation: 2,
});
const survey = (states: HostState[]): Survey => ({
  states,
  pathInfos: new Map(),
  running: new Map(),
});

const entry = (name: string, state: RolloutHost["state"]): RolloutHost => ({
  host: name,
  state,
  phase: state === "failed" ? "bake" : null,
  system: V2,
  before: V1,
  message: state === "failed" ? "errors: 0.5 is above the maximum 0.1" : null,
});

const failedRecord = (name: string, rolledBack: boolean) => ({
  version: 1 as const,
  host: name,
  mode: "ssh" as const,
  channel: null,
  seq: null,
  desired: V2,
  current: V2,
  previous: V1,
  generation: 2,
  state: "failed" as const,
  phase: "bake" as const,
  error: "errors: 0.5 is above the maximum 0.1",
  rolledBack,
  startedAt: new Date(Date.now() - 60_000).toISOString(),
  updatedAt: new Date(Date.now() - 30_000).toISOString(),
});

describe("withRecordedOutcomes", () => {
  it("marks failed a host on its desired system whose last deploy failed there and did not go back", async () => {
    const at = new Date(Date.now() - 120_000).toISOString();
    const rollout: RolloutRecord = {
      version: 1,
      id: "0123456789ab",
      mode: "ssh",
      action: "switch",
      state: "failed",
      stopped: null,
      waves: [
        {
          index: 1,
          kind: "canary",
          hosts: [
            entry("a", "failed"),
            entry("b", "failed"),
            entry("c", "confirmed"),
            entry("e", "rolled-back"),
          ],
        },
      ],
      startedAt: at,
      updatedAt: at,
    };
    await writeRollout(store, rollout, KEY);
    await writeStatus(store, failedRecord("a", false) as never);
    // b failed and went back (then was put on v2 since, by hand): its record says so.
    await writeStatus(store, failedRecord("b", true) as never);
    // e ran v2 already (activated again) and failed: its rollback went back onto v2 itself.
    await writeStatus(store, { ...failedRecord("e", true), previous: V2 } as never);
    const hosts = ["a", "b", "c", "d", "e"].map(host);
    const found = survey([reported(V2), reported(V2), reported(V2), reported(V1), reported(V2)]);
    const out = await outcomes(`file://${dir}`, hosts, found);
    expect(out.states.map((s) => (s.kind === "reported" ? (s.failed ?? null) : s.kind))).toEqual([
      "errors: 0.5 is above the maximum 0.1",
      null,
      null,
      null,
      "errors: 0.5 is above the maximum 0.1",
    ]);
  });

  it("marks unbaked a host whose rollout's bake there was interrupted, or never ended as its deployer stopped", async () => {
    const at = (ago: number) => new Date(Date.now() - ago).toISOString();
    const bake = (state: "baking" | "interrupted" | "passed") => ({
      state,
      seconds: 600,
      interval: 30,
      analysis: [],
    });
    const baked = (name: string, state: RolloutHost["state"], b: ReturnType<typeof bake>) => ({
      ...entry(name, state),
      phase: state === "baking" ? ("bake" as const) : null,
      message: null,
      bake: b,
    });
    // Interrupted (Ctrl-C): a confirmed, passed, and a still-running rollout's baking host.
    const interrupted: RolloutRecord = {
      version: 1,
      id: "000000000001",
      mode: "ssh",
      action: "switch",
      state: "interrupted",
      stopped: null,
      waves: [
        {
          index: 1,
          kind: "canary",
          hosts: [
            baked("a", "confirmed", bake("interrupted")),
            baked("b", "confirmed", bake("passed")),
          ],
        },
      ],
      startedAt: at(7_200_000),
      updatedAt: at(7_100_000),
    };
    // Killed mid-bake: its record says running, written an hour ago.
    const killed: RolloutRecord = {
      ...interrupted,
      id: "000000000002",
      state: "running",
      waves: [{ index: 1, kind: "canary", hosts: [baked("c", "baking", bake("baking"))] }],
      startedAt: at(3_700_000),
      updatedAt: at(3_600_000),
    };
    // Baking now, its deployer at work.
    const live: RolloutRecord = {
      ...killed,
      id: "000000000003",
      waves: [{ index: 1, kind: "canary", hosts: [baked("d", "baking", bake("baking"))] }],
      startedAt: at(20_000),
      updatedAt: at(10_000),
    };
    for (const r of [interrupted, killed, live]) await writeRollout(store, r, KEY);
    const hosts = ["a", "b", "c", "d", "e"].map(host);
    // Each runs v2 at generation 5; v1, what it ran before, is generation 3 (4: another).
    const generations = [
      { generation: 3, path: V1 },
      { generation: 4, path: "/nix/store/44444444444444444444444444444444-other" },
      { generation: 5, path: V2 },
    ];
    const on = (current: StorePath): HostState => ({
      kind: "reported",
      current,
      generation: 5,
      generations,
    });
    const found = survey([on(V2), on(V2), on(V2), on(V2), on(V1)]);
    const out = await outcomes(`file://${dir}`, hosts, found);
    const unbaked = out.states.map((s) => (s.kind === "reported" ? (s.unbaked ?? null) : s.kind));
    expect(unbaked[0]).toEqual({
      rollout: "000000000001",
      why: "its bake was interrupted",
      before: V1,
      beforeGeneration: 3,
    });
    expect(unbaked[1]).toBeNull();
    expect(unbaked[2]).toMatchObject({ rollout: "000000000002", before: V1, beforeGeneration: 3 });
    expect((unbaked[2] as { why: string }).why).toMatch(
      /^its bake never ended: its deploy stopped writing its record at /,
    );
    // d's deployer bakes it now; e runs another system than the rollout gave.
    expect(unbaked.slice(3)).toEqual([null, null]);
  });

  it("leaves the survey as it was without a cache, or with a store that names no failure", async () => {
    const found = survey([reported(V2)]);
    expect(await withRecordedOutcomes(undefined, [host("a")], () => V2, found)).toBe(found);
    expect(await outcomes(`file://${join(dir, "absent")}`, [host("a")], found)).toBe(found);
  });
});
