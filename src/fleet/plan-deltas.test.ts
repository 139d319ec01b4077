import { describe, expect, it } from "vitest";
import { pairId } from "../cache/delta-bases.js";
import type { DeltaLookup, PairState } from "../cache/delta-lookup.js";
import type { StorePath } from "../nix/store-path.js";
import {
  deltaFetches,
  type HostDeltaPairs,
  type PlanDeltaPairs,
  rankDeltaPairs,
  targetSettled,
} from "./plan-deltas.js";

const path = (hash: string, name: string) => `/nix/store/${hash.repeat(32)}-${name}` as StorePath;
const [libNew, libOld, libOlder] = [
  path("a", "lib-1.2"),
  path("b", "lib-1.1"),
  path("c", "lib-1.0"),
];
const [appNew, appOld] = [path("d", "app-2"), path("f", "app-1")];
const etc = path("g", "etc");

function lookup(
  states: [StorePath, StorePath, PairState][],
  whole: [StorePath, number][],
): DeltaLookup {
  return {
    pairs: new Map(states.map(([target, base, s]) => [pairId({ target, base }), s])),
    wholeBytes: new Map(whole),
  };
}

const move: Omit<HostDeltaPairs, "host"> = {
  missing: 3,
  missingNarBytes: 3000 + 2000 + 10,
  lacking: [
    { path: libNew, narSize: 3000 },
    { path: appNew, narSize: 2000 },
    { path: etc, narSize: 10 },
  ],
  pairs: [
    { target: libNew, base: libOld },
    { target: libNew, base: libOlder },
    { target: appNew, base: appOld },
  ],
};

const plan = (...hosts: string[]): PlanDeltaPairs => ({
  hosts: hosts.map((host) => ({ host, ...move })),
  pairs: move.pairs,
  unread: [],
});

describe("deltaFetches", () => {
  it("counts a path by the first of its bases with a delta, else whole, and says what is pending", () => {
    const [web1] = deltaFetches(
      plan("web1"),
      lookup(
        [
          [libNew, libOld, { kind: "skip" }],
          [libNew, libOlder, { kind: "delta", bytes: 90 }],
          [appNew, appOld, { kind: "pending" }],
        ],
        [
          [libNew, 1500],
          [appNew, 900],
          [etc, 8],
        ],
      ),
    );
    expect(web1).toEqual({
      host: "web1",
      paths: 3,
      byDelta: 1,
      pending: 1,
      withDeltas: 90 + 900 + 8,
      whole: 1500 + 900 + 8,
      upperBound: false,
    });
  });

  it("counts a path the cache lacks by its NAR size, an upper bound", () => {
    const [web1] = deltaFetches(plan("web1"), lookup([], [[libNew, 1500]]));
    expect(web1).toMatchObject({ byDelta: 0, pending: 2, upperBound: true });
    expect(web1?.whole).toBe(1500 + 2000 + 10);
    expect(web1?.withDeltas).toBe(web1?.whole);
  });

  it("gives every host that makes the same move the same figures", () => {
    const fetches = deltaFetches(
      plan("web1", "web2", "web3"),
      lookup([[appNew, appOld, { kind: "delta", bytes: 50 }]], []),
    );
    expect(fetches.map((f) => f.host)).toEqual(["web1", "web2", "web3"]);
    const { host: _, ...first } = fetches[0] as (typeof fetches)[number];
    for (const { host: __, ...f } of fetches) expect(f).toEqual(first);
    expect(first).toMatchObject({ byDelta: 1, withDeltas: 3000 + 50 + 10 });
  });
});

describe("rankDeltaPairs", () => {
  it("takes every target's first base first, then the pairs that save the most bytes", () => {
    // lib (3000 bytes) before app (2000); lib's second base after both first bases.
    expect(rankDeltaPairs(plan("web1"))).toEqual([
      { target: libNew, base: libOld },
      { target: appNew, base: appOld },
      { target: libNew, base: libOlder },
    ]);
    // A pair shared by more hosts saves as much for each: app for two hosts outweighs lib for one.
    const appOnly: HostDeltaPairs = {
      host: "web2",
      missing: 1,
      missingNarBytes: 2000,
      lacking: [{ path: appNew, narSize: 2000 }],
      pairs: [{ target: appNew, base: appOld }],
    };
    const shared = { ...plan("web1"), hosts: [...plan("web1").hosts, appOnly] };
    expect(rankDeltaPairs(shared)[0]).toEqual({ target: appNew, base: appOld });
  });
});

describe("targetSettled", () => {
  const pairs = move.pairs.slice(0, 2);
  it("is settled at the first base with a delta, or once every base is done without one", () => {
    expect(targetSettled(pairs, () => undefined)).toBe(false);
    expect(targetSettled(pairs, (p) => (p.base === libOld ? "delta" : undefined))).toBe(true);
    expect(targetSettled(pairs, (p) => (p.base === libOld ? "none" : undefined))).toBe(false);
    expect(targetSettled(pairs, () => "none")).toBe(true);
  });
});
