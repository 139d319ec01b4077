// The dashboard's token: one line of token characters (as every token file), then long enough.
import { describe, expect, it } from "vitest";
import { checkToken } from "./token.js";

const TOKEN = "Zm9vYmFyYmF6cXV4cXV1eDEyMzQ1Njc4";

describe("checkToken", () => {
  it("takes one line of token characters, then at least 16 of them", () => {
    expect(() => checkToken(`${TOKEN}\n${TOKEN}`, "--token-file t", "t")).toThrow("holds 2 lines");
    expect(() => checkToken("short", "--token-file t", "t")).toThrow("needs at least 16");
    expect(checkToken(`${TOKEN}\n`, "--token-file t", "t")).toBe(TOKEN);
  });
});
