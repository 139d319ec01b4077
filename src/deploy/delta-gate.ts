// What the deltas decide at each wave of a deploy: whether a host is given the delta tool, and
// how long a wave waits for deltas still being computed (docs/deltas.md, "What they cost").
import type { DeployRequest } from "../delivery/delivery.js";
import type { DeployPlan } from "../fleet/plan.js";
import type { RolloutFetchPace } from "../status/rollout.js";
import { tenths } from "../util/tenths.js";
import { deltaWaitMs, FetchPace } from "./delta-pace.js";
import type { DeltaWorker } from "./delta-worker.js";
import type { DeployEvent } from "./events.js";

/**
 * Each host's request as its wave starts: a host with no delta published for it yet (none when
 * the plan read the cache, none computed since) is not given the delta tool. It would fetch
 * every path whole anyway; its step would only cost it time. Nor is any host once the deploy
 * has seen whole fetches go at least as fast as rebuilding from deltas (a fast link).
 */
export function withReadyDeltas(
  input: {
    readonly requests: ReadonlyMap<string, DeployRequest>;
    readonly plan: Pick<DeployPlan, "deltas">;
  },
  deltas: Pick<DeltaWorker, "hasDeltas">,
  pace: Pick<FetchPace, "favoursWhole">,
): Pick<ReadonlyMap<string, DeployRequest>, "get"> {
  const published = new Set(
    (input.plan.deltas?.hosts ?? []).filter((h) => h.byDelta > 0).map((h) => h.host),
  );
  return {
    get: (host) => {
      const request = input.requests.get(host);
      if (
        request?.deltaTool === undefined ||
        ((published.has(host) || deltas.hasDeltas(host)) && !pace.favoursWhole())
      )
        return request;
      const { deltaTool: _, ...whole } = request;
      return whole;
    },
  };
}

/**
 * Before a wave: no more improving once the last wave starts (no host is left to take it), or
 * once the hosts are seen to fetch whole faster than by delta (none will take it); and a wave
 * whose hosts' deltas are still being computed waits for them only as long as fetching those
 * paths whole would take at the pace hosts fetched whole (FetchPace.bytesPerSecond), less what
 * rebuilding them from deltas takes at the pace hosts rebuilt at (deltaWaitMs): a wave that
 * waits to the end is then no slower than one that fetched whole at once.
 */
export async function waitForDeltas(
  deltas: Pick<DeltaWorker, "stopImproving" | "pendingBytes" | "settled">,
  pace: Pick<FetchPace, "bytesPerSecond" | "rebuiltBytesPerSecond" | "favoursWhole">,
  wave: { readonly wave: number; readonly hosts: readonly string[]; readonly last: boolean },
  emit: (event: DeployEvent) => void,
): Promise<void> {
  const whole = pace.favoursWhole();
  if (wave.last || whole) deltas.stopImproving();
  if (whole) return;
  const pendingBytes = deltas.pendingBytes(wave.hosts);
  const bytesPerSecond = pace.bytesPerSecond();
  const rebuiltBytesPerSecond = pace.rebuiltBytesPerSecond();
  const ms = deltaWaitMs(pendingBytes, bytesPerSecond, rebuiltBytesPerSecond);
  if (ms <= 0 || bytesPerSecond === undefined) return;
  emit({
    type: "deltas-wait",
    wave: wave.wave,
    pendingBytes,
    bytesPerSecond: Math.round(bytesPerSecond),
    rebuiltBytesPerSecond: Math.round(rebuiltBytesPerSecond),
    seconds: tenths(ms / 1000),
  });
  await deltas.settled(wave.hosts, ms);
}

/**
 * The NAR bytes a second the last deploys' hosts fetched whole at, when that is at least as
 * fast as hosts rebuild paths from deltas (delta-pace.ts): the link is fast, deltas would only
 * cost this deploy the deployer's CPU and its hosts' step, so none are computed or used (the
 * caller leaves agent hosts and --async out: they fetch later, at a pace no deploy has seen).
 */
export function fastLinkSeen(previous: RolloutFetchPace | undefined): number | undefined {
  if (previous?.whole === undefined) return undefined;
  if (!new FetchPace(undefined, previous).favoursWhole()) return undefined;
  return previous.whole.bytes / previous.whole.seconds;
}

/** The requests without their delta tool: every path comes whole. */
export function wholeRequests(
  requests: ReadonlyMap<string, DeployRequest>,
): ReadonlyMap<string, DeployRequest> {
  return new Map(
    [...requests].map(([host, request]) => {
      const { deltaTool: _, ...whole } = request;
      return [host, whole];
    }),
  );
}
