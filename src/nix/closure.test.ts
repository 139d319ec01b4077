import { describe, expect, it } from "vitest";
import { referencesFirst } from "./closure.js";
import type { StorePath } from "./store-path.js";

const p = (c: string) => `/nix/store/${c.repeat(32)}-${c}` as StorePath;

describe("referencesFirst", () => {
  it("puts every path after the paths it references", () => {
    const infos = [
      { path: p("a"), references: [p("b"), p("c"), p("a")] },
      { path: p("b"), references: [p("c")] },
      { path: p("c"), references: [] },
      { path: p("d"), references: [p("z")] },
    ];
    const order = referencesFirst(infos).map((i) => i.path);
    expect(order.indexOf(p("c"))).toBeLessThan(order.indexOf(p("b")));
    expect(order.indexOf(p("b"))).toBeLessThan(order.indexOf(p("a")));
    expect(order).toHaveLength(4);
  });

  it("rejects a cycle and names it", () => {
    const infos = [
      { path: p("a"), references: [p("b")] },
      { path: p("b"), references: [p("a")] },
    ];
    expect(() => referencesFirst(infos)).toThrow(/cycle: .*-a -> .*-b -> .*-a/);
  });
});
