import { describe, expect, it } from "vitest";
import { ANALYSIS_DEFAULTS } from "../fleet/bake.js";
import type { PausePolicy } from "../fleet/pause-policy.js";
import { type DeployPlan, type HostPlan, planDeploy } from "../fleet/plan.js";
import type { StorePath } from "../nix/store-path.js";
import { formatPlan } from "../ui/plan-format.js";
import { planAsRun } from "./assemble-plan.js";

const v1 = `/nix/store/${"1".repeat(32)}-web-v1` as StorePath;
const v2 = `/nix/store/${"2".repeat(32)}-web-v2` as StorePath;
const bake = {
  seconds: 60,
  interval: 10,
  analysis: [
    { name: "errors", query: 'rate(e{host="{name}"}[30s])', max: 0.1, ...ANALYSIS_DEFAULTS },
  ],
};

const PAUSE: PausePolicy = { after: ["canary"], timeout: 60, onTimeout: "abort" };

/** Four hosts that change, one that runs its system already; a canary, then waves of two. */
function plan(): DeployPlan {
  const names = ["web1", "web2", "web3", "web4", "web5"];
  return planDeploy({
    action: "switch",
    targets: names.map((host) => ({
      host,
      desired: v2,
      state: { kind: "reported", current: host === "web5" ? v2 : v1, generation: 1 },
      bake,
    })),
    pathInfos: new Map([v1, v2].map((path) => [path, { path, narSize: 10, references: [] }])),
    rollout: { canary: 1, parallel: 2 },
  });
}

describe("planAsRun", () => {
  it("keeps the waves, pauses and bakes of a deploy that watches its rollout", () => {
    const watched = planAsRun(plan(), { pause: PAUSE, maxFailures: 1 }, {});
    expect(watched.waves.map((w) => w.hosts)).toEqual([["web1"], ["web2", "web3"], ["web4"]]);
    expect(watched.pauses).toHaveLength(1);
    expect(watched.hosts.filter((h: HostPlan) => h.bake !== undefined)).toHaveLength(4);
    expect(watched.bakeNotes).toBeDefined();
    expect(watched.atOnce).toBeUndefined();
    // The failure budget, said under the waves.
    expect(watched.maxFailures).toBe(1);
    expect(formatPlan(watched)).toContain(
      "  no new wave once more than 1 host fails, or a canary does (--max-failures 1)",
    );
    expect(formatPlan(planAsRun(plan(), { maxFailures: 0 }, {}))).toContain(
      "  no new wave once a host fails, or a canary does (--max-failures 0)",
    );
  });

  it("--async: one wave of every changing host, no pause or bake, and the plan says so", () => {
    const published = planAsRun(
      plan(),
      { pause: PAUSE, maxFailures: 0 },
      {
        async: true,
      },
    );
    expect(published.atOnce).toBe(true);
    expect(published.waves).toEqual([
      { wave: 1, kind: "main", hosts: ["web1", "web2", "web3", "web4"] },
    ]);
    expect(published.pauses).toBeUndefined();
    expect(published.maxFailures).toBeUndefined();
    expect(published.bakeNotes).toBeUndefined();
    expect(published.hosts.every((h: HostPlan) => h.bake === undefined)).toBe(true);
    const text = formatPlan(published);
    expect(text).toContain(
      "waves: none (--async): one release names every host at once, and nothing is watched: no canary, pause, bake or failure limit",
    );
    expect(text).not.toContain("(canary)");
    expect(text).not.toContain("bake (");
  });
});
