import { describe, expect, it } from "vitest";
import { InputError } from "../errors.js";
import { compareKeys, pageLimit, validateKey, validatePrefix } from "./keys.js";

describe("validateKey", () => {
  it.each([
    "nix-cache-info",
    "abc.narinfo",
    "nar/0a1b.nar.xz",
    ".hidden/x",
    "a/..b/c.",
    "ünïcødé/日本",
    "emoji/😀",
    "x".repeat(1024),
  ])("accepts %j", (key) => {
    expect(validateKey(key)).toBe(key);
  });

  it.each([
    ["", "empty"],
    ["/abs", 'starts with "/"'],
    ["a//b", "empty segment"],
    ["a/", "empty segment"],
    ["../x", '".." segment'],
    ["a/../b", '".." segment'],
    ["./a", '"." segment'],
    ["a/.", '"." segment'],
    ["a\\b", "backslash"],
    ["a\u0000b", "control"],
    ["a\nb", "control"],
    ["a\u007fb", "control"],
    ["bad\ud800", "lone surrogate"],
    ["x".repeat(1025), "over 1024 bytes"],
    ["é".repeat(513), "over 1024 bytes"],
    ["a/.b.nixship-lock", "reserved"],
    ["a/.b.nixship-tmp-0f3a", "reserved"],
  ])("rejects %j (%s)", (key, why) => {
    try {
      validateKey(key);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(InputError);
      expect((err as InputError).code).toBe("bad-object-key");
      expect((err as InputError).exitCode).toBe(2);
      expect((err as Error).message).toContain(why);
      expect((err as Error).message).toContain(JSON.stringify(key).slice(0, 20));
    }
  });
});

describe("validatePrefix", () => {
  it.each(["", "nar/", "nar/ab", "a/.", "a/.."])("accepts %j", (prefix) => {
    expect(validatePrefix(prefix)).toBe(prefix);
  });
  it.each(["/", "../", "a//", "a\\"])("rejects %j", (prefix) => {
    expect(() => validatePrefix(prefix)).toThrow(InputError);
  });
});

describe("compareKeys", () => {
  it("orders by UTF-8 bytes, unlike JS string comparison on astral characters", () => {
    const keys = ["\uffff", "😀", "a/b", "a-b", "A", "é"];
    expect([...keys].sort(compareKeys)).toEqual(["A", "a-b", "a/b", "é", "\uffff", "😀"]);
    expect("😀" < "\uffff").toBe(true); // JS compares UTF-16 code units
  });
});

describe("pageLimit", () => {
  it("defaults to and caps at 1000", () => {
    expect(pageLimit(undefined)).toBe(1000);
    expect(pageLimit(5000)).toBe(1000);
    expect(pageLimit(10)).toBe(10);
  });
  it.each([0, -1, 1.5, Number.NaN])("rejects %s", (limit) => {
    expect(() => pageLimit(limit)).toThrow(/bad list limit/);
  });
});
