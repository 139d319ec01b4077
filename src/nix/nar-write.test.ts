import { describe, expect, it } from "vitest";
import { Sha256 } from "./hash.js";
import { buildNar, narNode, narString, narTokens, narU64 } from "./nar-write.js";

describe("NAR framing", () => {
  it("frames str() as a u64 LE length, the bytes and zero padding to 8", () => {
    expect(narString("").toString("hex")).toBe("0000000000000000");
    expect(narString("(").toString("hex")).toBe(`0100000000000000${"28"}${"00".repeat(7)}`);
    expect(narString("12345678")).toHaveLength(16);
    expect(narString("123456789")).toHaveLength(24);
    expect(narU64(0x0102030405060708n).toString("hex")).toBe("0807060504030201");
  });

  it("inserts raw tokens verbatim", () => {
    expect(narTokens({ raw: Buffer.from("xy") }, "a")).toEqual(
      Buffer.concat([Buffer.from("xy"), narString("a")]),
    );
  });

  it("reproduces the NAR of a file holding 'bar' (120 bytes, the known NarHash)", () => {
    const nar = buildNar(narNode.regular("bar"));
    expect(nar).toHaveLength(120);
    expect(Sha256.of(nar).format("nix32")).toBe(
      "sha256:1xngcmsdkdvaycaqjfzvq4gr3gib56p2l8illglnsqzhpss47pxz",
    );
  });

  it("keeps directory entries in the order given, so tests can break the ordering", () => {
    const nar = buildNar(
      narNode.directory([
        ["b", narNode.symlink("x")],
        ["a", narNode.regular("")],
      ]),
    );
    expect(nar.indexOf(narString("b"))).toBeLessThan(nar.indexOf(narString("a")));
  });
});
