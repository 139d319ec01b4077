// The plan's deltas for people: what the hosts that use deltas would fetch with them and
// without (compressed, as the cache holds it), a line per group of hosts that fetch alike (a few
// names each), the saving expected before any pair is computed, what is not known yet, and
// which hosts get no delta and why. Pure; `--json` carries every host's figures (plan.deltas).
import type { NoDeltaReason } from "../fleet/delta-tool.js";
import type { DeployPlan } from "../fleet/plan.js";
import type { HostDeltaFetch } from "../fleet/plan-deltas.js";
import { listHosts } from "./fleet-size.js";
import { formatBytes, plural } from "./format.js";

export function formatPlanDeltas(plan: Pick<DeployPlan, "deltas">): string[] {
  const deltas = plan.deltas;
  if (deltas === undefined) return [];
  const groups = new Map<string, { fetch: HostDeltaFetch; hosts: string[] }>();
  for (const fetch of deltas.hosts) {
    const { host, ...figures } = fetch;
    const key = JSON.stringify(figures);
    const group = groups.get(key) ?? { fetch, hosts: [] };
    group.hosts.push(host);
    groups.set(key, group);
  }
  const lines = [...groups.values()].map(
    ({ fetch, hosts }) => `  ${listHosts(hosts)}: ${fetchLine(fetch)}`,
  );
  const notes: string[] = [];
  if (deltas.error !== undefined)
    notes.push(`not known: the cache could not be read: ${deltas.error}`);
  if (deltas.pending > 0) {
    notes.push(
      `${plural(deltas.pending, "delta")} not computed yet (the deploy computes ${deltas.pending === 1 ? "it" : "them"} while its rollout runs; until then those paths count whole)`,
    );
  }
  if (deltas.unread.length > 0) {
    notes.push(
      `${listHosts(deltas.unread)}: running closure not read, ${deltas.unread.length === 1 ? "fetches" : "fetch"} whole`,
    );
  }
  const byReason = new Map<NoDeltaReason, string[]>();
  for (const { host, reason } of deltas.noDelta) {
    byReason.set(reason, [...(byReason.get(reason) ?? []), host]);
  }
  for (const [reason, hosts] of byReason) {
    notes.push(`no delta for ${listHosts(hosts)}: ${NO_DELTA[reason]}`);
  }
  return [
    deltas.hosts.length > 0 || deltas.error !== undefined ? HEADING : "deltas:",
    ...lines,
    ...notes.map((n) => `  ${n}`),
  ];
}

/** What the figures count: the cache's compressed bytes, where the transfer column counts NARs. */
const HEADING =
  "deltas (bytes each host fetches from the cache, compressed, with the deltas published and without; the transfer column counts the NARs, uncompressed):";

/** Why hosts get no delta, for people. */
const NO_DELTA: Readonly<Record<NoDeltaReason, string>> = {
  copied:
    "their paths come by a copy from the deployer, whole (no substituter: the cache's `substituter`, or --serve-cache)",
  agent:
    'agent hosts get deltas once the fleet file turns them on ("deltas": true): an agent older than deltas refuses a release that names a delta tool',
  "no-zstd":
    'no zstd 1.4.5 or newer in the system each runs, to apply them with (or name one: "deltas": {"tool": …})',
  "no-base":
    "the system each runs is in neither the cache nor the deployer's store: no base to compute a delta from",
};

function fetchLine(f: HostDeltaFetch): string {
  const bound = f.upperBound ? "at most " : "";
  const ratio =
    f.withDeltas > 0 && f.byDelta > 0 ? `, ${(f.whole / f.withDeltas).toFixed(1)}× less` : "";
  const line = `${plural(f.paths, "path")}, ${f.byDelta} by delta: ${bound}${formatBytes(f.withDeltas)} with deltas, ${bound}${formatBytes(f.whole)} without${ratio}`;
  if (f.estimated === undefined) return line;
  const expected =
    f.estimated > 0 && f.estimated < f.whole ? `, ${(f.whole / f.estimated).toFixed(1)}× less` : "";
  // An estimate from sizes known only as a bound (the NARs, before the push) is a bound too.
  const orLess = f.upperBound ? " or less" : "";
  return `${line}; once computed, about ${formatBytes(f.estimated)}${orLess} with deltas${expected} (an estimate)`;
}
