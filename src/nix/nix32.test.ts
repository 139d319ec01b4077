import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { nix32Decode, nix32Encode, nix32Length } from "./nix32.js";

describe("nix32", () => {
  it("encodes sha256('abc') as Nix does", () => {
    const digest = createHash("sha256").update("abc").digest();
    expect(nix32Encode(digest)).toBe("1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s");
  });

  it("has Nix's lengths", () => {
    expect(nix32Length(20)).toBe(32);
    expect(nix32Length(32)).toBe(52);
    expect(nix32Length(1)).toBe(2);
  });

  it("round-trips random bytes of many lengths", () => {
    for (let n = 1; n < 70; n++) {
      const bytes = createHash("sha512")
        .update(String(n))
        .digest()
        .subarray(0, n % 64 || 1);
      expect(Buffer.from(nix32Decode(nix32Encode(bytes), bytes.length))).toEqual(
        Buffer.from(bytes),
      );
    }
  });

  it("rejects characters outside the alphabet", () => {
    expect(() => nix32Decode("1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5e")).toThrow(
      /invalid nix32 character 'e'/,
    );
  });

  it("rejects bits left over past the last byte", () => {
    // 52 chars hold 260 bits; the top 4 must be zero for 32 bytes. 'z' (31) in front sets them.
    expect(() => nix32Decode(`z${"0".repeat(51)}`, 32)).toThrow(/bits set past the last byte/);
  });

  it("rejects a length that does not fit the byte count", () => {
    expect(() => nix32Decode("abc", 32)).toThrow(/cannot hold 32 bytes/);
  });
});
