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
      formatPlanDeltas({
        deltas: { hosts: [], pending: 0, unread: [], noDelta: [], error: "no route" },
      }),
    ).toEqual([
      "deltas (bytes each host fetches from the cache, compressed, with the deltas published and without; the transfer column counts the NARs, uncompressed):",
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
        noDelta: [],
      },
    });
    expect(lines).toEqual([
      "deltas (bytes each host fetches from the cache, compressed, with the deltas published and without; the transfer column counts the NARs, uncompressed):",
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
        noDelta: [],
      },
    });
    expect(lines.slice(1)).toEqual([
      "  web1: 14 paths, 0 by delta: at most 50.0 kB with deltas, at most 50.0 kB without",
      "  20 deltas not computed yet (the deploy computes them while its rollout runs; until then those paths count whole)",
      "  web2: running closure not read, fetches whole",
    ]);
  });

  it("gives the saving it expects before the pairs are computed, marked as an estimate", () => {
    const lines = formatPlanDeltas({
      deltas: {
        hosts: [
          fetch("web1", {
            byDelta: 0,
            pending: 14,
            withDeltas: 4_000_000,
            whole: 4_000_000,
            estimated: 250_000,
          }),
        ],
        pending: 14,
        unread: [],
        noDelta: [],
      },
    });
    expect(lines[1]).toBe(
      "  web1: 14 paths, 0 by delta: 4.00 MB with deltas, 4.00 MB without; once computed, about 250.0 kB with deltas, 16.0× less (an estimate)",
    );
  });

  it("says an estimate made from bounds is a bound too, once", () => {
    const lines = formatPlanDeltas({
      deltas: {
        hosts: [
          fetch("web1", {
            byDelta: 0,
            pending: 9,
            withDeltas: 1_520_000,
            whole: 1_520_000,
            upperBound: true,
            estimated: 92_100,
          }),
        ],
        pending: 9,
        unread: [],
        noDelta: [],
      },
    });
    expect(lines[1]).toBe(
      "  web1: 14 paths, 0 by delta: at most 1.52 MB with deltas, at most 1.52 MB without; once computed, about 92.1 kB or less with deltas, 16.5× less (an estimate)",
    );
  });

  it("names the hosts that get no delta, and why", () => {
    const lines = formatPlanDeltas({
      deltas: {
        hosts: [],
        pending: 0,
        unread: [],
        noDelta: [
          { host: "web1", reason: "no-zstd" },
          { host: "ag1", reason: "agent" },
          { host: "web2", reason: "no-zstd" },
          { host: "db1", reason: "no-base" },
          { host: "db2", reason: "copied" },
        ],
      },
    });
    expect(lines).toEqual([
      "deltas:",
      '  no delta for web1, web2: no zstd 1.4.5 or newer in the system each runs, to apply them with (or name one: "deltas": {"tool": …})',
      '  no delta for ag1: agent hosts get deltas once the fleet file turns them on ("deltas": true): an agent older than deltas refuses a release that names a delta tool',
      "  no delta for db1: the system each runs is in neither the cache nor the deployer's store: no base to compute a delta from",
      "  no delta for db2: their paths come by a copy from the deployer, whole (no substituter: the cache's `substituter`, or --serve-cache)",
    ]);
  });
});
