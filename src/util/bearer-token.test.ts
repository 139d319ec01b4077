import { describe, expect, it } from "vitest";
import { carriesToken } from "./bearer-token.js";

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
