// The deploy's last stage: publish the plan's deltas, roll the plan out (or publish it in one
// release), and record the results where `nixship status` reads them.
import type { ChannelCapability, Delivery, DeployRequest, WaveHost } from "../delivery/delivery.js";
import { UsageError } from "../errors.js";
import type { DeliveryMode, FleetHost } from "../fleet/fleet.js";
import type { DeployPlan } from "../fleet/plan.js";
import type { PlanDeltaPairs } from "../fleet/plan-deltas.js";
import { cacheKeys, publishPlanDeltas } from "./deltas.js";
import type { DeployOptions, DeployReport } from "./deploy-options.js";
import { type DeployOrigin, deployOrigin } from "./deploy-origin.js";
import { interruptedBefore, throwIfInterrupted } from "./interrupts.js";
import { recordResults } from "./push-records.js";
import { openAnswers, pauseGate } from "./rollout-pause.js";
import { recordRollout } from "./rollout-recorder.js";
import { rolloutSucceeded, runRollout } from "./run-rollout.js";

// --- execute --------------------------------------------------------------------------------

export interface ExecuteInput {
  readonly options: Pick<
    DeployOptions,
    "fleet" | "policy" | "emit" | "async" | "skipUnreachable" | "signal" | "rollback" | "key"
  > &
    Partial<Pick<DeployOptions, "metrics">> &
    Partial<Pick<DeployOptions, "fleetDir">>;
  readonly hosts: readonly FleetHost[];
  readonly plan: DeployPlan;
  readonly mode: DeliveryMode;
  readonly delivery: Delivery;
  /** What each planned host is asked to do (host-requests.ts). */
  readonly requests: ReadonlyMap<string, DeployRequest>;
  /** The delta pairs to publish before the rollout, when the plan has any. */
  readonly deltaPairs?: PlanDeltaPairs | undefined;
  /** performance.now() when the deploy started: the summary's time. */
  readonly started: number;
  /** Who runs the deploy and from what (default: found from the hosts and the fleet's folder). */
  readonly origin?: DeployOrigin | undefined;
}

/**
 * Rolls the plan out (or with `async`, publishes it in one release) and records the results
 * where `nixship status` reads them.
 */
export async function executePlan(input: ExecuteInput): Promise<DeployReport> {
  const { options, plan, delivery } = input;
  const { emit } = options;
  const hostNamed = new Map(input.hosts.map((h) => [h.name, h]));
  await publishDeltas(input);
  // The channel states the fleet file: every selected host's system, whether it runs it yet.
  const channelNotes =
    (await delivery.channel?.plan(
      plan.hosts.flatMap((p) =>
        p.action === "unreachable"
          ? []
          : [
              {
                host: p.host,
                path: p.desired,
                runs: p.action === "skip",
                secrets: input.requests.get(p.host)?.secrets,
              },
            ],
      ),
    )) ?? [];
  if (options.async === true) {
    const publishOnly = publisherOf(delivery, input.mode);
    const wave = plan.hosts.flatMap((p): WaveHost[] => {
      const host = hostNamed.get(p.host);
      const request = input.requests.get(p.host);
      return p.action !== "unreachable" && host !== undefined && request !== undefined
        ? [{ host, request }]
        : [];
    });
    if (wave.length === 0) return { plan, results: [], ok: true, releases: [], channelNotes };
    const released = await publishOnly(wave);
    emit({ type: "released", ...released });
    return { plan, results: [], ok: true, releases: [released.seq], channelNotes };
  }
  const origin =
    input.origin ?? (await deployOrigin(input.hosts, options.fleetDir ?? process.cwd()));
  // Before any host changes: the store the pauses are answered in must be one to answer in.
  const answers = await openAnswers(options.fleet.cache?.url, plan);
  // What the dashboard shows of the rollout as it runs, in every mode.
  const record = await recordRollout(options.fleet.cache?.url, {
    mode: input.mode,
    action: plan.action,
    origin,
    ...(options.rollback === undefined ? {} : { rollback: options.rollback }),
    onWarning: (message) => emit({ type: "record-failed", message }),
  }).catch(async (err: unknown) => {
    await answers?.close();
    throw err;
  });
  record?.recorder.onEvent({ type: "plan", plan });
  const pauses =
    answers === undefined || record === undefined
      ? undefined
      : pauseGate({
          store: answers,
          rollout: record.recorder.id,
          by: origin.by,
          record: async (event) => {
            record.recorder.onEvent(event);
            await record.recorder.written();
          },
          show: emit,
          signal: options.signal,
        });
  const ended = (ok: boolean) =>
    options.signal?.aborted
      ? "interrupted"
      : pauses?.aborted() !== undefined
        ? "aborted"
        : ok
          ? "succeeded"
          : "failed";
  const results = await runRollout({
    plan,
    hosts: input.hosts,
    policy: options.policy,
    delivery,
    requests: input.requests,
    emit: (event) => {
      record?.recorder.onEvent(event);
      emit(event);
    },
    skipUnreachable: options.skipUnreachable === true,
    ...(options.signal !== undefined ? { signal: options.signal } : {}),
    ...(pauses === undefined ? {} : { pause: pauses.wait }),
    ...(options.metrics !== undefined ? { metrics: options.metrics } : {}),
  })
    .catch(async (err: unknown) => {
      await record?.finish(ended(false));
      throw err;
    })
    .finally(() => answers?.close());
  const ok = rolloutSucceeded(results);
  await record?.finish(ended(ok));
  // Every host ran its system already: the channel still states the fleet file.
  if (!options.signal?.aborted && (delivery.channel?.published() ?? []).length === 0) {
    const settled = await delivery.channel?.settle(plan.action);
    if (settled !== undefined) emit({ type: "released", ...settled });
  }
  if (input.mode !== "agent" && options.fleet.cache !== undefined) {
    await recordResults(
      options.fleet.cache.url,
      input.mode,
      results,
      plan,
      record === undefined ? undefined : { kind: "rollout", key: record.recorder.key },
    );
  }
  emit({ type: "summary", ok, seconds: (performance.now() - input.started) / 1000, results });
  const releases = (delivery.channel?.published() ?? []).map((r) => r.seq);
  const aborted = pauses?.aborted();
  return {
    plan,
    results,
    ok,
    releases,
    channelNotes,
    ...(record === undefined ? {} : { rollout: record.recorder.id }),
    ...(aborted === undefined ? {} : { aborted }),
  };
}

/** The plan's delta pairs computed and published, signed, before any host asks for them. */
async function publishDeltas(input: ExecuteInput): Promise<void> {
  const { options, deltaPairs } = input;
  const { fleet, key, signal } = options;
  if (deltaPairs === undefined || fleet.cache === undefined || key === undefined) return;
  if (deltaPairs.hosts.length === 0 && deltaPairs.unread.length === 0) return;
  await publishPlanDeltas({
    cacheUrl: fleet.cache.url,
    key,
    trusted: cacheKeys(fleet.cache),
    planned: deltaPairs,
    emit: options.emit,
    signal,
  }).catch(interruptedBefore(signal));
  throwIfInterrupted(signal);
}

/** `deploy --async` needs a delivery that can publish one release without watching. */
export function publisherOf(
  delivery: Delivery,
  mode: DeliveryMode,
): ChannelCapability["publishOnly"] {
  const channel = delivery.channel;
  if (channel !== undefined) return (hosts) => channel.publishOnly(hosts);
  throw new UsageError(
    `deploy --async publishes one release and returns without watching, which ${mode} delivery cannot do: its hosts are deployed wave by wave`,
    "leave out --async (it is for agent hosts)",
  );
}
