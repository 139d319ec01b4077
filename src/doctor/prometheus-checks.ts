// doctor's checks of the Prometheus a bake's analysis asks: that it answers a query, and that
// each query of each role's analysis answers a value for the selected hosts that have it (a
// query with no data fails a canary's bake under `noData: fail`). Bounded: a few hosts at once,
// each query within the fleet's prometheus.timeout.

import { conditionText, hostQuery, judgeSample } from "../fleet/analysis.js";
import type { AnalysisQuery } from "../fleet/bake.js";
import type { Fleet, FleetHost } from "../fleet/fleet.js";
import { hostPolicy } from "../fleet/host-policy.js";
import type { MetricsSource } from "../metrics/prometheus.js";
import { namesShown } from "../util/names-shown.js";
import { mapLimit } from "../util/pool.js";
import { type Check, fail, ok, warn } from "./check.js";

/** Queries asked at once. */
const QUERY_JOBS = 8;
/** Hosts asked per query at most: the rest are taken to answer alike. */
const HOSTS_PER_QUERY = 50;
/** Hosts without data a check names. */
const NAMED = 5;

/**
 * The checks; `metrics`: the fleet's Prometheus opened with its token, or why it could not be
 * (its token file), or undefined when the fleet names none.
 */
export async function checkPrometheus(
  fleet: Pick<Fleet, "policy" | "policies" | "prometheus">,
  hosts: readonly FleetHost[],
  metrics: MetricsSource | { readonly unreadable: string; readonly hint?: string } | undefined,
): Promise<Check[]> {
  if (fleet.prometheus === undefined) return [];
  if (metrics === undefined || "unreadable" in metrics) {
    return [
      fail(
        "prometheus",
        "prometheus token",
        metrics?.unreadable ?? "not opened",
        metrics?.hint ?? "fix prometheus.bearerTokenFile: a file of mode 0600 holding the token",
      ),
    ];
  }
  const answer = await metrics.query("vector(1)");
  if (answer.value !== 1) {
    return [
      fail(
        "prometheus",
        "prometheus answers",
        answer.value === null ? answer.why : `vector(1) answered ${answer.value}`,
        `check prometheus.url (${metrics.url}), that it is Prometheus' HTTP API, and its bearer token`,
      ),
    ];
  }
  const checks = [ok("prometheus", "prometheus answers", `${metrics.url}/api/v1/query`)];
  // Each query, with the hosts that measure it (a query stated once for a role is asked once).
  const byQuery = new Map<string, { query: AnalysisQuery; hosts: FleetHost[] }>();
  for (const host of hosts) {
    for (const query of hostPolicy(fleet.policy, fleet.policies, host).analysis ?? []) {
      const key = JSON.stringify(query);
      const entry = byQuery.get(key) ?? { query, hosts: [] };
      entry.hosts.push(host);
      byQuery.set(key, entry);
    }
  }
  const results = await mapLimit([...byQuery.values()], QUERY_JOBS, async ({ query, hosts }) => {
    const asked = hosts.slice(0, HOSTS_PER_QUERY);
    const answers = await mapLimit(asked, QUERY_JOBS, async (h) => ({
      host: h.name,
      answer: await metrics.query(hostQuery(query.query, h)),
    }));
    return { query, asked, total: hosts.length, answers };
  });
  for (const { query, asked, total, answers } of results) {
    const missing = answers.filter((a) => a.answer.value === null);
    const name = `analysis ${query.name}`;
    const of = `${asked.length === total ? "" : `the first ${asked.length} of `}${total} host(s)`;
    if (missing.length === 0) {
      // A value that fails the condition now fails a bake's measurement now (a baseline's
      // comparison waits for the deploy: it needs the canary's new system).
      const failing = answers.flatMap((a) => {
        const judged = judgeSample(query, { value: a.answer.value });
        return judged.verdict === "fail" ? [{ host: a.host, why: judged.why }] : [];
      });
      const [worst] = failing;
      checks.push(
        worst === undefined
          ? ok("prometheus", name, `answers a value for ${of}`)
          : warn(
              "prometheus",
              name,
              `answers a value for ${of}; now ${worst.why} for ${namesShown(
                failing.map((f) => f.host),
                NAMED,
              )} (${failing.length} of ${of})`,
              `a bake that measured this now would count a failed measurement for ${failing.length === 1 ? "that host" : "those hosts"} (${query.failureLimit} tolerated): look at what the query (${query.query}) measures there, or at its condition (${conditionText(query)})`,
            ),
      );
      continue;
    }
    const first = missing[0];
    const why = first !== undefined && first.answer.value === null ? first.answer.why : "";
    const named = namesShown(
      missing.map((m) => m.host),
      NAMED,
    );
    const detail = `no data for ${named} (${missing.length} of ${of}): ${why}`;
    const fix =
      first?.answer.value === null && first.answer.nothingMeasured === true
        ? `check the query (${query.query}) in Prometheus for those hosts: its labels, and that Prometheus scrapes them`
        : `the answer is at fault, as said: the query (${query.query}) must answer one value per host, from Prometheus' own API at prometheus.url (${metrics.url})`;
    checks.push(
      query.noData === "fail"
        ? fail("prometheus", name, `${detail}; with noData fail, their bake would fail`, fix)
        : warn(
            "prometheus",
            name,
            `${detail}; with noData wait, a bake with no data at all fails`,
            fix,
          ),
    );
  }
  return checks;
}
