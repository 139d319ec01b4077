import { describe, expect, it } from "vitest";
import { bearerToken, openMetrics } from "./prometheus-input.js";

const SECRET = "tok-SECRET-1";

describe("the bearer token file", () => {
  it("takes one token, a trailing newline and spaces around it aside", () => {
    expect(bearerToken(`${SECRET}\n`, "f")).toBe(SECRET);
    expect(bearerToken("  abc.DEF_~+/123==\r\n", "f")).toBe("abc.DEF_~+/123==");
  });

  it("refuses an empty file, two lines, or characters no header takes, never quoting them", () => {
    expect(() => bearerToken("\n", "/etc/prom.token")).toThrow(
      "prometheus.bearerTokenFile /etc/prom.token is empty",
    );
    for (const [text, said] of [
      [`${SECRET}\ntok-SECRET-2\n`, "holds 2 lines"],
      [`${SECRET}\n# a comment`, "holds 2 lines"],
      ["tok SECRET", "holds a character a token cannot"],
      ["tok\u0007SECRET", "holds a character a token cannot"],
      ["tök-SECRET", "holds a character a token cannot"],
    ] as const) {
      let message = "";
      try {
        bearerToken(text, "f");
      } catch (err) {
        message = `${(err as Error).message} ${(err as { hint?: string }).hint ?? ""}`;
      }
      expect(message).toContain(said);
      expect(message).not.toContain("SECRET");
    }
  });
});

describe("opening the fleet's Prometheus", () => {
  const fleet = {
    prometheus: {
      url: "http://127.0.0.1:9",
      timeout: 5,
      bearerTokenFile: "/nonexistent/nixship-test/prom.token",
    },
  };

  it("reads the token file when the command asks it, and names the file it cannot read", async () => {
    await expect(openMetrics(fleet)).rejects.toThrow("/nonexistent/nixship-test/prom.token");
  });

  it("reads nothing when the command cannot ask it (a deploy that does not bake)", async () => {
    await expect(openMetrics(fleet, false)).resolves.toBeUndefined();
  });
});
