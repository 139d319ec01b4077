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

  it("says a range cannot keep out what an offset reads, and a bake shorter than its interval measures once", () => {
    const bake = (query: string, seconds: number, interval: number) => ({
      seconds,
      interval,
      analysis: [{ name: "errors", query, max: 0.1, failureLimit: 0, noData: "fail" as const }],
    });
    const planOf = (b: ReturnType<typeof bake>) => {
      const hosts = [{ host: "web1", bake: b }];
      return { hosts, bakeNotes: bakeReachNotes(hosts) } as never;
    };
    expect(formatPlanBakes(planOf(bake("rate(x[1m] offset 30s)", 30, 2))).at(-1)).toBe(
      "      it reads 90s back, more than the interval × (failureLimit + 1) = 2s: its first measurements may count what a host ran before its switch; its offset alone reads 30s back, so no range keeps that out: a smaller offset does",
    );
    expect(formatPlanBakes(planOf(bake("rate(x[1m] offset 5s)", 120, 10))).at(-1)).toBe(
      "      it reads 65s back, more than the interval × (failureLimit + 1) = 10s: its first measurements may count what a host ran before its switch; a range of at most 5s (with its offset of 5s), or a failureLimit of 6, keeps that out",
    );
    expect(formatPlanBakes(planOf(bake("up", 30, 600)))[1]).toBe(
      "  web1: 30s, checks and queries once, at its end; a host that fails rolls its wave back",
    );
  });

  it("names the hosts whose baseline queries will compare with nothing: their role in one wave", () => {
    const bake = {
      seconds: 30,
      interval: 5,
      analysis: [{ name: "ratio", query: "x", baseline: { tolerance: 1.5 }, ...ANALYSIS_DEFAULTS }],
    };
    const hosts = ["web1", "web2", "web3"].map((host) => ({ host, role: "@web", bake }));
    // The whole role: the canary is compared with the hosts of the later wave.
    const whole = formatPlanBakes({
      hosts,
      waves: [
        { wave: 1, kind: "canary", hosts: ["web1"] },
        { wave: 2, kind: "main", hosts: ["web2", "web3"] },
      ],
    } as never);
    expect(whole.join("\n")).not.toContain("no baseline");
    // `--on web1`: the canary alone.
    const alone = formatPlanBakes({
      hosts: [hosts[0]],
      waves: [{ wave: 1, kind: "canary", hosts: ["web1"] }],
    } as never);
    expect(alone.at(-1)).toBe(
      "  web1: no host of their role is in another wave of this rollout, so ratio compares with no baseline and passes: select more of the role, or give a `max`",
    );
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
