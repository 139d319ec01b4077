// The plan's survey completed from the records: a host on its desired system whose last deploy
// failed there without going back (a bake failed, its rollback never reached the host) is
// failed, so the plan activates it again; over a real directory store.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { FleetHost } from "../fleet/fleet.js";
import type { HostState } from "../fleet/plan.js";
import { generateSecretKey } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import type { RolloutHost, RolloutRecord } from "../status/rollout.js";
import { writeRollout } from "../status/rollout-store.js";
import { writeStatus } from "../status/status-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { withRecordedFailures } from "./plan-failed-records.js";
import type { Survey } from "./survey.js";

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

describe("withRecordedFailures", () => {
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
          hosts: [entry("a", "failed"), entry("b", "failed"), entry("c", "confirmed")],
        },
      ],
      startedAt: at,
      updatedAt: at,
    };
    await writeRollout(store, rollout, generateSecretKey("cache-1"));
    await writeStatus(store, failedRecord("a", false) as never);
    // b failed and went back (then was put on v2 since, by hand): its record says so.
    await writeStatus(store, failedRecord("b", true) as never);
    const hosts = ["a", "b", "c", "d"].map(host);
    const found = survey([reported(V2), reported(V2), reported(V2), reported(V1)]);
    const out = await withRecordedFailures(`file://${dir}`, hosts, () => V2, found);
    expect(out.states.map((s) => (s.kind === "reported" ? (s.failed ?? null) : s.kind))).toEqual([
      "errors: 0.5 is above the maximum 0.1",
      null,
      null,
      null,
    ]);
  });

  it("leaves the survey as it was without a cache, or with a store that names no failure", async () => {
    const found = survey([reported(V2)]);
    expect(await withRecordedFailures(undefined, [host("a")], () => V2, found)).toBe(found);
    expect(
      await withRecordedFailures(`file://${join(dir, "absent")}`, [host("a")], () => V2, found),
    ).toBe(found);
  });
});
