import { describe, expect, it } from "vitest";
import type { StorePath } from "../nix/store-path.js";
import { deltaPathOf, deltaSkipKey } from "./delta-path.js";
import {
  addOrigin,
  deletedPaths,
  doomedListings,
  doomedNarInfos,
  doomedNars,
  doomedSkipNotes,
  groupByPackage,
  judgeMarkedDeltas,
  judgeUnreadable,
  malformedRoots,
  monthlyCost,
  packageName,
  type RootOrigins,
  referrersFirst,
  spareDeltas,
} from "./gc-plan.js";
import type { CacheInventory, CacheObject } from "./inventory.js";

const o = (key: string, modified: number, size = 10): CacheObject => ({ key, size, modified });
const h = (c: string) => c.repeat(32);

function inventory(): CacheInventory {
  return {
    narinfos: new Map([
      [h("a"), o(`${h("a")}.narinfo`, 100)],
      [h("b"), o(`${h("b")}.narinfo`, 100)],
      [h("c"), o(`${h("c")}.narinfo`, 900)],
    ]),
    listings: new Map([
      [h("a"), o(`${h("a")}.ls`, 100)],
      [h("d"), o(`${h("d")}.ls`, 100)],
    ]),
    nars: new Map([
      ["nar/1.nar", o("nar/1.nar", 100)],
      ["nar/2.nar", o("nar/2.nar", 100)],
      ["nar/3.nar", o("nar/3.nar", 900)],
    ]),
    deltaSkips: new Map(),
    listCalls: 2,
  };
}

describe("what a collection deletes", () => {
  it("narinfos not marked and older than the cutoff; a young one never", () => {
    const doomed = doomedNarInfos(inventory(), new Set([h("a")]), 500);
    expect(doomed.map((d) => d.key)).toEqual([`${h("b")}.narinfo`]);
  });

  it("listings whose narinfo is gone or was never there", () => {
    const doomed = doomedListings(inventory(), new Set([h("a")]), 500);
    expect(doomed.map((d) => d.key)).toEqual([`${h("d")}.ls`]);
  });

  it("NARs no remaining narinfo names, older than the cutoff", () => {
    const doomed = doomedNars(inventory(), new Set(["nar/1.nar"]), 500);
    expect(doomed.map((d) => d.key)).toEqual(["nar/2.nar"]);
  });

  it("prices bytes per GB-month of 2^30 bytes", () => {
    expect(monthlyCost(2 ** 30, 0.023)).toBeCloseTo(0.023, 12);
    expect(monthlyCost(0, 0.023)).toBe(0);
  });
});

describe("referrersFirst", () => {
  // top -> mid -> leaf, top -> leaf, other alone; self-reference on leaf.
  const refs = new Map<string, string[]>([
    ["top", ["mid", "leaf", "kept"]],
    ["mid", ["leaf"]],
    ["leaf", ["leaf"]],
    ["other", []],
  ]);

  it("gives every narinfo after all its referrers, each layer free of references inside it", () => {
    const layers = referrersFirst(refs.keys(), refs);
    const order: string[][] = [];
    for (let layer = layers.first(); layer.length > 0; layer = layers.next(layer))
      order.push(layer);
    expect(order).toEqual([["top", "other"], ["mid"], ["leaf"]]);
  });

  it("never gives what a narinfo that could not be deleted refers to", () => {
    const layers = referrersFirst(refs.keys(), refs);
    const first = layers.first();
    // "top" failed to delete: only "other" went.
    expect(layers.next(first.filter((x) => x !== "top"))).toEqual([]);
  });
});

describe("roots that are unreadable or malformed", () => {
  it("an unreadable root blocks the sweep unless the operator skips it by name; each said once", () => {
    const found = [
      { name: "h2", problem: "status/hosts/h2.json: not JSON" },
      { name: "releases/prod/1.json", problem: "a shard is missing" },
      { name: "h2", problem: "status/hosts/h2.json: not JSON" },
    ];
    expect(judgeUnreadable(found, new Set(["h2", "nobody"]))).toEqual({
      unreadable: [{ name: "releases/prod/1.json", problem: "a shard is missing" }],
      skipped: [{ name: "h2", problem: "status/hosts/h2.json: not JSON" }],
    });
  });

  it("a root whose hash's narinfo describes another path is named with where it came from", () => {
    const right = `/nix/store/${h("a")}-hello-2.13`;
    const wrong = `/nix/store/${h("a")}-x`;
    const origins: RootOrigins = new Map();
    addOrigin(origins, wrong, "host rogue");
    addOrigin(origins, wrong, "host other");
    const described = new Map([[h("a"), right]]);
    expect(
      malformedRoots(
        [right, wrong, h("b"), `/nix/store/${h("c")}-gone`],
        (x) => described.get(x),
        origins,
      ),
    ).toEqual([{ path: wrong, describes: right, origins: ["host other", "host rogue"] }]);
  });
});

describe("deleted paths by package", () => {
  it("lists the narinfos that went with their NAR when it went too, the unparsed ones, and orphan NARs", () => {
    const inv = inventory();
    const infos = new Map([
      [h("a"), { storePath: `/nix/store/${h("a")}-a-1.0`, nar: "nar/1.nar", references: [] }],
      [h("b"), { references: [] }],
    ]);
    const doomed = [...inv.narinfos.values()];
    const out = deletedPaths(
      inv,
      doomed,
      infos,
      new Set([h("a"), h("b")]),
      new Set(["nar/1.nar", "nar/2.nar"]),
    );
    expect(out).toEqual({
      paths: [
        {
          storePath: `/nix/store/${h("a")}-a-1.0`,
          narinfo: `${h("a")}.narinfo`,
          nar: "nar/1.nar",
          bytes: 20,
        },
      ],
      unreadable: [`${h("b")}.narinfo`],
      orphans: ["nar/2.nar"],
    });
  });

  it("splits names as parseDrvName does", () => {
    const p = (name: string) => `/nix/store/${h("a")}-${name}`;
    expect(packageName(p("hello-2.13"))).toBe("hello");
    expect(packageName(p("gc-pkg4-1.4"))).toBe("gc-pkg4");
    expect(packageName(p("nixos-system-web1-24.11"))).toBe("nixos-system-web1");
    expect(packageName(p("source"))).toBe("source");
  });

  it("groups them, the largest first", () => {
    const d = (c: string, name: string, bytes: number) => ({
      storePath: `/nix/store/${h(c)}-${name}`,
      narinfo: `${h(c)}.narinfo`,
      nar: null,
      bytes,
    });
    expect(
      groupByPackage([d("a", "hello-2.12", 10), d("b", "libfoo-1.0", 30), d("c", "hello-2.13", 5)]),
    ).toEqual([
      { name: "libfoo", bytes: 30, paths: [`/nix/store/${h("b")}-libfoo-1.0`] },
      {
        name: "hello",
        bytes: 15,
        paths: [`/nix/store/${h("a")}-hello-2.12`, `/nix/store/${h("c")}-hello-2.13`],
      },
    ]);
  });
});

describe("deltas go with their targets", () => {
  const store = (hash: string, name: string) => `/nix/store/${hash}-${name}` as StorePath;
  const target = store(h("a"), "app-1.1");
  const base = store(h("b"), "app-1.0");
  const other = store(h("c"), "lib-2.0");
  const delta = deltaPathOf(target, base);
  const deltaOfOther = deltaPathOf(other, base);
  const hashOf = (p: string) => p.slice(11, 43);

  it("the mark keeps a delta it reached only while it keeps the delta's target", () => {
    const reached = new Map<string, string>([
      [h("a"), target],
      [h("b"), base],
      [hashOf(delta), delta],
      [hashOf(deltaOfOther), deltaOfOther],
    ]);
    const { kept, dropped } = judgeMarkedDeltas(reached);
    expect([...kept].sort()).toEqual([h("a"), h("b"), hashOf(delta)].sort());
    expect([...dropped]).toEqual([hashOf(deltaOfOther)]);
  });

  it("a delta the mark dropped is doomed however young; other young narinfos are not", () => {
    const inv: CacheInventory = {
      ...inventory(),
      narinfos: new Map([
        [h("c"), o(`${h("c")}.narinfo`, 900)],
        [hashOf(deltaOfOther), o(`${hashOf(deltaOfOther)}.narinfo`, 900)],
      ]),
    };
    const doomed = doomedNarInfos(inv, new Set(), 500, new Set([hashOf(deltaOfOther)]));
    expect(doomed.map((d) => d.key)).toEqual([`${hashOf(deltaOfOther)}.narinfo`]);
  });

  it("an unmarked delta whose target stays is spared; one whose target goes is not", () => {
    const doomed = [
      o(`${hashOf(delta)}.narinfo`, 100),
      o(`${hashOf(deltaOfOther)}.narinfo`, 100),
      o(`${h("c")}.narinfo`, 100),
    ];
    const infos = new Map([
      [hashOf(delta), { storePath: delta, nar: "delta/1.nar", references: [] }],
      [hashOf(deltaOfOther), { storePath: deltaOfOther, nar: "delta/2.nar", references: [] }],
      [h("c"), { storePath: other, nar: "nar/3.nar", references: [] }],
    ]);
    const { doomed: still, spared } = spareDeltas(doomed, infos, new Set([h("a"), h("b")]));
    expect(spared).toEqual([hashOf(delta)]);
    expect(still.map((d) => d.key)).toEqual([
      `${hashOf(deltaOfOther)}.narinfo`,
      `${h("c")}.narinfo`,
    ]);
  });

  it("a skip note goes once its target's narinfo is gone, whatever its age", () => {
    const kept = deltaSkipKey(target, base);
    const gone = deltaSkipKey(other, base);
    const inv: CacheInventory = {
      ...inventory(),
      deltaSkips: new Map([
        [kept, o(kept, 100)],
        [gone, o(gone, 900)],
      ]),
    };
    expect(doomedSkipNotes(inv, new Set([h("a")])).map((d) => d.key)).toEqual([gone]);
  });
});
