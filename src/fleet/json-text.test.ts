import { describe, expect, it } from "vitest";
import { formatJsonPath } from "./json-path.js";
import { JSON_DEPTH_LIMIT, lineColumn, parseJsonText, tooDeep } from "./json-text.js";

describe("parseJsonText", () => {
  it("parses JSON, ignoring a byte order mark", () => {
    expect(parseJsonText('\uFEFF{"a": [1, "}"]}', "f")).toEqual({ a: [1, "}"] });
  });

  it("gives the line and column of a syntax error", () => {
    expect(() => parseJsonText('{\n  "a": 1,\n}', "f.json")).toThrow(
      /^f\.json:3:1: invalid JSON: expected double-quoted property name$/,
    );
    expect(() => parseJsonText("[1, 2", "f.json")).toThrow(/^f\.json:1:6: /);
  });

  it("does not quote the whole input back", () => {
    const text = `{"a": tru${" ".repeat(200)}}`;
    let message = "";
    try {
      parseJsonText(text, "f.json");
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/^f\.json(:\d+:\d+)?: invalid JSON: /);
    expect(message.length).toBeLessThan(80);
  });

  it("finds duplicate keys at any depth, and names where", () => {
    expect(() => parseJsonText('{"a": 1, "a": 2}', "f")).toThrow(
      /^f:1:10: \(top level\): duplicate key "a"$/,
    );
    const nested = '{"x": [{"k": 1}, {"k": 1, "\\u006b": 2}]}';
    expect(() => parseJsonText(nested, "f")).toThrow(/^f:1:27: x\[1\]: duplicate key "k"$/);
  });

  it("allows equal keys in different objects, and key-like strings among values", () => {
    const text =
      '{"a": {"b": 1}, "c": {"b": "a"}, "d": ["a", "a"], "e": "{\\"a\\": 1, \\"a\\": 2}"}';
    expect(parseJsonText(text, "f")).toMatchObject({ d: ["a", "a"] });
  });
});

describe("lineColumn", () => {
  it("counts from 1", () => {
    expect(lineColumn("ab\ncd", 0)).toBe("1:1");
    expect(lineColumn("ab\ncd", 4)).toBe("2:2");
  });
});

describe("formatJsonPath", () => {
  it("writes paths as a reader would", () => {
    expect(formatJsonPath([])).toBe("(top level)");
    expect(formatJsonPath(["hosts", "web-1", "tags", 2])).toBe("hosts.web-1.tags[2]");
    expect(formatJsonPath(["hosts", "a b"])).toBe('hosts["a b"]');
    expect(formatJsonPath(["$schema"])).toBe("$schema");
  });
});

describe("nesting depth", () => {
  it("refuses JSON nested deeper than the limit, naming where, before parsing it", () => {
    const deep = `${"[".repeat(JSON_DEPTH_LIMIT + 1)}${"]".repeat(JSON_DEPTH_LIMIT + 1)}`;
    expect(() => parseJsonText(deep, "f.json")).toThrow(
      `f.json:1:${JSON_DEPTH_LIMIT + 1}: objects and arrays nest deeper than ${JSON_DEPTH_LIMIT} levels`,
    );
    const ok = `${"[".repeat(JSON_DEPTH_LIMIT)}${"]".repeat(JSON_DEPTH_LIMIT)}`;
    expect(parseJsonText(ok, "f.json")).toBeInstanceOf(Array);
    // A million levels end the same way, quickly, with no stack to blow.
    expect(() => parseJsonText("[".repeat(1_000_000), "g.json")).toThrow(/nest deeper/);
  });

  it("does not count brackets inside strings", () => {
    expect(tooDeep(JSON.stringify({ a: "[".repeat(500), b: '\\"{{{' }))).toBeUndefined();
  });
});
