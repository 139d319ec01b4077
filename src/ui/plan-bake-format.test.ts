import { describe, expect, it } from "vitest";
import { bakeReachNotes } from "../fleet/analysis.js";
import { ANALYSIS_DEFAULTS } from "../fleet/bake.js";
import { formatPlanBakes } from "./plan-bake-format.js";

describe("formatPlanBakes", () => {
  it("says each role's bake and its queries, hosts alike on one line", () => {
    const bake = {
      seconds: 120,
      interval: 10,
      analysis: [
        { name: "errors", query: 'errors{host="{name}"}', max: 0.05, ...ANALYSIS_DEFAULTS },
        {
          name: "latency",
          query: 'p99{host=\n"{name}"}',
          baseline: { tolerance: 1.5 },
          failureLimit: 2,
          noData: "wait" as const,
        },
      ],
    };
    const hosts = ["web1", "web2"].map((host) => ({ host, role: "@web", bake }));
    expect(formatPlanBakes({ hosts: [...hosts, { host: "db1" }] as never })).toEqual([
      "bake (after each wave's confirmation, before the next wave):",
      "  @web: web1, web2: 120s, checks and queries every 10s; a host that fails rolls its wave back",
      '    errors: errors{host="{name}"} is at most 0.05; no data fails',
      '    latency: p99{host= "{name}"} is at most 1.5 × the baseline, 2 failed measurements tolerated; no data waits',
    ]);
    expect(formatPlanBakes({ hosts: [{ host: "db1" }] as never })).toEqual([]);
    const one = { ...bake, analysis: [{ ...bake.analysis[1], failureLimit: 1 }] };
    expect(
      formatPlanBakes({ hosts: [{ host: "web1", role: "@web", bake: one }] as never }),
    ).toContain(
      '    latency: p99{host= "{name}"} is at most 1.5 × the baseline, 1 failed measurement tolerated; no data waits',
    );
  });

  it("notes a query that may read what a host ran before its switch, and what keeps it out", () => {
    const query = 'rate(x{host="{name}"}[4s])';
    const bake = (failureLimit: number) => ({
      seconds: 20,
      interval: 1,
      analysis: [{ name: "errors", query, max: 0.1, failureLimit, noData: "fail" as const }],
    });
    const planOf = (failureLimit: number) => {
      const hosts = [{ host: "web1", bake: bake(failureLimit) }];
      return { hosts, bakeNotes: bakeReachNotes(hosts) } as never;
    };
    expect(formatPlanBakes(planOf(0))).toEqual([
      "bake (after each wave's confirmation, before the next wave):",
      "  web1: 20s, checks and queries every 1s; a host that fails rolls its wave back",
      `    errors: ${query} is at most 0.1; no data fails`,
      "      it reads 4s back, more than the interval × (failureLimit + 1) = 1s: its first measurements may count what a host ran before its switch; a range of at most 1s, or a failureLimit of 3, keeps that out",
    ]);
    expect(formatPlanBakes(planOf(3))).toHaveLength(3);
  });

  it("says that agent hosts' command checks are not repeated during the bake", () => {
    const bake = { seconds: 30, interval: 5, analysis: [] };
    const checks = { http: [], commands: [{ run: "true", timeout: 5 }] };
    const lines = formatPlanBakes({
      hosts: [
        { host: "a1", bake, checks, pinning: { pinned: true, by: "agent" } },
        { host: "s1", bake, checks, pinning: { pinned: false, activator: false } },
      ],
    } as never);
    expect(lines.at(-1)).toBe(
      "  a1: agent hosts: their command checks run at activation only, not again during the bake (HTTP checks and the analysis are repeated)",
    );
  });
});
