// Whether a string is a view into another is V8's own business: %HaveSameMap (natives syntax,
// allowed for the functions compiled below) tells a slice from a string with characters of its
// own, by comparing its hidden class with strings known to be one or the other.
import v8 from "node:v8";
import { describe, expect, it } from "vitest";
import { detached } from "../util/detached.js";
import { parseNarInfo } from "./narinfo.js";

v8.setFlagsFromString("--allow-natives-syntax");
const haveSameMap = new Function("a", "b", "return %HaveSameMap(a, b)") as (
  a: string,
  b: string,
) => boolean;

const WHOLE = `${"x".repeat(100)}abcdefghijklmnopqrstuvwxyz0123456789`;
const A_SLICE = WHOLE.slice(50, 120);
const OWN = Buffer.from("a string with characters of its own", "latin1").toString("latin1");

/** Whether `s` is a view into a larger string (which it keeps alive). */
function isSlice(s: string): boolean {
  return haveSameMap(s, A_SLICE);
}

describe("detached", () => {
  it("tells a slice from a string of its own (so the checks below mean something)", () => {
    expect(isSlice(WHOLE.slice(20, 90))).toBe(true);
    expect(isSlice(OWN)).toBe(false);
    expect(haveSameMap(OWN, Buffer.from("another one", "latin1").toString("latin1"))).toBe(true);
  });

  it("copies a slice into a string of its own, characters and all", () => {
    const cut = WHOLE.slice(60, 130);
    const copy = detached(cut);
    expect(copy).toBe(cut);
    expect(isSlice(copy)).toBe(false);
    expect(detached("/nix/store/é-ü")).toBe("/nix/store/é-ü");
  });

  it("leaves no field of a parsed narinfo a view into the narinfo's text", () => {
    const hash = "0c6kzph7l0dcbfmjap64f0czdafn3b7x";
    const narHash = "0zv4fhnbkgjmhd0fxnnhfwl9f4vjxf4kr1qbh1a4qh5kqn8g8w5r";
    const text = [
      `StorePath: /nix/store/${hash}-hello-2.12`,
      `URL: nar/${narHash}.nar.zst`,
      "Compression: zstd",
      `NarHash: sha256:${narHash}`,
      "NarSize: 12",
      `References: ${hash}-hello-2.12 1c6kzph7l0dcbfmjap64f0czdafn3b7x-glibc-2.40`,
      `Deriver: 2c6kzph7l0dcbfmjap64f0czdafn3b7x-hello-2.12.drv`,
      `Sig: cache.example.org-1:${"A".repeat(86)}==`,
      `CA: fixed:r:sha256:${narHash}`,
      "",
    ].join("\n");
    const info = parseNarInfo(Buffer.from(text).toString());
    const kept = [
      info.storePath,
      info.url,
      info.deriver,
      info.ca,
      ...info.references,
      ...info.sigs,
    ];
    expect(kept).toHaveLength(7);
    for (const s of kept) {
      expect(typeof s).toBe("string");
      expect(isSlice(s as string), s).toBe(false);
    }
  });
});
