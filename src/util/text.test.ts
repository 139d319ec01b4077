// Text from elsewhere, made safe to show: a record that is not JSON shows nothing of itself
// but Node's words, and a value quoted in a message has no control character.
import { describe, expect, it } from "vitest";
import {
  clipped,
  jsonErrorText,
  oneLine,
  quoted,
  signatureKeyName,
  terminalJson,
  withoutControls,
} from "./text.js";

const parseError = (text: string): unknown => {
  try {
    JSON.parse(text);
  } catch (err) {
    return err;
  }
  throw new Error("parsed");
};

describe("text from elsewhere", () => {
  it("keeps newlines and tabs, and marks every other control character", () => {
    expect(withoutControls("a\tb\nc\u001b[2J\u009b\r")).toBe("a\tb\nc\ufffd[2J\ufffd\ufffd");
  });

  it("marks the characters that reorder what a terminal shows", () => {
    expect(withoutControls("report\u202etxt.exe \u2066x\u2069 \u200fy")).toBe(
      "report\ufffdtxt.exe \ufffdx\ufffd \u200fy",
    );
  });

  it("puts another's text on one line: no line of its own, as if nixship had said it", () => {
    expect(oneLine("bad request \r\nbake1: bake: passed\n\n\tok")).toBe(
      "bad request \ufffd bake1: bake: passed ok",
    );
  });

  it("says why a record is not JSON without the bytes it holds", () => {
    const text = jsonErrorText(parseError("\u001b[2J\u001b[3J\u001bc and more"));
    expect(text).toBe(withoutControls(text));
    expect(text).not.toContain("and more");
    expect(jsonErrorText(parseError(`{"a": ${"1".repeat(500)}x}`)).length).toBeLessThanOrEqual(200);
  });

  it("clips another's text to its length, the mark of the cut included, with no control character", () => {
    expect(clipped("a\u001bb", 3)).toBe("a\ufffdb");
    expect(clipped("abcd", 3)).toBe("ab…");
    expect(clipped("x".repeat(10_000), 2000)).toHaveLength(2000);
    expect(signatureKeyName(`\u001b]0;x\u0007${"k".repeat(500)}:c2ln`)).toBe(
      `\ufffd]0;x\ufffd${"k".repeat(93)}…`,
    );
    expect(signatureKeyName("cache-1:c2ln")).toBe("cache-1");
  });

  it("quotes a value as JSON, cut, with no control character", () => {
    expect(quoted("web\u001b]0;x\u0007")).toBe('"web\\u001b]0;x\\u0007"');
    expect(quoted("\u009b2J")).toBe('"\ufffd2J"');
    expect(quoted("y".repeat(100))).toBe(`"${"y".repeat(79)}…`);
    expect(quoted({ seq: 1 })).toBe('{"seq":1}');
  });
});

describe("terminalJson", () => {
  it("writes an infinity or NaN as PromQL's text, not as null (which says no value)", () => {
    expect(
      terminalJson({
        up: Number.POSITIVE_INFINITY,
        down: Number.NEGATIVE_INFINITY,
        nan: Number.NaN,
        one: 1,
        none: null,
      }),
    ).toBe('{"up":"+Inf","down":"-Inf","nan":"NaN","one":1,"none":null}');
  });

  const hostile = { error: "\u009b2J\u001b[H\u007fok\u0085 caf\u00e9" };

  it("escapes DEL and the C1 controls, which JSON.stringify leaves raw", () => {
    expect(JSON.stringify(hostile)).toMatch(/[\u007f-\u009f]/);
    const text = terminalJson(hostile, 2);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: what must not reach a terminal
    expect(text).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
    expect(text).toContain("\\u009b2J\\u001b[H\\u007fok\\u0085 café");
  });

  it("is the same value to a parser, indented as asked", () => {
    expect(JSON.parse(terminalJson(hostile))).toEqual(hostile);
    expect(terminalJson({ a: [1] }, 2)).toBe('{\n  "a": [\n    1\n  ]\n}');
    expect(terminalJson({ a: [1] })).toBe('{"a":[1]}');
  });
});
