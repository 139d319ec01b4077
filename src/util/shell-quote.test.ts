import { describe, expect, it } from "vitest";
import { shellQuote, shellWord } from "./shell-quote.js";

describe("shellWord", () => {
  it("leaves a word a shell takes as it is, and quotes any other", () => {
    expect(shellWord("/tmp/lab/nixship.json")).toBe("/tmp/lab/nixship.json");
    expect(shellWord("path:/x#nixship")).toBe("'path:/x#nixship'");
    expect(shellWord("my fleet.json")).toBe("'my fleet.json'");
    expect(shellWord("it's")).toBe(shellQuote("it's"));
    expect(shellWord("")).toBe("''");
  });
});
