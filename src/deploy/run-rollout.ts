// The rollout engine, written once over the Delivery seam: the plan's waves (each role's
// canaries first, then waves of at most `parallel` hosts), each host deployed and health-checked
// by its delivery mode, then the wave's bake (bake-wave.ts); no new wave starts once the
// failure budget is spent (or a canary failed, or a bake), once the deploy is interrupted, or once a pause
// between two waves is answered with anything but resume. An interrupted wave is waited for a
// bounded time.
import type {
  Delivery,
  DeployOutcome,
  DeployRequest,
  HostPhase,
  WaveHost,
} from "../delivery/delivery.js";
import { hostKeyRefused } from "../delivery/host-key-refused.js";
import type { FleetHost, RolloutPolicy } from "../fleet/fleet.js";
import type { PlannedPause } from "../fleet/pause-policy.js";
import type { DeployPlan, HostPlan } from "../fleet/plan.js";
import { shouldStop, shouldStopAfterWave, type Wave } from "../fleet/rollout.js";
import { activationSteps } from "../host/activation-session.js";
import type { MetricsSource } from "../metrics/prometheus.js";
import { interruptReason } from "../util/interrupt-reason.js";
import { tenths } from "../util/tenths.js";
import { bakeWave } from "./bake-wave.js";
import type { BakeFailedEvent, DeployEvent, HostResult } from "./events.js";
import { HostLogCap } from "./host-log-cap.js";
import { pendingBootLine } from "./pending-boot.js";

/**
 * How long a wave in flight is waited for once the deploy is interrupted. Deliveries abort
 * their hosts and resolve well within it; this bounds one that does not.
 */
export const ABORT_GRACE_MS = 120_000;

export interface RolloutInput {
  readonly plan: DeployPlan;
  readonly hosts: readonly FleetHost[];
  readonly policy: Pick<RolloutPolicy, "maxFailures">;
  readonly delivery: Delivery;
  /** What each planned host is asked to do (host-requests.ts). */
  readonly requests: Pick<ReadonlyMap<string, DeployRequest>, "get">;
  readonly emit: (event: DeployEvent) => void;
  /**
   * `--skip-unreachable`: hosts the survey could not reach are listed as skipped instead of
   * failed, and do not count towards `maxFailures`.
   */
  readonly skipUnreachable?: boolean;
  /** Aborted on an interrupt: no new wave starts, and the wave in flight is aborted. */
  readonly signal?: AbortSignal;
  /** Milliseconds to wait for an interrupted wave (default ABORT_GRACE_MS). */
  readonly abortGrace?: number;
  /**
   * Waits at each of the plan's pauses (rollout-pause.ts) and says whether the next wave
   * starts; needed when the plan pauses.
   */
  readonly pause?: (pause: PlannedPause) => Promise<PauseVerdict>;
  /** The Prometheus the bakes' analysis asks (the fleet's `prometheus`). */
  readonly metrics?: MetricsSource;
  /**
   * Awaited when a wave's bake failed, before its `bake-failed` event is told and its hosts
   * are rolled back: the records say they failed (not yet rolled back) first, so that a
   * deployer killed during the rollback leaves them failed, not confirmed.
   */
  readonly beforeRollback?: (event: BakeFailedEvent) => Promise<void>;
  /**
   * Called as each wave is about to start (counted from 1; `last`: no wave after it), and
   * awaited: the deploy's deltas may hold it a bounded time (delta-pace.ts).
   */
  readonly beforeWave?: (wave: {
    readonly wave: number;
    readonly hosts: readonly string[];
    readonly last: boolean;
  }) => Promise<void>;
}

/** What a pause came to: the next wave starts, or the rollout stops, and why. */
export type PauseVerdict = { readonly go: true } | { readonly go: false; readonly reason: string };

/** Every selected host's result, in fleet order. A result counts as a failure unless ok. */
export async function runRollout(input: RolloutInput): Promise<HostResult[]> {
  const { plan, emit, policy, signal } = input;
  const results = new Map<string, HostResult>();
  for (const p of plan.hosts) {
    const settled = settledWithoutDeploying(p, input.skipUnreachable === true);
    if (settled !== undefined) results.set(p.host, settled);
  }
  for (const r of results.values()) emit({ type: "host-done", result: r });

  const unreachable = [...results.values()].filter(isFailure).length;
  let failures = unreachable;
  const hostNamed = new Map(input.hosts.map((h) => [h.name, h]));
  // Exactly the plan's waves (each role's canaries first), as `plan` shows them.
  const planned = new Map(plan.hosts.map((p) => [p.host, p]));
  const waves: Wave<HostPlan>[] = plan.waves.map((w) => ({
    index: w.wave - 1,
    kind: w.kind,
    hosts: w.hosts.map((name) => {
      const p = planned.get(name);
      if (p === undefined)
        throw new Error(`the plan's wave ${w.wave} names ${name}, which it does not plan`);
      return p;
    }),
  }));
  const stop = (reason: string, rest: readonly Wave<HostPlan>[]) => {
    const notStarted = rest.flatMap((w) => w.hosts);
    emit({ type: "stopped", reason, notStarted: notStarted.map((h) => h.host) });
    for (const h of notStarted) {
      results.set(h.host, {
        host: h.host,
        desired: h.desired,
        seconds: 0,
        outcome: { status: "skipped", reason: "not-started" },
      });
    }
  };

  for (const [i, wave] of waves.entries()) {
    if (signal?.aborted) {
      stop(interruptReason(signal), waves.slice(i));
      break;
    }
    if (i === 0 && shouldStop(failures, policy)) {
      stop(overBudget(failures, unreachable, policy.maxFailures), waves);
      break;
    }
    await input.beforeWave?.({
      wave: wave.index + 1,
      hosts: wave.hosts.map((h) => h.host),
      last: i === waves.length - 1,
    });
    // Once confirmed, the wave's hosts bake before the next wave starts (bake-wave.ts).
    const outcomes = await bakeWave({
      plan,
      wave: wave.index + 1,
      results: await runWave(input, hostNamed, wave, Math.max(0, policy.maxFailures - failures)),
      hosts: hostNamed,
      requests: input.requests,
      delivery: input.delivery,
      metrics: input.metrics,
      emit,
      ...(signal === undefined ? {} : { signal }),
      ...(input.beforeRollback === undefined ? {} : { beforeRollback: input.beforeRollback }),
    });
    for (const r of outcomes) results.set(r.host, r);
    const waveFailures = outcomes.filter(isFailure).length;
    failures += waveFailures;
    const rest = waves.slice(i + 1);
    if (signal?.aborted) {
      // Said even after the last wave: the hosts of this one were aborted, not left to finish.
      stop(interruptReason(signal), rest);
      break;
    }
    // A failed bake took its wave back, and starts no new wave whatever the budget says (a
    // canary's failure stops the rollout anyway, below).
    const bakeFailed = outcomes.find(
      (r) => r.outcome.status === "failed" && r.outcome.cause?.kind === "bake",
    );
    if (rest.length > 0 && bakeFailed !== undefined && wave.kind !== "canary") {
      stop(`${bakeFailed.host} failed its bake; its wave was rolled back`, rest);
      break;
    }
    if (rest.length > 0 && shouldStopAfterWave(wave, waveFailures, failures, policy)) {
      const reason =
        wave.kind === "canary" && waveFailures > 0
          ? "the canary failed"
          : overBudget(failures, unreachable, policy.maxFailures);
      stop(reason, rest);
      break;
    }
    const pause = plan.pauses?.find((p) => p.afterWave === wave.index + 1);
    if (pause !== undefined && rest.length > 0) {
      if (input.pause === undefined) throw new Error("the plan pauses, and nothing waits there");
      const verdict = await input.pause(pause);
      if (!verdict.go) {
        stop(verdict.reason, rest);
        break;
      }
    }
  }
  return input.hosts.flatMap((h) => {
    const r = results.get(h.name);
    return r ? [r] : [];
  });
}

/**
 * A deploy succeeds when every host is activated, already up to date, or skipped as told
 * (unreachable, with --skip-unreachable).
 */
export function rolloutSucceeded(results: readonly HostResult[]): boolean {
  // A host refused (changed since its request was made: another operator's deploy or rollback
  // got there first) did not get what this rollout asked of it.
  return results.every(
    (r) =>
      r.outcome.status === "activated" ||
      (r.outcome.status === "skipped" &&
        r.outcome.reason !== "not-started" &&
        r.outcome.reason !== "refused"),
  );
}

/**
 * What a release published without watching (`--async`) says of the hosts the survey could not
 * reach, which it cannot name: each one's result (failed, or skipped with --skip-unreachable);
 * when the failures among them pass --max-failures, why nothing is to be published (as a
 * watched rollout starts no wave then), the hosts it would have named not started.
 */
export function unwatchedUnreachable(
  plan: Pick<DeployPlan, "hosts">,
  policy: Pick<RolloutPolicy, "maxFailures">,
  skipUnreachable: boolean,
): { readonly results: HostResult[]; readonly stop?: string } {
  const results = plan.hosts.flatMap((p) => {
    const settled =
      p.action === "unreachable" ? settledWithoutDeploying(p, skipUnreachable) : undefined;
    return settled === undefined ? [] : [settled];
  });
  const failures = results.filter(isFailure).length;
  if (!shouldStop(failures, policy)) return { results };
  const notStarted = plan.hosts.flatMap((p): HostResult[] =>
    p.action === "activate"
      ? [
          {
            host: p.host,
            desired: p.desired,
            seconds: 0,
            outcome: { status: "skipped", reason: "not-started" },
          },
        ]
      : [],
  );
  return {
    results: [...results, ...notStarted],
    stop: overBudget(failures, failures, policy.maxFailures),
  };
}

/** The result of a host the plan does not deploy: up to date, or unreachable. */
function settledWithoutDeploying(p: HostPlan, skipUnreachable: boolean): HostResult | undefined {
  const base = { host: p.host, desired: p.desired, seconds: 0 };
  const error = p.error ?? "unreachable";
  switch (p.action) {
    case "activate":
      return undefined;
    case "skip":
      return { ...base, outcome: { status: "skipped", reason: "up-to-date" } };
    case "unreachable": {
      // A refused host key is no outage (another machine may answer at its address), nor is a
      // host that answered with something other than a status (it is up, what it runs there
      // unknown): each fails the host, and counts against maxFailures, even where unreachable
      // hosts are skipped.
      const noOutage = p.hostKey
        ? hostKeyRefused(error)
        : p.answerUnreadable
          ? `it answered, but not with a status: ${error}`
          : undefined;
      if (noOutage === undefined && skipUnreachable) {
        return { ...base, outcome: { status: "skipped", reason: "unreachable", message: error } };
      }
      return {
        ...base,
        outcome: {
          status: "failed",
          phase: "connect",
          message: noOutage ?? error,
          rolledBack: false,
        },
      };
    }
  }
}

function isFailure(result: HostResult): boolean {
  return result.outcome.status === "failed";
}

function overBudget(failures: number, unreachable: number, maxFailures: number): string {
  const which =
    unreachable === 0
      ? "failed"
      : unreachable === failures
        ? "unreachable"
        : `failed (${unreachable} of them unreachable)`;
  return `${failures} host(s) ${which}, more than --max-failures ${maxFailures}`;
}

/** One wave through the delivery: every host's result, each reported once as it finishes. */
async function runWave(
  input: RolloutInput,
  hostNamed: ReadonlyMap<string, FleetHost>,
  wave: Wave<HostPlan>,
  failureBudget: number,
): Promise<HostResult[]> {
  const { emit, signal } = input;
  emit({
    type: "wave-start",
    // Counted from 1, as the text and the plan count them.
    wave: wave.index + 1,
    kind: wave.kind,
    hosts: wave.hosts.map((h) => h.host),
  });
  const started = performance.now();
  const elapsed = () => tenths((performance.now() - started) / 1000);
  const resultOf = (p: HostPlan, outcome: DeployOutcome): HostResult => ({
    host: p.host,
    desired: p.desired,
    seconds: elapsed(),
    outcome,
  });
  const waveHosts = wave.hosts.map((p): WaveHost => {
    const host = hostNamed.get(p.host);
    const request = input.requests.get(p.host);
    if (host === undefined || request === undefined) {
      throw new Error(`the plan names ${p.host}, which was not selected or has no request`);
    }
    return { host, request };
  });
  // A boot left pending is judged, or replaced, before anything else: said first.
  for (const p of wave.hosts) {
    const line = pendingBootLine(p, input.plan.action);
    if (line !== undefined) emit({ type: "host-log", host: p.host, line });
  }
  const reported = new Map<string, HostResult>();
  const phases = new Map<string, HostPhase>();
  const logs = new HostLogCap();
  // Once the wave is cut off, what its delivery still says comes after the summary: dropped.
  let listening = true;
  const deployed = input.delivery
    .deployWave(
      waveHosts,
      (e) => {
        if (!listening) return;
        if (e.type === "phase") {
          phases.set(e.host, e.phase);
          emit({ type: "host-phase", host: e.host, phase: e.phase, elapsed: elapsed() });
        } else if (e.type === "log") {
          const line = logs.pass(e.host, e.line);
          if (line !== undefined) emit({ type: "host-log", host: e.host, line });
        } else if (e.type === "waiting") {
          emit({ type: "waiting", hosts: e.hosts, elapsed: e.elapsed });
        } else if (!reported.has(e.host)) {
          const p = wave.hosts.find((h) => h.host === e.host);
          if (p === undefined) return;
          const result = resultOf(p, e.outcome);
          reported.set(e.host, result);
          const left = logs.done(e.host);
          if (left !== undefined) emit({ type: "host-log", host: e.host, line: left });
          emit({ type: "host-done", result });
        }
      },
      {
        index: wave.index,
        kind: wave.kind,
        // A wave holds at most `parallel` hosts of each role: all of them run at once.
        parallel: wave.hosts.length,
        failureBudget,
        ...(signal !== undefined ? { signal } : {}),
      },
    )
    .catch((err: unknown) =>
      wave.hosts.map(
        (): DeployOutcome => ({
          status: "failed",
          phase: "connect",
          message: err instanceof Error ? err.message : String(err),
          rolledBack: false,
        }),
      ),
    );
  const grace = input.abortGrace ?? ABORT_GRACE_MS;
  const settled = await settleWithin(deployed, signal, grace);
  listening = false;
  return wave.hosts.map((p, i) => {
    const known = reported.get(p.host);
    if (known !== undefined) {
      // A delivery may say more of a host once its wave settled (an agent wave: whether a
      // failed host applied the rollback release): the result, and so the summary, carry it.
      const last = settled.done ? settled.value[i] : undefined;
      return last !== undefined && last.status === known.outcome.status
        ? { ...known, outcome: last }
        : known;
    }
    const outcome = settled.done
      ? (settled.value[i] ?? noOutcome())
      : stillSettling(
          phases.get(p.host) ?? "connect",
          grace,
          waveHosts[i]?.request,
          input.delivery,
        );
    const result = resultOf(p, outcome);
    emit({ type: "host-done", result });
    return result;
  });
}

/**
 * What `work` resolves with; once `signal` aborts, only until `graceMs` later. `work` must
 * not reject.
 */
function settleWithin<T>(
  work: Promise<T>,
  signal: AbortSignal | undefined,
  graceMs: number,
): Promise<{ readonly done: true; readonly value: T } | { readonly done: false }> {
  if (signal === undefined) return work.then((value) => ({ done: true, value }));
  return new Promise((resolve) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const onAbort = () => {
      timer = setTimeout(() => finish({ done: false }), graceMs);
    };
    const finish = (settled: { done: true; value: T } | { done: false }) => {
      if (timer !== undefined) clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      resolve(settled);
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    void work.then((value) => finish({ done: true, value }));
  });
}

/** A host of an interrupted wave whose delivery gave no result within the grace. */
function stillSettling(
  phase: HostPhase,
  graceMs: number,
  request: DeployRequest | undefined,
  delivery: Pick<Delivery, "settlingText">,
): DeployOutcome {
  const waited = `interrupted, and no result ${Math.ceil(graceMs / 1000)}s later: the host is still settling`;
  const told = request && delivery.settlingText?.(request);
  const window = request === undefined ? 0 : activationSteps(request, true).confirmWindow;
  // A mode that says what becomes of its hosts (ssm); else a host with a window (ssh).
  const then =
    told !== undefined
      ? `; ${told}`
      : window > 0
        ? `; unless its activation is confirmed, it rolls itself back when its confirmation window (${window}s) closes`
        : `, with no confirmation window; 'nixship status' shows where it ends`;
  return {
    status: "failed",
    phase,
    message: `${waited}${then}`,
    rolledBack: false,
    settling: true,
  };
}

/** A delivery that broke its contract (fewer outcomes than hosts). */
function noOutcome(): DeployOutcome {
  return {
    status: "failed",
    phase: "connect",
    message: "the delivery reported no outcome for this host",
    rolledBack: false,
  };
}
