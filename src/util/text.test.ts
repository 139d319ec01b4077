// Text from elsewhere, made safe to show: a record that is not JSON shows nothing of itself
// but Node's words, and a value quoted in a message has no control character.
import { describe, expect, it } from "vitest";
import { jsonErrorText, quoted, withoutControls } from "./text.js";

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

  it("says why a record is not JSON without the bytes it holds", () => {
    const text = jsonErrorText(parseError("\u001b[2J\u001b[3J\u001bc and more"));
    expect(text).toBe(withoutControls(text));
    expect(text).not.toContain("and more");
    expect(jsonErrorText(parseError(`{"a": ${"1".repeat(500)}x}`)).length).toBeLessThanOrEqual(200);
  });

  it("quotes a value as JSON, cut, with no control character", () => {
    expect(quoted("web\u001b]0;x\u0007")).toBe('"web\\u001b]0;x\\u0007"');
    expect(quoted("\u009b2J")).toBe('"\ufffd2J"');
    expect(quoted("y".repeat(100))).toBe(`"${"y".repeat(79)}…`);
    expect(quoted({ seq: 1 })).toBe('{"seq":1}');
  });
});
