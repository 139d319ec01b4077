// A wave's bake: once its hosts are confirmed, the rollout holds for their role's `bake`,
// repeating their HTTP checks and measuring their analysis (PromQL, each value judged by
// fleet/analysis.ts) every interval. A host that fails is rolled back at once to what it ran
// before, through the delivery (in every mode), as fleet/rollback-decision.ts decides; its
// result then carries what failed, typed, to the summary, the events and the rollout record.
import type { Delivery, DeployRequest } from "../delivery/delivery.js";
import {
  analysisState,
  conditionText,
  hostQuery,
  judgeSample,
  type Measurement,
  meanOf,
  type Sample,
} from "../fleet/analysis.js";
import { type AnalysisQuery, baselineHosts, type HostBake } from "../fleet/bake.js";
import type { FleetHost } from "../fleet/fleet.js";
import type { DeployPlan, HostPlan } from "../fleet/plan.js";
import {
  type BakeFailure,
  decideRollback,
  type FailedAnalysis,
} from "../fleet/rollback-decision.js";
import { httpCheck } from "../host/http-check.js";
import type { MetricsSource } from "../metrics/prometheus.js";
import type { DeployEvent, HostResult } from "./events.js";

export interface BakeInput {
  readonly plan: Pick<DeployPlan, "waves" | "hosts">;
  /** The wave's number (from 1) and its hosts' results, as the wave left them. */
  readonly wave: number;
  readonly results: readonly HostResult[];
  readonly hosts: ReadonlyMap<string, FleetHost>;
  readonly requests: Pick<ReadonlyMap<string, DeployRequest>, "get">;
  readonly delivery: Pick<Delivery, "rollbackHosts">;
  /** The Prometheus the analysis asks (undefined: none, so every query has no data). */
  readonly metrics: MetricsSource | undefined;
  readonly emit: (event: DeployEvent) => void;
  /** An interrupt ends the bake: the hosts keep what they run, and no new wave starts. */
  readonly signal?: AbortSignal;
}

/** The wave's results once its hosts baked: those that failed, failed (and rolled back). */
export async function bakeWave(input: BakeInput): Promise<HostResult[]> {
  const planned = new Map(input.plan.hosts.map((p) => [p.host, p]));
  const baking = input.results.flatMap((r) => {
    const bake = planned.get(r.host)?.bake;
    return r.outcome.status === "activated" && bake !== undefined && bake.seconds > 0
      ? [{ result: r, bake }]
      : [];
  });
  if (baking.length === 0 || input.signal?.aborted) return [...input.results];
  input.emit({
    type: "bake-start",
    wave: input.wave,
    hosts: baking.map((b) => b.result.host),
    seconds: Math.max(...baking.map((b) => b.bake.seconds)),
    interval: Math.min(...baking.map((b) => b.bake.interval)),
    analysis: [...new Set(baking.flatMap((b) => b.bake.analysis.map((q) => q.name)))],
  });
  // Rollbacks go one at a time: an agent host's is a release of the channel, one writer at once.
  let rollbacks: Promise<unknown> = Promise.resolve();
  const baked = await Promise.all(
    baking.map(async ({ result, bake }) => {
      const verdict = await bakeHost(input, result.host, bake, planned);
      const seconds = result.seconds + verdict.seconds;
      if (verdict.failure === undefined) {
        input.emit({
          type: "bake-done",
          host: result.host,
          ok: true,
          seconds: verdict.seconds,
          ...(verdict.interrupted ? { interrupted: true as const } : {}),
        });
        return { ...result, seconds };
      }
      const decision = decideRollback({ kind: "bake-failed", failure: verdict.failure });
      const turn = rollbacks.then(() =>
        decision.rollBack ? rollBack(input, result.host) : { rolledBack: false, note: "" },
      );
      rollbacks = turn.catch(() => {});
      const back = await turn;
      const failed: HostResult = {
        ...result,
        seconds,
        outcome: {
          status: "failed",
          phase: "bake",
          message: `${decision.why}${back.note}`,
          rolledBack: back.rolledBack,
          cause: verdict.failure,
        },
      };
      input.emit({
        type: "bake-done",
        host: result.host,
        ok: false,
        seconds: verdict.seconds,
        result: failed,
      });
      return failed;
    }),
  );
  const byHost = new Map(baked.map((r) => [r.host, r]));
  return input.results.map((r) => byHost.get(r.host) ?? r);
}

interface HostBakeVerdict {
  readonly seconds: number;
  readonly failure?: BakeFailure;
  readonly interrupted?: boolean;
}

/** One host's bake: its rounds until it ends, fails, or is interrupted. */
async function bakeHost(
  input: BakeInput,
  name: string,
  bake: HostBake,
  planned: ReadonlyMap<string, HostPlan>,
): Promise<HostBakeVerdict> {
  const host = input.hosts.get(name);
  const request = input.requests.get(name);
  const baseline = baselineHosts(input.plan, name, input.wave).flatMap((b) => {
    const h = input.hosts.get(b);
    return h === undefined || planned.get(b) === undefined ? [] : [h];
  });
  const started = performance.now();
  const elapsed = () => (performance.now() - started) / 1000;
  const series = new Map<string, Measurement[]>(bake.analysis.map((q) => [q.name, []]));
  const rounds = Math.max(1, Math.ceil(bake.seconds / bake.interval));
  for (let round = 1; round <= rounds; round++) {
    const at = Math.min(bake.seconds, round * bake.interval);
    if (!(await sleepUntil(started + at * 1000, input.signal))) {
      return { seconds: elapsed(), interrupted: true };
    }
    const ended = round === rounds;
    for (const check of request?.httpChecks ?? []) {
      const verdict = await httpCheck(check.url, check.expectStatus, check.timeout, input.signal, {
        retry: check.retry !== false,
      });
      if (input.signal?.aborted) return { seconds: elapsed(), interrupted: true };
      if (!verdict.ok) {
        return {
          seconds: elapsed(),
          failure: failureOf(elapsed(), bake, series, host, [], {
            url: check.url,
            message: verdict.message,
          }),
        };
      }
    }
    const failed: string[] = [];
    for (const query of bake.analysis) {
      const measurement = await measure(
        input,
        query,
        host ?? { name, address: undefined },
        baseline,
        elapsed(),
      );
      if (input.signal?.aborted) return { seconds: elapsed(), interrupted: true };
      const list = series.get(query.name) as Measurement[];
      list.push(measurement);
      input.emit({
        type: "bake-measure",
        host: name,
        name: query.name,
        query: hostQuery(query.query, host ?? { name, address: undefined }),
        condition: conditionText(query),
        measurement,
      });
      if (analysisState(query, list, ended).state === "failed") failed.push(query.name);
    }
    if (failed.length > 0) {
      return {
        seconds: elapsed(),
        failure: failureOf(elapsed(), bake, series, host, failed, undefined, ended),
      };
    }
  }
  return { seconds: elapsed() };
}

/** One measurement of `query` for `host` (and its baseline's, for a comparison). */
async function measure(
  input: BakeInput,
  query: AnalysisQuery,
  host: Pick<FleetHost, "name" | "address">,
  baseline: readonly FleetHost[],
  at: number,
): Promise<Measurement> {
  const ask = async (h: Pick<FleetHost, "name" | "address">) =>
    input.metrics === undefined
      ? { value: null, why: "the fleet names no prometheus" }
      : await input.metrics.query(hostQuery(query.query, h), input.signal);
  const own = await ask(host);
  let sample: Sample = own.value === null ? { value: null, why: own.why } : { value: own.value };
  if (query.baseline !== undefined && baseline.length > 0) {
    const answers = await Promise.all(baseline.map(ask));
    const mean = meanOf(answers.map((a) => a.value));
    const why = answers.find((a) => a.value === null);
    sample = {
      ...sample,
      baseline: mean,
      ...(mean === null && why !== undefined && "why" in why ? { baselineWhy: why.why } : {}),
    };
  }
  const verdict = judgeSample(query, sample);
  return {
    at: Math.round(at * 10) / 10,
    value: sample.value,
    ...(query.baseline === undefined || sample.baseline === undefined
      ? {}
      : { baseline: sample.baseline }),
    verdict: verdict.verdict,
    why: verdict.why,
  };
}

/** What failed a host's bake: the check, or the queries named (with all they measured). */
function failureOf(
  at: number,
  bake: HostBake,
  series: ReadonlyMap<string, readonly Measurement[]>,
  host: Pick<FleetHost, "name" | "address"> | undefined,
  failed: readonly string[],
  check?: BakeFailure["check"],
  ended = false,
): BakeFailure {
  const analysis = bake.analysis.flatMap((query): FailedAnalysis[] => {
    if (!failed.includes(query.name)) return [];
    const measurements = series.get(query.name) ?? [];
    return [
      {
        name: query.name,
        query: host === undefined ? query.query : hostQuery(query.query, host),
        condition: conditionText(query),
        why: analysisState(query, measurements, ended).why ?? "failed",
        measurements,
      },
    ];
  });
  return {
    kind: "bake",
    at: Math.round(at * 10) / 10,
    ...(check === undefined ? {} : { check }),
    analysis,
  };
}

/** The host back on what it ran before: whether it went, and what to add to its message. */
async function rollBack(
  input: BakeInput,
  name: string,
): Promise<{ rolledBack: boolean; note: string }> {
  const host = input.hosts.get(name);
  if (host === undefined) return { rolledBack: false, note: "; not rolled back: not selected" };
  const timeout = input.requests.get(name)?.activationTimeout;
  const [back] = await input.delivery
    .rollbackHosts([host], undefined, timeout)
    .catch((err: unknown) => [{ status: "failed" as const, message: (err as Error).message }]);
  if (back?.status === "rolled-back") {
    return {
      rolledBack: true,
      note: `; rolled back to ${back.path || "the system it ran before"}`,
    };
  }
  return {
    rolledBack: false,
    note: `; rolling back failed: ${back?.status === "failed" ? back.message : "no answer"}`,
  };
}

/** Waits until `time` (performance.now()); false when interrupted first. */
function sleepUntil(time: number, signal: AbortSignal | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(
      () => {
        signal?.removeEventListener("abort", onAbort);
        resolve(true);
      },
      Math.max(0, time - performance.now()),
    );
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
