// A wave's bake: once its hosts are confirmed, the rollout holds for their role's `bake`,
// repeating their checks (HTTP from here; command checks on the host, through the delivery) and
// measuring their analysis (PromQL, each value judged by fleet/analysis.ts) every interval. A
// host that fails cuts the others' bakes short, and every host the wave changed goes back to
// what it ran before, through the delivery (an agent wave: one rollback release), as
// fleet/rollback-decision.ts decides; each result then carries why, typed (its own failure, or
// the host whose failure took the wave back), to the summary, the events and the rollout record.
import { setMaxListeners } from "node:events";
import type { CheckOutcome, Delivery, DeployRequest, WaveHost } from "../delivery/delivery.js";
import {
  analysisState,
  conditionText,
  hostQuery,
  judgeSample,
  type Measurement,
  medianOf,
  type Sample,
} from "../fleet/analysis.js";
import { type AnalysisQuery, baselineHosts, type HostBake } from "../fleet/bake.js";
import type { FleetHost } from "../fleet/fleet.js";
import type { DeployPlan, HostPlan } from "../fleet/plan.js";
import {
  type BakeCheck,
  type BakeFailure,
  decideWaveRollback,
  type FailedAnalysis,
} from "../fleet/rollback-decision.js";
import type { RollbackTarget } from "../fleet/rollback-target.js";
import { httpCheck } from "../host/http-check.js";
import type { MetricsSource, QueryAnswer } from "../metrics/prometheus.js";
import { type Deadline, eitherSignal, startDeadline } from "../util/deadline.js";
import { Semaphore } from "../util/pool.js";
import { tenths } from "../util/tenths.js";
import type { BakeFailedEvent, DeployEvent, HostResult } from "./events.js";

export interface BakeInput {
  readonly plan: Pick<DeployPlan, "waves" | "hosts">;
  /** The wave's number (from 1) and its hosts' results, as the wave left them. */
  readonly wave: number;
  readonly results: readonly HostResult[];
  readonly hosts: ReadonlyMap<string, FleetHost>;
  readonly requests: Pick<ReadonlyMap<string, DeployRequest>, "get">;
  readonly delivery: Pick<Delivery, "rollbackHosts" | "runChecks" | "channel">;
  /** The Prometheus the analysis asks (undefined: none, so every query has no data). */
  readonly metrics: MetricsSource | undefined;
  readonly emit: (event: DeployEvent) => void;
  /** An interrupt ends the bake: the hosts keep what they run, and no new wave starts. */
  readonly signal?: AbortSignal;
  /** Seconds between `bake-progress` events (default BAKE_PROGRESS_SECONDS). */
  readonly progressEvery?: number;
  /**
   * Awaited when a wave's bake failed, before its `bake-failed` event is told and its hosts
   * are rolled back: the records say they failed (not yet rolled back) first, so that a
   * deployer killed during the rollback leaves them failed, not confirmed.
   */
  readonly beforeRollback?: (event: BakeFailedEvent) => Promise<void>;
}

/** Seconds between a bake's `bake-progress` events: a CI job's log shows it goes on. */
export const BAKE_PROGRESS_SECONDS = 60;

/**
 * The wave's results once its hosts baked: when one failed, every host the wave changed is
 * failed (and rolled back), each saying why.
 */
export async function bakeWave(input: BakeInput): Promise<HostResult[]> {
  const planned = new Map(input.plan.hosts.map((p) => [p.host, p]));
  const baking = input.results.flatMap((r) => {
    const bake = planned.get(r.host)?.bake;
    return r.outcome.status === "activated" && bake !== undefined && bake.seconds > 0
      ? [{ result: r, bake }]
      : [];
  });
  // Interrupted before it began, the bake still ends as an interrupted one (at 0 s): the hosts
  // keep their new systems, said unverified by it, as a bake cut a second later says.
  if (baking.length === 0) return [...input.results];
  const longest = Math.max(...baking.map((b) => b.bake.seconds));
  input.emit({
    type: "bake-start",
    wave: input.wave,
    hosts: baking.map((b) => b.result.host),
    seconds: longest,
    interval: Math.min(...baking.map((b) => b.bake.interval)),
    analysis: [...new Set(baking.flatMap((b) => b.bake.analysis.map((q) => q.name)))],
  });
  // The first failure cuts the other hosts' bakes short: the wave goes back whatever they show.
  const waveFailed = new AbortController();
  const signal =
    input.signal === undefined
      ? waveFailed.signal
      : AbortSignal.any([input.signal, waveFailed.signal]);
  // Every baking host waits on it: more than Node's default of ten listeners is no leak.
  setMaxListeners(0, signal);
  // While it bakes, the wave says so now and then, with the hosts whose bake has not ended.
  const bakingNow = new Set(baking.map((b) => b.result.host));
  const bakeStarted = performance.now();
  const progress = setInterval(
    () =>
      input.emit({
        type: "bake-progress",
        wave: input.wave,
        elapsed: tenths((performance.now() - bakeStarted) / 1000),
        seconds: longest,
        hosts: [...bakingNow],
      }),
    (input.progressEvery ?? BAKE_PROGRESS_SECONDS) * 1000,
  );
  progress.unref();
  const inFlight = new Semaphore(QUERIES_IN_FLIGHT);
  const baselineAnswers = new Map<string, SharedAnswer>();
  const failures = new Map<string, BakeFailure>();
  const baked = new Map<string, number>();
  const cut = new Set<string>();
  /** Hosts whose bake an interrupt ended: they keep their system, unverified by it. */
  const stopped = new Set<string>();
  await Promise.all(
    baking.map(async ({ result, bake }) => {
      const verdict = await bakeHost(
        { ...input, signal, inFlight, baselineAnswers },
        result.host,
        bake,
        planned,
      );
      bakingNow.delete(result.host);
      baked.set(result.host, verdict.seconds);
      if (verdict.failure !== undefined) {
        failures.set(result.host, verdict.failure);
        waveFailed.abort();
        return;
      }
      if (verdict.interrupted && input.signal?.aborted) stopped.add(result.host);
      // Cut short by another host's failure: its own bake neither passed nor failed.
      if (verdict.interrupted && !input.signal?.aborted) {
        cut.add(result.host);
        return;
      }
      input.emit({
        type: "bake-done",
        host: result.host,
        ok: true,
        seconds: tenths(verdict.seconds),
        ...(verdict.interrupted ? { interrupted: true as const } : {}),
      });
    }),
  ).finally(() => clearInterval(progress));
  const withBake = (r: HostResult): HostResult => ({
    ...r,
    ...(r.outcome.status === "activated" && stopped.has(r.host)
      ? { outcome: { ...r.outcome, bakeInterrupted: tenths(baked.get(r.host) ?? 0) } }
      : {}),
    seconds: tenths(r.seconds + (baked.get(r.host) ?? 0)),
  });
  if (failures.size === 0) return input.results.map(withBake);
  return await rollBackWave(input, failures, { baked, cut }, withBake);
}

/** Every host the wave changed back on what it ran before, one rollback for them all. */
async function rollBackWave(
  input: BakeInput,
  failures: ReadonlyMap<string, BakeFailure>,
  bakes: {
    /** Seconds each host baked. */
    readonly baked: ReadonlyMap<string, number>;
    /** The hosts whose bake the failure cut short. */
    readonly cut: ReadonlySet<string>;
  },
  withBake: (r: HostResult) => HostResult,
): Promise<HostResult[]> {
  const { baked, cut } = bakes;
  const changed = input.results.filter((r) => r.outcome.status === "activated");
  const decisions = decideWaveRollback(
    changed.map((r) => r.host),
    failures,
  );
  const going = changed.filter((r) => decisions.get(r.host)?.rollBack === true);
  const failedAs = (r: HostResult, rolledBack: boolean, note: string): HostResult => {
    const decision = decisions.get(r.host) as NonNullable<ReturnType<typeof decisions.get>>;
    return {
      ...withBake(r),
      outcome: {
        status: "failed",
        phase: "bake",
        message: `${decision.why}${note}`,
        rolledBack,
        cause: decision.cause,
      },
    };
  };
  if (going.length > 0) {
    const event: BakeFailedEvent = {
      type: "bake-failed",
      wave: input.wave,
      results: going.map((r) => failedAs(r, false, "; rolling back")),
    };
    await input.beforeRollback?.(event);
    input.emit(event);
  }
  const back = await rollBack(
    input,
    going.map((r) => r.host),
  );
  const rolled = new Map<string, HostResult>();
  for (const r of going) {
    const decision = decisions.get(r.host);
    if (decision === undefined) continue;
    const note = back.get(r.host) ?? { rolledBack: false, note: "; not rolled back" };
    const failed = failedAs(r, note.rolledBack, note.note);
    rolled.set(r.host, failed);
    input.emit({
      type: "bake-done",
      host: r.host,
      ok: false,
      seconds: tenths(baked.get(r.host) ?? 0),
      ...(cut.has(r.host) ? { interrupted: true as const } : {}),
      result: failed,
    });
  }
  return input.results.map((r) => rolled.get(r.host) ?? withBake(r));
}

interface HostBakeVerdict {
  readonly seconds: number;
  readonly failure?: BakeFailure;
  readonly interrupted?: boolean;
}

/** A bake's input as its hosts share it: the bound on queries in flight, the baseline's answers. */
interface Baking extends BakeInput {
  readonly inFlight: Semaphore;
  /**
   * The answers of the baseline's queries (by query text), shared by the wave's hosts: every
   * host of a role compares with the same hosts, so each round asks each of them once, not once
   * per host of the wave (a wave of 40 would ask 400 times, and wait its turn past its timeout).
   */
  readonly baselineAnswers: Map<string, SharedAnswer>;
}

/** A baseline query's answer, or its asking, and when it was asked (ms, performance.now()). */
interface SharedAnswer {
  readonly asked: number;
  readonly answer: Promise<QueryAnswer>;
}

/** Queries a wave's bake has in flight at once, all its hosts and their baselines together. */
const QUERIES_IN_FLIGHT = 16;

/** One host's bake: its rounds until it ends, fails, or is interrupted. */
async function bakeHost(
  input: Baking,
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
  let repeatChecks = true;
  // A round that ran past the next rounds' times (a Prometheus that answers slowly) skips them:
  // the bake ends about when it was to, not a timeout later for every round.
  const next = (round: number) =>
    Math.max(round + 1, Math.min(rounds, Math.floor(elapsed() / bake.interval) + 1));
  for (let round = 1; round <= rounds; round = next(round)) {
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
    // The command checks run on the host, as its activation ran them (activate.sh `check`).
    if (
      repeatChecks &&
      host !== undefined &&
      request !== undefined &&
      request.commandChecks.length > 0
    ) {
      const verdict = await runCommandChecks(input, { host, request });
      if (input.signal?.aborted) return { seconds: elapsed(), interrupted: true };
      if (verdict !== undefined && "notRepeated" in verdict) {
        repeatChecks = false;
        input.emit({ type: "host-log", host: name, line: verdict.notRepeated });
      } else if (verdict !== undefined) {
        return {
          seconds: elapsed(),
          failure: failureOf(elapsed(), bake, series, host, [], verdict),
        };
      }
    }
    const failed: string[] = [];
    // The round's queries are asked at once (within the bake's bound on queries in flight), all
    // within one query's timeout: those still waiting for their turn then are not asked, so a
    // slow Prometheus ends the round, and the bake, a timeout after its time at most.
    const asked = elapsed();
    const roundEnd = startDeadline((input.metrics?.timeout ?? 0) * 1000);
    // Queries take their turns in this order: those the last round did not ask go first, so
    // that a Prometheus too slow for them all starves no query round after round.
    const notAskedLast = (q: AnalysisQuery) =>
      series.get(q.name)?.at(-1)?.notAsked === true ? 0 : 1;
    const order = [...bake.analysis].sort((a, b) => notAskedLast(a) - notAskedLast(b));
    const answered = await Promise.all(
      order.map((query) =>
        measure(
          input,
          query,
          host ?? { name, address: undefined },
          { hosts: baseline, sharedFor: (bake.interval * 1000) / 2 },
          asked,
          roundEnd,
        ),
      ),
    ).finally(() => roundEnd.clear());
    const measured = new Map(order.map((q, i) => [q.name, answered[i] as Measurement]));
    if (input.signal?.aborted) return { seconds: elapsed(), interrupted: true };
    for (const query of bake.analysis) {
      const measurement = measured.get(query.name) as Measurement;
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

/**
 * The host's command checks once more, through its delivery; the check that failed, if one did
 * (none where the mode cannot run them: `plan` says so).
 */
async function runCommandChecks(
  input: BakeInput,
  wave: WaveHost,
): Promise<BakeCheck | { readonly notRepeated: string } | undefined> {
  const runChecks = input.delivery.runChecks?.bind(input.delivery);
  if (runChecks === undefined) return undefined;
  const [outcome]: CheckOutcome[] = await runChecks([wave], input.signal).catch((err: unknown) => [
    { ok: false, message: (err as Error).message },
  ]);
  if (outcome?.ok === true && outcome.notRepeated !== undefined) {
    return { notRepeated: outcome.notRepeated };
  }
  if (outcome === undefined || outcome.ok) return undefined;
  // Without one named (the host could not be asked, or failed units): the checks it was to run.
  const run = outcome.run ?? wave.request.commandChecks.map((c) => c.run).join("; ");
  return { run, message: outcome.message };
}

/**
 * One measurement of `query` for `host` (and its baseline's, for a comparison: an answer
 * another host of the wave got for the same query within `sharedFor` ms is taken as is).
 */
async function measure(
  input: Baking,
  query: AnalysisQuery,
  host: Pick<FleetHost, "name" | "address">,
  baseline: { readonly hosts: readonly FleetHost[]; readonly sharedFor: number },
  at: number,
  round: Deadline,
): Promise<Measurement> {
  const metrics = input.metrics;
  const ask = async (
    h: Pick<FleetHost, "name" | "address">,
  ): Promise<QueryAnswer & { readonly notAsked?: true }> => {
    if (metrics === undefined) return { value: null, why: "the fleet names no prometheus" };
    const stop = eitherSignal(round, input.signal);
    let release: () => void;
    try {
      release = await input.inFlight.acquire(stop);
    } catch {
      if (input.signal?.aborted) return { value: null, why: "interrupted" };
      return {
        value: null,
        why: `not asked: the round's ${metrics.timeout}s (prometheus.timeout) passed while ${QUERIES_IN_FLIGHT} queries were in flight`,
        notAsked: true,
      };
    }
    try {
      return await metrics.query(hostQuery(query.query, h), stop);
    } finally {
      release();
    }
  };
  const askShared = (h: FleetHost): ReturnType<typeof ask> => {
    const text = hostQuery(query.query, h);
    const now = performance.now();
    const shared = input.baselineAnswers.get(text);
    if (shared !== undefined && now - shared.asked < baseline.sharedFor) return shared.answer;
    const answer = ask(h);
    input.baselineAnswers.set(text, { asked: now, answer });
    return answer;
  };
  const compared = query.baseline !== undefined && baseline.hosts.length > 0;
  // The host and its baseline are asked at once.
  const [own, ...answers] = await Promise.all([
    ask(host),
    ...(compared ? baseline.hosts.map(askShared) : []),
  ]);
  if (own === undefined) throw new Error("no answer for the host itself");
  let sample: Sample = own.value === null ? { value: null, why: own.why } : { value: own.value };
  if (compared) {
    const median = medianOf(answers.map((a) => a.value));
    const why = answers.find((a) => a.value === null);
    sample = {
      ...sample,
      baseline: median,
      ...(median === null && why !== undefined && "why" in why ? { baselineWhy: why.why } : {}),
    };
  }
  const verdict = judgeSample(query, sample);
  // No value because this deployer did not ask (the host's own query, or every baseline
  // host's): no fault of the host's.
  const notAsked =
    verdict.verdict === "no-data" &&
    (own.notAsked === true ||
      (compared && sample.baseline === null && answers.every((a) => a.notAsked === true)));
  return {
    at: tenths(at),
    value: sample.value,
    ...(query.baseline === undefined || sample.baseline === undefined
      ? {}
      : { baseline: sample.baseline }),
    verdict: verdict.verdict,
    why: verdict.why,
    ...(notAsked ? { notAsked: true as const } : {}),
  };
}

/** What failed a host's bake: the check, or the queries named (with all they measured). */
function failureOf(
  at: number,
  bake: HostBake,
  series: ReadonlyMap<string, readonly Measurement[]>,
  host: Pick<FleetHost, "name" | "address"> | undefined,
  failed: readonly string[],
  check?: BakeCheck,
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
    at: tenths(at),
    ...(check === undefined ? {} : { check }),
    analysis,
  };
}

/**
 * The hosts back on what each ran when surveyed: whether each went, and what to add to its
 * message. ssh and ssm hosts go back by that generation (the profile's previous one may be a
 * system an earlier rollout left behind); agent hosts by that system, named in a rollback
 * release (the channel's history may have confirmed it before the system they leave, or not
 * at all). One call per target: one release for a wave that ran one system.
 */
async function rollBack(
  input: BakeInput,
  names: readonly string[],
): Promise<Map<string, { rolledBack: boolean; note: string }>> {
  const notes = new Map<string, { rolledBack: boolean; note: string }>();
  const planned = new Map(input.plan.hosts.map((p) => [p.host, p]));
  const groups = new Map<string, { to: RollbackTarget | undefined; hosts: FleetHost[] }>();
  for (const name of names) {
    const host = input.hosts.get(name);
    if (host === undefined) {
      notes.set(name, { rolledBack: false, note: "; not rolled back: not selected" });
      continue;
    }
    const back = rollbackTargetOf(planned.get(name), input.delivery.channel !== undefined);
    if (back.refused !== undefined) {
      notes.set(name, { rolledBack: false, note: `; not rolled back: ${back.refused}` });
      continue;
    }
    const { to } = back;
    const key = to === undefined ? "" : JSON.stringify(to);
    const group = groups.get(key) ?? { to, hosts: [] };
    group.hosts.push(host);
    groups.set(key, group);
  }
  for (const { to, hosts } of groups.values()) {
    const timeout = Math.max(
      0,
      ...hosts.map((h) => input.requests.get(h.name)?.activationTimeout ?? 0),
    );
    const outcomes = await input.delivery
      .rollbackHosts(hosts, to, timeout > 0 ? timeout : undefined)
      .catch((err: unknown) =>
        hosts.map(() => ({ status: "failed" as const, message: (err as Error).message })),
      );
    for (const [i, host] of hosts.entries()) {
      const back = outcomes[i];
      notes.set(
        host.name,
        back?.status === "rolled-back"
          ? {
              rolledBack: true,
              note: `; back on ${back.path || "the system it ran before"}`,
            }
          : {
              rolledBack: false,
              note: `; rolling back failed: ${back?.status === "failed" ? back.message : "no answer"}`,
            },
      );
    }
  }
  return notes;
}

/**
 * Where a host the wave changed goes back to: what it ran when the survey asked (its generation;
 * an agent host's system), or, for a host baked again (its rollout's bake never ended), what it
 * ran before that rollout. `to` undefined: the host's previous generation.
 */
export function rollbackTargetOf(
  was: Pick<HostPlan, "generation" | "current" | "unbaked"> | undefined,
  byPath: boolean,
):
  | { readonly to: RollbackTarget | undefined; readonly refused?: undefined }
  | { readonly refused: string } {
  const unbaked = was?.unbaked;
  if (unbaked !== undefined) {
    const before = unbaked.before;
    if (before === null) {
      return { refused: `what it ran before rollout ${unbaked.rollout} is not known` };
    }
    if (byPath) return { to: { kind: "path", path: before } };
    return unbaked.beforeGeneration === undefined
      ? {
          refused: `the host has no generation left of what it ran before rollout ${unbaked.rollout} (${before})`,
        }
      : { to: { kind: "generation", generation: unbaked.beforeGeneration } };
  }
  if (!byPath) {
    return {
      to:
        was?.generation === undefined
          ? undefined
          : { kind: "generation", generation: was.generation },
    };
  }
  return { to: was?.current === undefined ? undefined : { kind: "path", path: was.current } };
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
