// The plan's deltas for people: what the hosts that use deltas would fetch with them and
// without, a line per group of hosts that fetch alike (a few names each), then what is not known
// yet. Pure; `--json` carries every host's figures (plan.deltas).
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
  return [
    "deltas (what each host fetches from the cache with the deltas published, and without):",
    ...lines,
    ...notes.map((n) => `  ${n}`),
  ];
}

function fetchLine(f: HostDeltaFetch): string {
  const bound = f.upperBound ? "at most " : "";
  const ratio =
    f.withDeltas > 0 && f.byDelta > 0 ? `, ${(f.whole / f.withDeltas).toFixed(1)}× less` : "";
  return `${plural(f.paths, "path")}, ${f.byDelta} by delta: ${bound}${formatBytes(f.withDeltas)} with deltas, ${bound}${formatBytes(f.whole)} without${ratio}`;
}
