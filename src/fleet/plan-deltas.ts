// The deltas a plan's hosts can use (docs/deltas.md, "Bases"): for each host that changes
// system with deltas on, the paths of its new closure that its running closure lacks, and the
// (target, base) pairs for them. Pure: deploy/ reads the closures (the ones the plan's diffs
// read) and computes the pairs, each once however many hosts share it.
import { deltaPairsFor, pairId } from "../cache/delta-bases.js";
import type { DeltaPair } from "../cache/delta-publish.js";
import type { StorePath } from "../nix/store-path.js";
import { type DiffHost, diffHosts, type ReadClosure } from "./plan-diffs.js";

/** One host's part: what it lacks, and the pairs whose deltas could bring it. */
export interface HostDeltaPairs {
  readonly host: string;
  /** Paths of the desired closure its running closure lacks. */
  readonly missing: number;
  /** Their NAR bytes (uncompressed), what the host fetches without deltas, before compression. */
  readonly missingNarBytes: number;
  readonly pairs: readonly DeltaPair[];
}

export interface PlanDeltaPairs {
  readonly hosts: readonly HostDeltaPairs[];
  /** Every pair once, in the order first met. */
  readonly pairs: readonly DeltaPair[];
  /** Hosts with deltas on whose running closure could not be read whole: they fetch whole. */
  readonly unread: readonly string[];
}

export function planDeltaPairs(
  hosts: readonly DiffHost[],
  closures: (root: StorePath) => ReadClosure,
  deltasOn: (host: string) => boolean,
): PlanDeltaPairs {
  const byPair = new Map<string, DeltaPair>();
  const out: HostDeltaPairs[] = [];
  const unread: string[] = [];
  // Hosts that run the same system and get the same one share their pairs: made once.
  const memo = new Map<string, Omit<HostDeltaPairs, "host">>();
  for (const { host, current, desired } of diffHosts(hosts)) {
    if (current === undefined || !deltasOn(host)) continue;
    const key = `${current} ${desired}`;
    let found = memo.get(key);
    if (found === undefined) {
      const before = closures(current);
      const after = closures(desired);
      if (before.kind !== "complete" || after.kind !== "complete") {
        unread.push(host);
        continue;
      }
      const has = new Set(before.paths.map((p) => p.path));
      const lacking = after.paths.filter((p) => !has.has(p.path));
      found = {
        missing: lacking.length,
        missingNarBytes: lacking.reduce((sum, p) => sum + p.narSize, 0),
        pairs: deltaPairsFor(
          before.paths.map((p) => p.path),
          lacking.map((p) => p.path),
        ),
      };
      memo.set(key, found);
    }
    for (const pair of found.pairs) if (!byPair.has(pairId(pair))) byPair.set(pairId(pair), pair);
    out.push({ host, ...found });
  }
  return { hosts: out, pairs: [...byPair.values()], unread };
}
