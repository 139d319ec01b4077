import { describe, expect, it } from "vitest";
import type { HostDeltaFetch } from "../fleet/plan-deltas.js";
import { formatPlanDeltas } from "./plan-deltas-format.js";

const fetch = (host: string, f: Partial<HostDeltaFetch> = {}): HostDeltaFetch => ({
  host,
  paths: 14,
  byDelta: 12,
  pending: 0,
  withDeltas: 3_100_000,
  whole: 41_000_000,
  upperBound: false,
  ...f,
});

describe("the plan's deltas", () => {
  it("says nothing when no host uses deltas", () => {
    expect(formatPlanDeltas({})).toEqual([]);
  });

  it("says why it has no figures when the cache could not be read", () => {
    expect(
      formatPlanDeltas({ deltas: { hosts: [], pending: 0, unread: [], error: "no route" } }),
    ).toEqual([
      "deltas (what each host fetches from the cache with the deltas published, and without):",
      "  not known: the cache could not be read: no route",
    ]);
  });

  it("gives a line per group of hosts that fetch alike, with and without deltas", () => {
    const hosts = Array.from({ length: 200 }, (_, i) => fetch(`web${i + 1}`));
    const lines = formatPlanDeltas({
      deltas: {
        hosts: [...hosts, fetch("db1", { byDelta: 0, withDeltas: 9_000, whole: 9_000 })],
        pending: 0,
        unread: [],
      },
    });
    expect(lines).toEqual([
      "deltas (what each host fetches from the cache with the deltas published, and without):",
      "  web1, web2, web3, web4, web5 and 195 more: 14 paths, 12 by delta: 3.10 MB with deltas, 41.0 MB without, 13.2× less",
      "  db1: 14 paths, 0 by delta: 9.00 kB with deltas, 9.00 kB without",
    ]);
  });

  it("says what is not known yet: deltas to compute, paths not pushed, closures not read", () => {
    const lines = formatPlanDeltas({
      deltas: {
        hosts: [
          fetch("web1", {
            byDelta: 0,
            pending: 14,
            withDeltas: 50_000,
            whole: 50_000,
            upperBound: true,
          }),
        ],
        pending: 20,
        unread: ["web2"],
      },
    });
    expect(lines.slice(1)).toEqual([
      "  web1: 14 paths, 0 by delta: at most 50.0 kB with deltas, at most 50.0 kB without",
      "  20 deltas not computed yet (the deploy computes them while its rollout runs; until then those paths count whole)",
      "  web2: running closure not read, fetches whole",
    ]);
  });
});
