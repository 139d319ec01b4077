import { describe, expect, it } from "vitest";
import { carriesToken, tokenIn } from "./bearer-token.js";

describe("carriesToken", () => {
  const token = "s3cret-token";
  it("takes the token as Bearer, or as Basic auth's password", () => {
    expect(carriesToken(`Bearer ${token}`, token)).toBe(true);
    const basic = Buffer.from(`nix:${token}`).toString("base64");
    expect(carriesToken(`Basic ${basic}`, token)).toBe(true);
  });
  it("refuses a missing, wrong, longer, shorter or differently sent token", () => {
    for (const header of [
      undefined,
      "",
      "Bearer ",
      "Bearer wrong",
      `Bearer ${token}x`,
      `Bearer ${token.slice(1)}`,
      `bearer ${token}`,
      token,
      `Basic ${Buffer.from(`nix:${token}x`).toString("base64")}`,
      // No colon: a user and no password.
      `Basic ${Buffer.from(token).toString("base64")}`,
    ]) {
      expect(carriesToken(header, token), String(header)).toBe(false);
    }
  });
});

// Every token file is read alike (the dashboard's: token.test.ts, cache serve's, Prometheus's).
const FILE_TOKEN = "Zm9vYmFyYmF6cXV4cXV1eDEyMzQ1Njc4";

describe("tokenIn", () => {
  it("takes one line, whitespace around it aside", () => {
    expect(tokenIn(`  ${FILE_TOKEN}\r\n`, "--token-file t", "make one")).toBe(FILE_TOKEN);
    // A password generator's, which a netrc gives Nix as a Basic password (the X3 audit's).
    expect(tokenIn("Xk9!mP2#rT5$wQ8&zL3*vB7@\n", "--token-file t", "make one")).toBe(
      "Xk9!mP2#rT5$wQ8&zL3*vB7@",
    );
  });

  it("refuses two lines and a space inside, naming the source and not the text", () => {
    for (const [text, said] of [
      [
        `${FILE_TOKEN}\nlistening on 0.0.0.0`,
        "--token-file t holds 2 lines: it must hold one token",
      ],
      [`${FILE_TOKEN} second`, "--token-file t holds a character a token cannot"],
    ] as const) {
      expect(() => tokenIn(text, "--token-file t", "make one")).toThrow(said);
      try {
        tokenIn(text, "--token-file t", "make one");
      } catch (err) {
        expect((err as Error).message).not.toContain(FILE_TOKEN);
        expect(err).toMatchObject({ code: "bad-token", hint: "make one" });
      }
    }
    expect(() => tokenIn(" \n", "--token-file t", "make one")).toThrow("--token-file t is empty");
  });
});
