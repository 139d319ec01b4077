// The rollout engine at the plan's pauses, over a scripted delivery: it waits after the wave a
// pause follows, before the next; resume goes on, anything else stops with the rest not started.
import { describe, expect, it } from "vitest";
import { type Delivery, type DeployRequest, deployEachHost } from "../delivery/delivery.js";
import { type FleetHost, POLICY_DEFAULTS } from "../fleet/fleet.js";
import type { PlannedPause } from "../fleet/pause-policy.js";
import type { DeployPlan, HostPlan } from "../fleet/plan.js";
import type { StorePath } from "../nix/store-path.js";
import type { DeployEvent } from "./events.js";
import { type PauseVerdict, runRollout } from "./run-rollout.js";

const PATH = "/nix/store/00000000000000000000000000000000-system" as StorePath;
const NAMES = ["c1", "m1", "m2"];

const host = (name: string): FleetHost => ({
  name,
  tags: [],
  address: "10.0.0.1",
  delivery: "ssh",
  sshHost: undefined,
  system: { kind: "store-path", path: PATH },
});

const request = (): DeployRequest => ({
  path: PATH,
  action: "switch",
  substituters: [],
  trustedKeys: [],
  commandChecks: [],
  httpChecks: [],
  confirmTimeout: 30,
  activationTimeout: POLICY_DEFAULTS.activationTimeout,
});

function plan(pauses: PlannedPause[]): DeployPlan {
  const hosts = NAMES.map(
    (name): HostPlan => ({
      host: name,
      action: "activate",
      current: undefined,
      generation: undefined,
      desired: PATH,
      transfer: { paths: 0, bytes: 0 },
      transferBasis: "whole-closure",
      error: undefined,
    }),
  );
  return {
    action: "switch",
    hosts,
    counts: { activate: 3, skip: 0, unreachable: 0 },
    changes: 3,
    totals: { paths: 0, bytes: 0 },
    distinct: { paths: 0, bytes: 0 },
    waves: [
      { wave: 1, kind: "canary", hosts: ["c1"] },
      { wave: 2, kind: "main", hosts: ["m1"] },
      { wave: 3, kind: "main", hosts: ["m2"] },
    ],
    pauses,
  };
}

const at = (afterWave: number): PlannedPause => ({
  afterWave,
  kind: afterWave === 1 ? "canary" : "main",
  timeout: 60,
  onTimeout: "abort",
});

async function roll(pauses: PlannedPause[], answer: (p: PlannedPause) => PauseVerdict) {
  const log: string[] = [];
  const delivery: Delivery = {
    status: async () => ({ reachable: false, error: "unused" }),
    rollbackHosts: async () => [],
    deployWave: (wave, emit) =>
      deployEachHost(wave, emit, async (h) => {
        log.push(`deploy ${h.name}`);
        return { status: "activated", generation: 2, previous: undefined };
      }),
  };
  const events: DeployEvent[] = [];
  const results = await runRollout({
    plan: plan(pauses),
    hosts: NAMES.map(host),
    policy: { maxFailures: 0 },
    delivery,
    requests: { get: request },
    emit: (e) => events.push(e),
    pause: async (p) => {
      log.push(`pause after ${p.afterWave}`);
      return answer(p);
    },
  });
  const status = Object.fromEntries(
    results.map((r) => [
      r.host,
      r.outcome.status === "skipped" ? r.outcome.reason : r.outcome.status,
    ]),
  );
  return { log, status, events };
}

describe("runRollout at the plan's pauses", () => {
  it("waits after the canary before the next wave; resume goes on", async () => {
    const r = await roll([at(1)], () => ({ go: true }));
    expect(r.log).toEqual(["deploy c1", "pause after 1", "deploy m1", "deploy m2"]);
    expect(r.status).toEqual({ c1: "activated", m1: "activated", m2: "activated" });
  });

  it("stops at an answer that is not resume: the later waves are not started, and why", async () => {
    const r = await roll([at(1), at(2)], (p) =>
      p.afterWave === 2 ? { go: false, reason: "aborted by ops" } : { go: true },
    );
    expect(r.log).toEqual(["deploy c1", "pause after 1", "deploy m1", "pause after 2"]);
    expect(r.status).toEqual({ c1: "activated", m1: "activated", m2: "not-started" });
    expect(r.events.find((e) => e.type === "stopped")).toEqual({
      type: "stopped",
      reason: "aborted by ops",
      notStarted: ["m2"],
    });
  });

  it("never waits after the last wave", async () => {
    const r = await roll([at(3)], () => ({ go: false, reason: "never asked" }));
    expect(r.log).toEqual(["deploy c1", "deploy m1", "deploy m2"]);
  });
});
