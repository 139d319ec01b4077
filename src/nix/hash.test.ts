import { describe, expect, it } from "vitest";
import { Sha256 } from "./hash.js";

// From a real `nix path-info --json` (SRI) and the narinfo Nix wrote (nix32) for the same path.
const SRI = "sha256-HDfQGvQL4ugGkd48w99EN3ppmvuxfGjwgJZLL9Bx/BM=";
const NIX32 = "sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw";

describe("Sha256", () => {
  it("parses SRI and prints nix32 as Nix does for the same digest", () => {
    expect(Sha256.parse(SRI).format("nix32")).toBe(NIX32);
    expect(Sha256.parse(NIX32).format("sri")).toBe(SRI);
  });

  it("parses and prints every form", () => {
    const h = Sha256.of("abc");
    for (const form of ["nix32", "hex", "base64", "sri"] as const) {
      expect(Sha256.parse(h.format(form)).equals(h)).toBe(true);
    }
    expect(h.format("hex")).toBe(
      "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
    expect(Sha256.parse(h.hex).equals(h)).toBe(true);
    expect(Sha256.parse(h.nix32).equals(h)).toBe(true);
  });

  it("rejects other algorithms and malformed digests with the text in the message", () => {
    expect(() => Sha256.parse("md5:abc")).toThrow(/unsupported hash type in 'md5:abc'/);
    expect(() => Sha256.parse("sha256:xyz")).toThrow(/'sha256:xyz' is not a sha256 hash/);
    expect(() => Sha256.parse("sha256-!!!")).toThrow(/not valid base64/);
  });
});
