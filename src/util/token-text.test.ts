// Every token file is read alike: one line of token characters, or a refusal that names the
// file and never quotes it (the dashboard's: token.test.ts, cache serve's and Prometheus's).
import { describe, expect, it } from "vitest";
import { tokenIn } from "./token-text.js";

const TOKEN = "Zm9vYmFyYmF6cXV4cXV1eDEyMzQ1Njc4";

describe("tokenIn", () => {
  it("takes one line, whitespace around it aside", () => {
    expect(tokenIn(`  ${TOKEN}\r\n`, "--token-file t", "make one")).toBe(TOKEN);
  });

  it("refuses two lines and a space inside, naming the source and not the text", () => {
    for (const [text, said] of [
      [`${TOKEN}\nlistening on 0.0.0.0`, "--token-file t holds 2 lines: it must hold one token"],
      [`${TOKEN} second`, "--token-file t holds a character a token cannot"],
    ] as const) {
      expect(() => tokenIn(text, "--token-file t", "make one")).toThrow(said);
      try {
        tokenIn(text, "--token-file t", "make one");
      } catch (err) {
        expect((err as Error).message).not.toContain(TOKEN);
        expect(err).toMatchObject({ code: "bad-token", hint: "make one" });
      }
    }
    expect(() => tokenIn(" \n", "--token-file t", "make one")).toThrow("--token-file t is empty");
  });
});
