import { describe, expect, it } from "vitest";
import { parseFleetValue } from "./fleet-file.js";
import { hostPolicy } from "./host-policy.js";

const hosts = {
  web1: { system: "path:.#web", address: "10.0.0.2", tags: ["web"] },
  db1: { system: "path:.#db", address: "10.0.0.3", tags: ["db"] },
};

const errors = { name: "errors", query: 'rate(e{host="{name}"}[1m])', max: 0.05 };

function problemsOf(doc: Record<string, unknown>): string[] {
  try {
    parseFleetValue(doc, "nixship.json");
    return [];
  } catch (err) {
    return (err as { problems: { path: (string | number)[]; message: string }[] }).problems.map(
      (p) => `${p.path.join(".")}: ${p.message}`,
    );
  }
}

describe("bake and analysis in the fleet file", () => {
  it("reads a role's bake and analysis, with defaults, and the fleet's prometheus", () => {
    const fleet = parseFleetValue(
      {
        prometheus: { url: "https://prometheus:9090/", bearerTokenFile: "prom.token" },
        policies: { "@web": { bake: { seconds: 60 }, analysis: [errors] } },
        hosts,
      },
      "nixship.json",
    );
    expect(fleet.prometheus).toEqual({
      url: "https://prometheus:9090",
      bearerTokenFile: "prom.token",
      timeout: 10,
    });
    const web = hostPolicy(fleet.policy, fleet.policies, fleet.hosts[0] as never);
    expect(web.bake).toEqual({ seconds: 60, interval: 10 });
    expect(web.analysis).toEqual([{ ...errors, failureLimit: 0, noData: "fail" }]);
    const db = hostPolicy(fleet.policy, fleet.policies, fleet.hosts[1] as never);
    expect(db.bake).toBeUndefined();
  });

  it("refuses a bearer token over plain http to another machine; takes it over https or to a loopback address", () => {
    const withToken = (url: string) =>
      problemsOf({ prometheus: { url, bearerTokenFile: "prom.token" }, hosts });
    expect(withToken("http://prometheus.internal:9090")).toEqual([
      'prometheus.url: is plain http to prometheus.internal, which would carry the bearer token of "bearerTokenFile" in clear: use https:// (plain http only to a loopback address, such as an SSH tunnel\'s end)',
    ]);
    expect(withToken("https://prometheus.internal:9090")).toEqual([]);
    expect(withToken("http://127.0.0.1:9090")).toEqual([]);
    expect(withToken("http://[::1]:9090")).toEqual([]);
    expect(withToken("http://localhost:9090")).toEqual([]);
    // Without a token, plain http carries nothing secret.
    expect(problemsOf({ prometheus: { url: "http://prometheus.internal:9090" }, hosts })).toEqual(
      [],
    );
  });

  it("names every wrong key by its path", () => {
    expect(
      problemsOf({
        prometheus: { url: "http://user:secret@prometheus:9090" },
        policies: {
          "@web": {
            bake: { seconds: 10, interval: 0 },
            analysis: [
              { name: "errors", query: "x" },
              { ...errors, baseline: { tolerance: 0.5 }, noData: "skip" },
              { ...errors, min: 1 },
            ],
          },
        },
        hosts,
      }),
    ).toEqual([
      "policies.@web.bake.interval: must be a whole number from 1 to 3600 (got 0)",
      'policies.@web.analysis.0: needs a condition: "max", "min" or "baseline"',
      "policies.@web.analysis.1.baseline.tolerance: must be at least 1 (a canary at its baseline's value must pass; got 0.5)",
      'policies.@web.analysis.1.noData: must be one of fail, wait (got "skip")',
      'policies.@web.analysis.1.name: "errors" names another query of this list too',
      'policies.@web.analysis.2.min: is above "max" (1 > 0.05): no value could pass',
      'policies.@web.analysis.2.name: "errors" names another query of this list too',
      'prometheus.url: must hold no credentials: put a bearer token in a file named by "bearerTokenFile"',
    ]);
  });

  it("needs a prometheus for an analysis, and a bake on every host that has one", () => {
    expect(problemsOf({ policy: { analysis: [errors] }, hosts })).toEqual([
      'policy.analysis: asks Prometheus, but the fleet has no "prometheus" (its "url")',
      'policy.analysis: is measured during a bake, but web1, db1 bake for 0 seconds: give them a "bake" ({"seconds": …})',
    ]);
  });

  it("refuses a query that reads back further than a host's bake lasts, naming it, the hosts and the fix", () => {
    const prometheus = { url: "http://prometheus:9090" };
    expect(
      problemsOf({
        prometheus,
        policy: { bake: { seconds: 20 }, analysis: [errors, { ...errors, name: "ok" }] },
        policies: { "@db": { bake: { seconds: 300 } } },
        hosts: {
          ...hosts,
          web2: { ...hosts.web1, address: "10.0.0.4" },
        },
      }).concat(
        problemsOf({
          prometheus,
          policy: {
            bake: { seconds: 60 },
            analysis: [{ ...errors, query: 'rate(e{host="{name}"}[1m] offset 30s)' }],
          },
          hosts,
        }),
      ),
    ).toEqual([
      "policy.analysis.0.query: reads 60s back (its longest range plus its offset), longer than the 20s bake of web1, web2: no measurement would read the new system alone, and what the previous system served could pass it; bake at least 60 seconds, or read back at most 20",
      "policy.analysis.1.query: reads 60s back (its longest range plus its offset), longer than the 20s bake of web1, web2: no measurement would read the new system alone, and what the previous system served could pass it; bake at least 60 seconds, or read back at most 20",
      "policy.analysis.0.query: reads 90s back (its longest range plus its offset), longer than the 60s bake of web1, db1: no measurement would read the new system alone, and what the previous system served could pass it; bake at least 90 seconds, or read back at most 60",
    ]);
    // A bake as long as the reach: its last measurement reads the new system alone.
    expect(
      problemsOf({ prometheus, policy: { bake: { seconds: 60 }, analysis: [errors] }, hosts }),
    ).toEqual([]);
  });

  it("needs the reach of a query that names a recording rule, and judges its bake by it", () => {
    const prometheus = { url: "http://prometheus:9090" };
    const rule = { name: "errors", query: 'max(job:errors:rate5m{host="{name}"})', max: 0.05 };
    const fleet = (analysis: Record<string, unknown>, seconds = 600) =>
      problemsOf({ prometheus, policy: { bake: { seconds }, analysis: [analysis] }, hosts });
    expect(fleet(rule)).toEqual([
      "policy.analysis.0.query: names the recording rule job:errors:rate5m, whose range is in the rule, not in the query: give \"reach\", the seconds it reads back (a rule over rate(...[5m]) reads 300; 0 for one over instants), so that no measurement is taken for the new system's while it may still read the previous one's",
    ]);
    expect(fleet({ ...rule, reach: 300 })).toEqual([]);
    expect(fleet({ ...rule, reach: 0 })).toEqual([]);
    expect(fleet({ ...rule, reach: 300 }, 120)).toEqual([
      "policy.analysis.0.query: reads 300s back (its longest range plus its offset), longer than the 120s bake of web1, db1: no measurement would read the new system alone, and what the previous system served could pass it; bake at least 300 seconds, or read back at most 120",
    ]);
    expect(fleet({ ...rule, reach: -1 })).toEqual([
      "policy.analysis.0.reach: must be a whole number from 0 to 86400 (got -1)",
    ]);
  });

  it("refuses a bake that would measure more than 360 times", () => {
    expect(problemsOf({ policy: { bake: { seconds: 3600, interval: 5 } }, hosts })).toEqual([
      "policy.bake.interval: measures 720 times in 3600s; a bake measures at most 360 times (a longer interval)",
    ]);
  });

  it("refuses a placeholder no host fills in (a typo would find no series on every host)", () => {
    expect(
      problemsOf({
        prometheus: { url: "http://prometheus:9090" },
        policy: {
          bake: { seconds: 60 },
          analysis: [{ ...errors, query: 'rate(e{host="{hostname}"}[1m])' }],
        },
        hosts,
      }),
    ).toEqual([
      "policy.analysis.0.query: holds {hostname}, which no host fills in: the placeholders are {name} and {address}",
    ]);
  });

  it("refuses a comparison with the baseline whose query names no host (it would always pass)", () => {
    const fleet = (query: string) => ({
      prometheus: { url: "http://prometheus:9090" },
      policy: {
        bake: { seconds: 60 },
        analysis: [{ name: "errors", query, baseline: { tolerance: 1.5 } }],
      },
      hosts,
    });
    expect(problemsOf(fleet("sum(rate(e[1m]))"))).toEqual([
      "policy.analysis.0.query: is compared with its baseline, but names no host ({name} or {address}): the host and its baseline would ask the same query, and every value would pass; select the host's series with a placeholder",
    ]);
    expect(problemsOf(fleet('rate(e{instance="{address}:9100"}[1m])'))).toEqual([]);
  });
});
