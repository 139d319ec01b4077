import { describe, expect, it } from "vitest";
import { pairId } from "../cache/delta-bases.js";
import type { DeltaLookup, PairState } from "../cache/delta-lookup.js";
import type { StorePath } from "../nix/store-path.js";
import type { DeltaSwitch } from "./delta-tool.js";
import {
  deltaFetches,
  type HostDeltaPairs,
  type PlanDeltaPairs,
  planDeltaPairs,
  rankDeltaPairs,
  targetSettled,
} from "./plan-deltas.js";
import type { DiffHost, ReadClosure } from "./plan-diffs.js";

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
  noDelta: [],
  tools: new Map(),
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
      // The app's delta, not computed yet, would not be worth it at its size: whole.
      estimated: 90 + 900 + 8,
    });
  });

  it("counts only what a host's store said it lacks, where it said", () => {
    const cache = lookup(
      [
        [libNew, libOld, { kind: "delta", bytes: 90 }],
        [appNew, appOld, { kind: "delta", bytes: 40 }],
      ],
      [
        [libNew, 1500],
        [appNew, 900],
        [etc, 8],
      ],
    );
    // web1's store still holds the new lib; web2 said nothing.
    const [web1, web2] = deltaFetches(
      plan("web1", "web2"),
      cache,
      new Map([["web1", new Set([appNew, etc])]]),
    );
    expect(web1).toMatchObject({ paths: 2, byDelta: 1, withDeltas: 40 + 8, whole: 900 + 8 });
    expect(web2).toMatchObject({ paths: 3, byDelta: 2, withDeltas: 90 + 40 + 8 });
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

describe("deltaFetches' estimate", () => {
  it("expects a share of each pending target by how alike the pair is, a published delta its size", () => {
    const big = 1_000_000;
    const [web1] = deltaFetches(
      plan("web1"),
      lookup(
        [[libNew, libOld, { kind: "delta", bytes: 5_000 }]],
        [
          [libNew, big],
          [appNew, big],
          [etc, 8],
        ],
      ),
    );
    // app-1 to app-2: an update, a quarter of its NAR and a delta's wrapper; etc has no base.
    expect(web1).toMatchObject({ pending: 1, withDeltas: 5_000 + big + 8 });
    expect(web1?.estimated).toBe(5_000 + 0.25 * big + 2048 + 8);
    const rebuilt = path("m", "app-2");
    const [same] = deltaFetches(
      {
        ...plan("web1"),
        hosts: [
          {
            host: "web1",
            ...move,
            lacking: [{ path: appNew, narSize: big }],
            pairs: [{ target: appNew, base: rebuilt }],
          },
        ],
      },
      lookup([], [[appNew, big]]),
    );
    // The same whole name: a rebuild, a twentieth.
    expect(same?.estimated).toBe(0.05 * big + 2048);
  });

  it("gives no estimate when nothing is pending", () => {
    const [web1] = deltaFetches(
      plan("web1"),
      lookup(
        [
          [libNew, libOld, { kind: "delta", bytes: 90 }],
          [appNew, appOld, { kind: "skip" }],
        ],
        [],
      ),
    );
    expect(web1?.pending).toBe(0);
    expect(web1?.estimated).toBeUndefined();
  });
});

describe("planDeltaPairs", () => {
  const zstd = path("z", "zstd-1.5.6-bin");
  const named = path("l", "zstd-1.5.7");
  const [sysOld, sysNew, sysBare] = [path("i", "system"), path("j", "system"), path("k", "system")];
  const closures: Record<string, StorePath[]> = {
    [sysOld]: [sysOld, libOld, appOld, zstd],
    [sysNew]: [sysNew, libNew, appNew, zstd],
    [sysBare]: [sysBare, libOld, appOld],
  };
  const read = (root: StorePath): ReadClosure => ({
    kind: "complete",
    paths: (closures[root] ?? []).map((p) => ({ path: p, narSize: 100 })),
    from: "local-store",
  });
  const host = (name: string, current: StorePath | undefined): DiffHost => ({
    host: name,
    action: "activate",
    current,
    desired: sysNew,
  });
  const on: DeltaSwitch = { kind: "on", tool: undefined };

  it("gives each host the zstd of the system it runs, or says it has none", () => {
    const planned = planDeltaPairs([host("web1", sysOld), host("web2", sysBare)], read, () => on);
    expect(planned.tools).toEqual(new Map([["web1", zstd]]));
    expect(planned.hosts.map((h) => h.host)).toEqual(["web1"]);
    expect(planned.noDelta).toEqual([{ host: "web2", reason: "no-zstd" }]);
    expect(planned.pairs).toEqual(
      expect.arrayContaining([
        { target: libNew, base: libOld },
        { target: appNew, base: appOld },
      ]),
    );
  });

  it("gives the fleet's tool to every host on, and its pairs to those that change", () => {
    const switched: DeltaSwitch = { kind: "on", tool: named };
    const fresh = host("web3", undefined);
    const planned = planDeltaPairs(
      [host("web1", sysOld), host("web2", sysBare), fresh],
      read,
      () => switched,
    );
    expect(planned.tools).toEqual(
      new Map([
        ["web1", named],
        ["web2", named],
        ["web3", named],
      ]),
    );
    expect(planned.hosts.map((h) => h.host)).toEqual(["web1", "web2"]);
    expect(planned.noDelta).toEqual([]);
  });

  it("names the hosts the switch gives none, says nothing of those turned off", () => {
    const by: Record<string, DeltaSwitch> = {
      web1: { kind: "none", reason: "agent" },
      web2: { kind: "off" },
      web3: { kind: "none", reason: "copied" },
    };
    const planned = planDeltaPairs(
      [host("web1", sysOld), host("web2", sysOld), host("web3", sysOld)],
      read,
      (name) => by[name] as DeltaSwitch,
    );
    expect(planned.noDelta).toEqual([
      { host: "web1", reason: "agent" },
      { host: "web3", reason: "copied" },
    ]);
    expect(planned).toMatchObject({ hosts: [], pairs: [], unread: [] });
    expect(planned.tools.size).toBe(0);
  });

  it("leaves out pairs whose base the deployer cannot read, and a host left with none gets no-base", () => {
    const planned = planDeltaPairs(
      [host("web1", sysOld)],
      read,
      () => on,
      (p) => p === libOld,
    );
    expect(planned.pairs).toEqual([{ target: libNew, base: libOld }]);
    const none = planDeltaPairs(
      [host("web1", sysOld)],
      read,
      () => on,
      () => false,
    );
    expect(none.noDelta).toEqual([{ host: "web1", reason: "no-base" }]);
    expect(none.pairs).toEqual([]);
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
