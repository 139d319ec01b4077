import { describe, expect, it } from "vitest";
import {
  doomedListings,
  doomedNarInfos,
  doomedNars,
  monthlyCost,
  referrersFirst,
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
