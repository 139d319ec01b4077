import { describe, expect, it } from "vitest";
import { closureWithin, type PathInfo } from "./closure.js";
import { Sha256 } from "./hash.js";
import type { StorePath } from "./store-path.js";

const path = (name: string) => `/nix/store/${"a".repeat(31)}${name[0]}-${name}` as StorePath;

function info(name: string, references: string[] = []): PathInfo {
  return {
    path: path(name),
    narHash: Sha256.of(Buffer.from(name)),
    narSize: 100,
    references: references.map(path),
    deriver: undefined,
    sigs: [],
    ca: undefined,
  };
}

/** The push's closure of two systems: a and b share lib, b also uses tool; lib refers to itself. */
const pushed = new Map(
  [info("a", ["lib"]), info("b", ["lib", "tool"]), info("lib", ["lib"]), info("tool")].map((i) => [
    i.path,
    i,
  ]),
);

describe("closureWithin", () => {
  it("takes a system's closure from a closure Nix gave, and no more of it", () => {
    const names = (infos: readonly PathInfo[] | undefined) =>
      infos?.map((i) => i.path.slice(44)).sort();
    expect(names(closureWithin([path("a")], pushed))).toEqual(["a", "lib"]);
    expect(names(closureWithin([path("a"), path("b")], pushed))).toEqual(["a", "b", "lib", "tool"]);
  });

  it("gives up, for Nix to be asked, where a root or a reference is not in it", () => {
    expect(closureWithin([path("c")], pushed)).toBeUndefined();
    const broken = new Map(pushed);
    broken.delete(path("tool"));
    expect(closureWithin([path("b")], broken)).toBeUndefined();
    expect(closureWithin([path("a")], new Map())).toBeUndefined();
    expect(closureWithin([], pushed)).toBeUndefined();
  });
});
