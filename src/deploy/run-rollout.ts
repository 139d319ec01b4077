// The rollout engine, written once over the Delivery seam: the canary wave first, then waves
// of at most `parallel` hosts, each host deployed and health-checked by its delivery mode; no
// new wave starts once the failure budget is spent (or a canary failed).
import type { Delivery, DeployOutcome, DeployRequest } from "../delivery/delivery.js";
import type { FleetHost, RolloutPolicy } from "../fleet/fleet.js";
import type { DeployPlan } from "../fleet/plan.js";
import { planWaves, shouldStopAfterWave } from "../fleet/rollout.js";
import type { DeployEvent, HostResult } from "./events.js";

export interface RolloutInput {
  readonly plan: DeployPlan;
  readonly hosts: readonly FleetHost[];
  readonly policy: Pick<RolloutPolicy, "parallel" | "maxFailures" | "canary">;
  readonly delivery: Delivery;
  readonly request: (host: FleetHost) => DeployRequest;
  readonly emit: (event: DeployEvent) => void;
}

/** Every selected host's result, in fleet order. A result counts as a failure unless ok. */
export async function runRollout(input: RolloutInput): Promise<HostResult[]> {
  const { plan, emit } = input;
  const byName = new Map(input.hosts.map((h) => [h.name, h]));
  const results = new Map<string, HostResult>();
  for (const p of plan.hosts) {
    if (p.action === "skip") {
      results.set(p.host, {
        host: p.host,
        desired: p.desired,
        seconds: 0,
        outcome: { status: "skipped", reason: "up-to-date" },
      });
    } else if (p.action === "unreachable") {
      results.set(p.host, {
        host: p.host,
        desired: p.desired,
        seconds: 0,
        outcome: {
          status: "failed",
          phase: "connect",
          message: p.error ?? "unreachable",
          rolledBack: false,
        },
      });
    }
  }
  for (const r of results.values()) emit({ type: "host-done", result: r });

  const toDeploy = plan.hosts.filter((p) => p.action === "activate");
  let failures = 0;
  const waves = planWaves(toDeploy, input.policy);
  for (const [i, wave] of waves.entries()) {
    emit({
      type: "wave-start",
      wave: wave.index,
      kind: wave.kind,
      hosts: wave.hosts.map((h) => h.host),
    });
    const started = performance.now();
    const elapsed = () => (performance.now() - started) / 1000;
    const resultOf = (name: string, outcome: DeployOutcome): HostResult => ({
      host: name,
      desired: wave.hosts.find((h) => h.host === name)?.desired ?? "",
      seconds: elapsed(),
      outcome,
    });
    const reported = new Map<string, HostResult>();
    const waveHosts = wave.hosts.map((p) => {
      const host = byName.get(p.host) as FleetHost;
      return { host, request: input.request(host) };
    });
    const deployed = await input.delivery
      .deployWave(
        waveHosts,
        (e) => {
          if (e.type === "phase")
            emit({ type: "host-phase", host: e.host, phase: e.phase, elapsed: elapsed() });
          else if (e.type === "log") emit({ type: "host-log", host: e.host, line: e.line });
          else if (!reported.has(e.host)) {
            const result = resultOf(e.host, e.outcome);
            reported.set(e.host, result);
            emit({ type: "host-done", result });
          }
        },
        {
          index: wave.index,
          kind: wave.kind,
          parallel: input.policy.parallel,
          failureBudget: Math.max(0, input.policy.maxFailures - failures),
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
    const outcomes = wave.hosts.map((p, i) => {
      const outcome = deployed[i] as DeployOutcome;
      const known = reported.get(p.host);
      if (known !== undefined) return known;
      const result = resultOf(p.host, outcome);
      emit({ type: "host-done", result });
      return result;
    });
    for (const r of outcomes) results.set(r.host, r);
    const waveFailures = outcomes.filter((r) => r.outcome.status === "failed").length;
    failures += waveFailures;
    const rest = waves.slice(i + 1).flatMap((w) => w.hosts);
    if (rest.length > 0 && shouldStopAfterWave(wave, waveFailures, failures, input.policy)) {
      const reason =
        wave.kind === "canary" && waveFailures > 0
          ? "the canary failed"
          : `${failures} host(s) failed, more than --max-failures ${input.policy.maxFailures}`;
      emit({ type: "stopped", reason, notStarted: rest.map((h) => h.host) });
      for (const h of rest) {
        const r: HostResult = {
          host: h.host,
          desired: h.desired,
          seconds: 0,
          outcome: { status: "skipped", reason: "not-started" },
        };
        results.set(h.host, r);
      }
      break;
    }
  }
  return input.hosts.flatMap((h) => {
    const r = results.get(h.name);
    return r ? [r] : [];
  });
}

/** A deploy succeeds when every host is activated or already up to date. */
export function rolloutSucceeded(results: readonly HostResult[]): boolean {
  return results.every(
    (r) =>
      r.outcome.status === "activated" ||
      (r.outcome.status === "skipped" && r.outcome.reason === "up-to-date"),
  );
}
