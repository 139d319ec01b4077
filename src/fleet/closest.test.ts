import { describe, expect, it } from "vitest";
import { closestFirst, editDistance, likelyTypo, listForHint } from "./closest.js";

describe("closest", () => {
  it("measures edit distance", () => {
    expect(editDistance("", "abc")).toBe(3);
    expect(editDistance("kitten", "sitting")).toBe(3);
    expect(editDistance("web1", "web1")).toBe(0);
  });

  it("orders candidates closest first, keeping ties in order", () => {
    expect(closestFirst("web3", ["db1", "web1", "web2", "web1"])).toEqual(["web1", "web2", "db1"]);
  });

  it("suggests only plausible typos", () => {
    expect(likelyTypo("paralel", ["parallel", "canary"])).toBe("parallel");
    expect(likelyTypo("colour", ["hosts", "cache"])).toBeUndefined();
    expect(likelyTypo("x", [])).toBeUndefined();
  });

  it("cuts long lists for hints", () => {
    expect(listForHint(["a", "b", "c"], 2)).toBe("a, b, … (1 more)");
    expect(listForHint(["a"])).toBe("a");
  });
});
