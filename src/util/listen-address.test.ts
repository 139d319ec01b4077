import { describe, expect, it } from "vitest";
import { parseListen } from "./cache-serve.js";

describe("parseListen", () => {
  it.each([
    ["127.0.0.1:8080", { host: "127.0.0.1", port: 8080 }],
    ["localhost:0", { host: "localhost", port: 0 }],
    ["[::1]:5000", { host: "::1", port: 5000 }],
  ])("reads %s", (text, expected) => {
    expect(parseListen(text)).toEqual(expected);
  });

  it.each(["8080", "127.0.0.1", "127.0.0.1:65536", "::1:80", "host:port", ""])(
    "rejects '%s'",
    (text) => {
      expect(() => parseListen(text)).toThrow(/--listen must be HOST:PORT/);
    },
  );
});
