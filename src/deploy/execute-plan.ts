// The deploy's last stage: roll the plan out (or publish it in one release) while its deltas are
// computed in the background, and record the results where `nixship status` reads them.

import { setTimeout as sleep } from "node:timers/promises";
import type { ChannelCapability, Delivery, DeployRequest, WaveHost } from "../delivery/delivery.js";
import { UsageError } from "../errors.js";
import type { DeliveryMode, FleetHost } from "../fleet/fleet.js";
import type { DeployPlan } from "../fleet/plan.js";
import type { PlanDeltaPairs } from "../fleet/plan-deltas.js";
import { parsePublicKey } from "../nix/keys.js";
import type { RolloutFetchPace } from "../status/rollout.js";
import { fastLinkSeen, waitForDeltas, wholeRequests, withReadyDeltas } from "./delta-gate.js";
import { FetchPace } from "./delta-pace.js";
import { type DeltaWorker, startDeltaWorker } from "./delta-worker.js";
import { cacheKeys } from "./deltas.js";
import type { DeployOptions, DeployReport } from "./deploy-options.js";
import { type DeployOrigin, deployOrigin } from "./deploy-origin.js";
import { throwIfInterrupted } from "./interrupts.js";
import { previousFetchPace } from "./previous-pace.js";
import { PushRecords } from "./push-records.js";
import { openAnswers, pauseGate } from "./rollout-pause.js";
import { recordRollout } from "./rollout-recorder.js";
import { rolloutSucceeded, runRollout, unwatchedUnreachable } from "./run-rollout.js";

/**
 * How long a failed bake's rollback waits for its hosts' status records to say they failed:
 * a store that hangs holds no rollback (the records are written again at the end).
 */
const SAY_FAILING_WITHIN_MS = 15_000;

// --- execute --------------------------------------------------------------------------------

export interface ExecuteInput {
  readonly options: Pick<
    DeployOptions,
    "fleet" | "policy" | "emit" | "async" | "skipUnreachable" | "signal" | "rollback" | "key"
  > &
    Partial<Pick<DeployOptions, "metrics">> &
    Partial<Pick<DeployOptions, "fleetDir" | "fleetArg">>;
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
 * where `nixship status` reads them. The plan's deltas are computed meanwhile, and their work
 * stopped (its files removed) when the rollout ends, however it ends.
 */
export async function executePlan(input: ExecuteInput): Promise<DeployReport> {
  const { options } = input;
  // How fast the last deploys of these hosts fetched, read before this deploy's record is the
  // newest.
  const previousPace =
    input.deltaPairs === undefined
      ? undefined
      : await previousFetchPace(
          options.fleet.cache?.url,
          input.plan.hosts.filter((h) => h.action === "activate").map((h) => h.host),
          (options.fleet.cache?.publicKeys ?? []).map((k) => parsePublicKey(k)),
          options.signal,
        );
  const fastLink =
    input.mode === "agent" || options.async === true ? undefined : fastLinkSeen(previousPace);
  if (fastLink !== undefined) {
    options.emit({ type: "deltas-fast-link", bytesPerSecond: Math.round(fastLink) });
  }
  const deltas = fastLink === undefined ? startDeltas(input) : undefined;
  try {
    return await rollOut(
      fastLink === undefined ? input : { ...input, requests: wholeRequests(input.requests) },
      deltas,
      previousPace,
    );
  } finally {
    await deltas?.stop();
  }
}

async function rollOut(
  input: ExecuteInput,
  deltas: DeltaWorker | undefined,
  previousPace: RolloutFetchPace | undefined,
): Promise<DeployReport> {
  const hostNamed = new Map(input.hosts.map((h) => [h.name, h]));
  const { options, plan, delivery } = input;
  const { emit } = options;
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
    // The agents fetch once the release is out: their deltas first (at the fast level).
    await deltas?.firstPass;
    throwIfInterrupted(options.signal);
    // A host it cannot name (its agent offline or paused) counts as a watched rollout counts it.
    const unreachable = unwatchedUnreachable(
      plan,
      options.policy,
      options.skipUnreachable === true,
    );
    for (const result of unreachable.results) emit({ type: "host-done", result });
    if (unreachable.stop !== undefined) {
      const notStarted = unreachable.results.flatMap((r) =>
        r.outcome.status === "skipped" && r.outcome.reason === "not-started" ? [r.host] : [],
      );
      emit({ type: "stopped", reason: unreachable.stop, notStarted });
      return { plan, results: unreachable.results, ok: false, releases: [], channelNotes };
    }
    const wave = plan.hosts.flatMap((p): WaveHost[] => {
      const host = hostNamed.get(p.host);
      const request = input.requests.get(p.host);
      return p.action !== "unreachable" && host !== undefined && request !== undefined
        ? [{ host, request }]
        : [];
    });
    const ok = rolloutSucceeded(unreachable.results);
    const results = unreachable.results;
    if (wave.length === 0) return { plan, results, ok, releases: [], channelNotes };
    const released = await publishOnly(wave);
    emit({ type: "released", ...released });
    return { plan, results, ok, releases: [released.seq], channelNotes };
  }
  const origin =
    input.origin ?? (await deployOrigin(input.hosts, options.fleetDir ?? process.cwd()));
  // Before any host changes: the store the pauses are answered in must be one to answer in.
  const answers = await openAnswers(options.fleet.cache?.url, plan);
  // An agent fetches at its own poll, from a release that names the tool for good: its deltas
  // come first (the fast pass), as for --async.
  if (input.mode === "agent") {
    await deltas?.firstPass;
    throwIfInterrupted(options.signal);
  }
  // What the dashboard shows of the rollout as it runs, in every mode.
  const record = await recordRollout(options.fleet.cache?.url, {
    mode: input.mode,
    action: plan.action,
    origin,
    key: options.key,
    ...(options.rollback === undefined ? {} : { rollback: options.rollback }),
    onWarning: (message) => emit({ type: "record-failed", message }),
    ...(delivery.channel === undefined
      ? {}
      : { releases: () => delivery.channel?.published() ?? [] }),
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
          fleetArg: options.fleetArg,
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
  // The NAR bytes each host lacked: the delta plan's count, else the plan's (every deploy's
  // fetches tell the next deploy how fast the link is, --no-delta's too).
  const lacked = new Map([
    ...plan.hosts.map((h): [string, number] => [h.host, h.transfer.bytes]),
    ...(input.deltaPairs?.hosts ?? []).map((h): [string, number] => [h.host, h.missingNarBytes]),
  ]);
  const pace = new FetchPace((host) => lacked.get(host), previousPace);
  // When this deploy was last done with each host: a status record written after that is
  // another deploy's or rollback's word on the host, newer than this one's (push-records.ts).
  const doneWith = new Map<string, Date>();
  // Push modes write each host's status record as soon as it is done.
  const records =
    input.mode !== "agent" && options.fleet.cache !== undefined
      ? new PushRecords(
          options.fleet.cache.url,
          input.mode,
          plan,
          record === undefined ? undefined : { kind: "rollout", key: record.recorder.key },
        )
      : undefined;
  const results = await runRollout({
    plan,
    hosts: input.hosts,
    policy: options.policy,
    delivery,
    requests: deltas === undefined ? input.requests : withReadyDeltas(input, deltas, pace),
    emit: (event) => {
      pace.observe(event);
      if (event.type === "host-done") {
        const done = new Date();
        doneWith.set(event.result.host, done);
        records?.hostDone(event.result, done);
      }
      if (event.type === "bake-done") doneWith.set(event.host, new Date());
      if (event.type === "bake-failed") {
        const done = new Date();
        for (const r of event.results) doneWith.set(r.host, done);
      }
      // (beforeRollback gave the rollout record its bake-failed already.)
      if (event.type !== "bake-failed") record?.recorder.onEvent(event);
      emit(event);
    },
    skipUnreachable: options.skipUnreachable === true,
    beforeRollback: async (event) => {
      record?.recorder.onEvent(event);
      const written = Promise.all([
        record?.recorder.written(),
        records?.sayNow(event.results, new Date()),
      ]);
      await Promise.race([written, sleep(SAY_FAILING_WITHIN_MS, undefined, { ref: false })]);
    },
    ...(options.signal !== undefined ? { signal: options.signal } : {}),
    ...(pauses === undefined ? {} : { pause: pauses.wait }),
    ...(options.metrics !== undefined ? { metrics: options.metrics } : {}),
    ...(deltas === undefined
      ? {}
      : { beforeWave: (wave) => waitForDeltas(deltas, pace, wave, emit) }),
  })
    .catch(async (err: unknown) => {
      await record?.finish(ended(false));
      await records?.finish(undefined, doneWith).catch(() => {});
      throw err;
    })
    .finally(() => answers?.close());
  // What the deltas' work came to is told before the summary.
  await deltas?.stop();
  record?.recorder.notePace(pace.seen());
  // An interrupted deploy is no success, even where every host it reached was activated (a bake
  // cut short in the last wave): its summary says so, as its exit code 130 does.
  const ok = rolloutSucceeded(results) && options.signal?.aborted !== true;
  // No host failed, though one was refused (another operator's turn there): the record says
  // partial (rollout-recorder.ts), which leaves that host to the other operator's rollout.
  await record?.finish(ended(results.every((r) => r.outcome.status !== "failed")));
  // Every host ran its system already: the channel still states the fleet file.
  if (!options.signal?.aborted && (delivery.channel?.published() ?? []).length === 0) {
    const settled = await delivery.channel?.settle(plan.action);
    if (settled !== undefined) emit({ type: "released", ...settled });
  }
  await records?.finish(results, doneWith);
  emit({
    type: "summary",
    ok,
    seconds: (performance.now() - input.started) / 1000,
    results,
    ...(record?.recorder.recorded === true ? { rollout: record.recorder.id } : {}),
  });
  const releases = (delivery.channel?.published() ?? []).map((r) => r.seq);
  const aborted = pauses?.aborted();
  return {
    plan,
    results,
    ok,
    releases,
    channelNotes,
    ...(record?.recorder.recorded === true ? { rollout: record.recorder.id } : {}),
    ...(aborted === undefined ? {} : { aborted }),
  };
}

/**
 * The plan's delta pairs, computed and published in the background from now on while the
 * rollout runs (delta-worker.ts); undefined when there are none to compute.
 */
function startDeltas(input: ExecuteInput): DeltaWorker | undefined {
  const { options, deltaPairs } = input;
  const { fleet, key, signal } = options;
  if (deltaPairs === undefined || fleet.cache === undefined || key === undefined) return undefined;
  if (deltaPairs.hosts.length === 0 && deltaPairs.unread.length === 0) return undefined;
  return startDeltaWorker({
    cacheUrl: fleet.cache.url,
    key,
    trusted: cacheKeys(fleet.cache),
    planned: deltaPairs,
    emit: options.emit,
    signal,
    // Agent hosts fetch after the release is out, with no wave to improve them for.
    improve: options.async !== true,
  });
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
