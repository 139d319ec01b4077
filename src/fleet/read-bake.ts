// The fleet file's bake keys: a role's `bake` and `analysis` (in `policy` and `policies`), and
// the fleet's `prometheus`, each problem named by its JSON path.

import { isLoopback } from "../util/listen-address.js";
import { shownUrl } from "../util/url-credentials.js";
import {
  analysisReach,
  QUERY_PLACEHOLDERS,
  recordingRulesIn,
  unknownPlaceholders,
} from "./analysis.js";
import {
  ANALYSIS_DEFAULTS,
  type AnalysisQuery,
  BAKE_DEFAULTS,
  type BakePolicy,
  MAX_ANALYSIS_QUERIES,
  MAX_BAKE_ROUNDS,
  MAX_BAKE_SECONDS,
  NO_DATA_RULES,
  type NoDataRule,
} from "./bake.js";
import {
  type FleetHost,
  PROMETHEUS_DEFAULTS,
  type PrometheusSettings,
  type RolloutPolicy,
} from "./fleet.js";
import { FLEET_KEYS } from "./fleet-keys.js";
import { hostPolicy, type PolicyRule, rulesFor } from "./host-policy.js";
import {
  got,
  isJsonObject,
  type Problems,
  readArray,
  readInteger,
  readObject,
  readString,
} from "./json-check.js";
import type { JsonPath } from "./json-path.js";

/** A query's name: it names the query in events and records. */
export const ANALYSIS_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
/** The longest query a role may state. */
export const MAX_QUERY_LENGTH = 4000;

/** A policy entry's `bake` and `analysis`, those it states. */
export function readBakeKeys(
  entry: Record<string, unknown>,
  path: JsonPath,
  problems: Problems,
): { bake?: BakePolicy; analysis?: AnalysisQuery[] } {
  const bake =
    entry.bake === undefined ? undefined : readBake(entry.bake, [...path, "bake"], problems);
  const analysis =
    entry.analysis === undefined
      ? undefined
      : readAnalysis(entry.analysis, [...path, "analysis"], problems);
  return {
    ...(bake === undefined ? {} : { bake }),
    ...(analysis === undefined ? {} : { analysis }),
  };
}

/** `bake`: `{ "seconds": 120, "interval": 10 }`. */
export function readBake(
  value: unknown,
  path: JsonPath,
  problems: Problems,
): BakePolicy | undefined {
  const bake = readObject(value, path, problems, FLEET_KEYS.bake);
  if (bake === undefined || bake.seconds === undefined) return undefined;
  const seconds = readInteger(bake.seconds, [...path, "seconds"], problems, {
    min: 0,
    max: MAX_BAKE_SECONDS,
  });
  const interval =
    bake.interval === undefined
      ? BAKE_DEFAULTS.interval
      : readInteger(bake.interval, [...path, "interval"], problems, { min: 1, max: 3600 });
  if (seconds === undefined || interval === undefined) return undefined;
  if (Math.ceil(seconds / interval) > MAX_BAKE_ROUNDS) {
    problems.add(
      [...path, "interval"],
      `measures ${Math.ceil(seconds / interval)} times in ${seconds}s; a bake measures at most ${MAX_BAKE_ROUNDS} times (a longer interval)`,
    );
    return undefined;
  }
  return { seconds, interval };
}

/** `analysis`: a list of queries, each with a name, a PromQL query and a condition. */
export function readAnalysis(
  value: unknown,
  path: JsonPath,
  problems: Problems,
): AnalysisQuery[] | undefined {
  const items = readArray(value, path, problems);
  if (items === undefined) return undefined;
  if (items.length > MAX_ANALYSIS_QUERIES) {
    return problems.add(path, `holds ${items.length} queries; at most ${MAX_ANALYSIS_QUERIES}`);
  }
  const names = new Set<string>();
  const queries: AnalysisQuery[] = [];
  items.forEach((item, i) => {
    const query = readQuery(item, [...path, i], problems);
    const name = isJsonObject(item) && typeof item.name === "string" ? item.name : undefined;
    if (name !== undefined && names.has(name)) {
      problems.add([...path, i, "name"], `"${name}" names another query of this list too`);
    }
    if (name !== undefined) names.add(name);
    if (query !== undefined) queries.push(query);
  });
  return queries;
}

function readQuery(value: unknown, path: JsonPath, problems: Problems): AnalysisQuery | undefined {
  const entry = readObject(value, path, problems, FLEET_KEYS.analysisQuery);
  if (entry === undefined) return undefined;
  const name =
    entry.name === undefined
      ? undefined
      : readString(entry.name, [...path, "name"], problems, {
          pattern: ANALYSIS_NAME_PATTERN,
          maxLength: 64,
        });
  const query =
    entry.query === undefined
      ? undefined
      : readString(entry.query, [...path, "query"], problems, { maxLength: MAX_QUERY_LENGTH });
  const unknown = query === undefined ? [] : unknownPlaceholders(query);
  if (unknown.length > 0) {
    problems.add(
      [...path, "query"],
      `holds ${unknown.join(", ")}, which no host fills in: the placeholders are ${QUERY_PLACEHOLDERS.join(" and ")}`,
    );
  }
  const max =
    entry.max === undefined ? undefined : readNumber(entry.max, [...path, "max"], problems);
  const min =
    entry.min === undefined ? undefined : readNumber(entry.min, [...path, "min"], problems);
  const baseline =
    entry.baseline === undefined
      ? undefined
      : readBaseline(entry.baseline, [...path, "baseline"], problems);
  // The same query for the host and for its baseline compares a value with itself: it passes
  // whatever the host does.
  if (
    baseline !== undefined &&
    query !== undefined &&
    !QUERY_PLACEHOLDERS.some((p) => query.includes(p))
  ) {
    problems.add(
      [...path, "query"],
      `is compared with its baseline, but names no host (${QUERY_PLACEHOLDERS.join(" or ")}): the host and its baseline would ask the same query, and every value would pass; select the host's series with a placeholder`,
    );
  }
  const reach =
    entry.reach === undefined
      ? undefined
      : readInteger(entry.reach, [...path, "reach"], problems, { min: 0, max: 86_400 });
  const rules = query === undefined ? [] : recordingRulesIn(query);
  if (rules.length > 0 && entry.reach === undefined) {
    problems.add(
      [...path, "query"],
      `names the recording rule ${rules.join(", ")}, whose range is in the rule, not in the query: give "reach", the seconds it reads back (a rule over rate(...[5m]) reads 300; 0 for one over instants), so that no measurement is taken for the new system's while it may still read the previous one's`,
    );
  }
  const failureLimit =
    entry.failureLimit === undefined
      ? ANALYSIS_DEFAULTS.failureLimit
      : readInteger(entry.failureLimit, [...path, "failureLimit"], problems, { min: 0 });
  const noData =
    entry.noData === undefined
      ? ANALYSIS_DEFAULTS.noData
      : readNoData(entry.noData, [...path, "noData"], problems);
  if (entry.max === undefined && entry.min === undefined && entry.baseline === undefined) {
    problems.add(path, `needs a condition: "max", "min" or "baseline"`);
    return undefined;
  }
  if (max !== undefined && min !== undefined && min > max) {
    problems.add([...path, "min"], `is above "max" (${min} > ${max}): no value could pass`);
  }
  if (
    name === undefined ||
    query === undefined ||
    failureLimit === undefined ||
    noData === undefined
  ) {
    return undefined;
  }
  return {
    name,
    query,
    ...(max === undefined ? {} : { max }),
    ...(min === undefined ? {} : { min }),
    ...(baseline === undefined ? {} : { baseline }),
    ...(reach === undefined ? {} : { reach }),
    failureLimit,
    noData,
  };
}

function readBaseline(
  value: unknown,
  path: JsonPath,
  problems: Problems,
): { tolerance: number } | undefined {
  const entry = readObject(value, path, problems, FLEET_KEYS.baseline);
  if (entry === undefined || entry.tolerance === undefined) return undefined;
  const tolerance = readNumber(entry.tolerance, [...path, "tolerance"], problems);
  if (tolerance === undefined) return undefined;
  if (tolerance < 1) {
    return problems.add(
      [...path, "tolerance"],
      `must be at least 1 (a canary at its baseline's value must pass; ${got(tolerance)})`,
    );
  }
  return { tolerance };
}

function readNoData(value: unknown, path: JsonPath, problems: Problems): NoDataRule | undefined {
  if (typeof value === "string" && (NO_DATA_RULES as readonly string[]).includes(value)) {
    return value as NoDataRule;
  }
  return problems.add(path, `must be one of ${NO_DATA_RULES.join(", ")} (${got(value)})`);
}

function readNumber(value: unknown, path: JsonPath, problems: Problems): number | undefined {
  if (typeof value === "number" && Number.isFinite(value)) return value;
  return problems.add(path, `must be a number (${got(value)})`);
}

/** `prometheus`: `{ "url": "https://prometheus:9090", "bearerTokenFile": "…", "timeout": 10 }`. */
export function readPrometheus(value: unknown, problems: Problems): PrometheusSettings | undefined {
  const path = ["prometheus"];
  const doc = readObject(value, path, problems, FLEET_KEYS.prometheus);
  if (doc === undefined || doc.url === undefined) return undefined;
  const url = readString(doc.url, [...path, "url"], problems, { maxLength: 2000 });
  const problem = url === undefined ? undefined : prometheusUrlProblem(url);
  if (problem !== undefined) problems.add([...path, "url"], problem);
  const bearerTokenFile =
    doc.bearerTokenFile === undefined
      ? undefined
      : readString(doc.bearerTokenFile, [...path, "bearerTokenFile"], problems);
  const timeout =
    doc.timeout === undefined
      ? PROMETHEUS_DEFAULTS.timeout
      : readInteger(doc.timeout, [...path, "timeout"], problems, { min: 1, max: 300 });
  const inClear =
    url !== undefined && problem === undefined && bearerTokenFile !== undefined
      ? tokenInClear(url)
      : undefined;
  if (inClear !== undefined) problems.add([...path, "url"], inClear);
  if (url === undefined || problem !== undefined || inClear !== undefined || timeout === undefined)
    return undefined;
  return { url: url.replace(/\/+$/, ""), bearerTokenFile, timeout };
}

/**
 * Why a bearer token may not go to `url`: plain http to another machine carries it readable by
 * anyone on the way; over https, or to a loopback address (an SSH tunnel's end), it may.
 */
function tokenInClear(url: string): string | undefined {
  const parsed = new URL(url);
  if (parsed.protocol !== "http:" || isLoopback(parsed.hostname.replace(/^\[|\]$/g, ""))) {
    return undefined;
  }
  return `is plain http to ${parsed.hostname}, which would carry the bearer token of "bearerTokenFile" in clear: use https:// (plain http only to a loopback address, such as an SSH tunnel's end)`;
}

/** Why `url` is no Prometheus base URL, or undefined when it is. */
function prometheusUrlProblem(url: string): string | undefined {
  if (!URL.canParse(url)) return `is not a valid URL (${got(shownUrl(url))})`;
  const parsed = new URL(url);
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    return `must be http:// or https:// (${got(parsed.protocol)})`;
  }
  // Said without the URL itself: it holds a secret.
  if (parsed.username !== "" || parsed.password !== "") {
    return `must hold no credentials: put a bearer token in a file named by "bearerTokenFile"`;
  }
  if (parsed.search !== "" || parsed.hash !== "") {
    return `must have no query or fragment: it is the base the API's paths are added to`;
  }
  return undefined;
}

/**
 * Across the file: an analysis needs the fleet's `prometheus` to ask, and a bake on each host
 * that has it (the queries are measured during the bake); each problem is named where the
 * analysis is stated.
 */
export function checkBakeAcrossFields(
  fleet: {
    readonly policy: RolloutPolicy;
    readonly policies: readonly PolicyRule[];
    readonly hosts: readonly FleetHost[];
    readonly hasPrometheus: boolean;
  },
  problems: Problems,
): void {
  const stated: { path: JsonPath; analysis: readonly unknown[] }[] = [
    ...(fleet.policy.analysis === undefined
      ? []
      : [{ path: ["policy", "analysis"], analysis: fleet.policy.analysis }]),
    ...fleet.policies.flatMap((r) =>
      r.override.analysis === undefined
        ? []
        : [{ path: ["policies", r.selector, "analysis"], analysis: r.override.analysis }],
    ),
  ];
  if (!fleet.hasPrometheus) {
    for (const s of stated.filter((s) => s.analysis.length > 0)) {
      problems.add(s.path, `asks Prometheus, but the fleet has no "prometheus" (its "url")`);
    }
  }
  // A bake that could not be read is named already: no host is said to lack it.
  if (problems.list.some((p) => p.path.includes("bake"))) return;
  // By where each host's analysis is stated: its JSON path, and the hosts that take it from there.
  const unbaked = new Map<string, { path: JsonPath; hosts: string[] }>();
  // Queries that read back further than a host's bake lasts: by the query's path.
  const tooFar = new Map<
    string,
    { path: JsonPath; reach: number; seconds: number; hosts: string[] }
  >();
  for (const host of fleet.hosts) {
    const policy = hostPolicy(fleet.policy, fleet.policies, host);
    const analysis = policy.analysis ?? [];
    if (analysis.length === 0) continue;
    const from = rulesFor(fleet.policies, host).findLast((r) => r.override.analysis !== undefined);
    const path =
      from === undefined ? ["policy", "analysis"] : ["policies", from.selector, "analysis"];
    const seconds = policy.bake?.seconds ?? 0;
    if (seconds === 0) {
      const entry = unbaked.get(path.join("\0")) ?? { path, hosts: [] };
      entry.hosts.push(host.name);
      unbaked.set(path.join("\0"), entry);
      continue;
    }
    for (const [i, query] of analysis.entries()) {
      const reach = analysisReach(query);
      if (reach <= seconds) continue;
      const at = [...path, i, "query"];
      const entry = tooFar.get(`${at.join("\0")}\0${seconds}`) ?? {
        path: at,
        reach,
        seconds,
        hosts: [],
      };
      entry.hosts.push(host.name);
      tooFar.set(`${at.join("\0")}\0${seconds}`, entry);
    }
  }
  for (const { path, reach, seconds, hosts } of tooFar.values()) {
    problems.add(
      path,
      `reads ${reach}s back (its longest range plus its offset), longer than the ${seconds}s bake of ${shownHosts(hosts)}: no measurement would read the new system alone, and what the previous system served could pass it; bake at least ${reach} seconds, or read back at most ${seconds}`,
    );
  }
  for (const { path, hosts } of unbaked.values()) {
    const shown = shownHosts(hosts);
    problems.add(
      path,
      `is measured during a bake, but ${shown} bake${hosts.length === 1 ? "s" : ""} for 0 seconds: give ${hosts.length === 1 ? "it" : "them"} a "bake" ({"seconds": …})`,
    );
  }
}

/** Hosts for a message: three named, the rest counted. */
function shownHosts(hosts: readonly string[]): string {
  return hosts.length > 3
    ? `${hosts.slice(0, 3).join(", ")} and ${hosts.length - 3} more`
    : hosts.join(", ");
}
