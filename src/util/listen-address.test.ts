import { describe, expect, it } from "vitest";
import { isLoopback, isUnspecified, parseListen } from "./listen-address.js";

describe("parseListen", () => {
  it.each([
    ["127.0.0.1:8080", { host: "127.0.0.1", port: 8080 }],
    ["localhost:0", { host: "localhost", port: 0 }],
    ["[::1]:5000", { host: "::1", port: 5000 }],
  ])("reads %s", (text, expected) => {
    expect(parseListen(text, "cache serve: --listen")).toEqual(expected);
  });

  it.each(["8080", "127.0.0.1", "127.0.0.1:65536", "::1:80", "host:port", ""])(
    "rejects '%s', naming the flag",
    (text) => {
      expect(() => parseListen(text, "dashboard: --listen")).toThrow(
        /^dashboard: --listen must be HOST:PORT/,
      );
    },
  );
});

describe("isLoopback", () => {
  it.each(["127.0.0.1", "127.3.4.5", "::1", "localhost"])("%s is loopback", (host) => {
    expect(isLoopback(host)).toBe(true);
  });
  it.each(["0.0.0.0", "::", "10.0.0.1", "192.168.1.2", "example.org", "128.0.0.1", "::2"])(
    "%s is not",
    (host) => {
      expect(isLoopback(host)).toBe(false);
    },
  );
});

describe("isUnspecified", () => {
  it.each([
    "0.0.0.0",
    "0",
    "0x0",
    "000.0.0.0",
    "::",
    "::0",
    "0:0:0:0:0:0:0:0",
    "::ffff:0.0.0.0",
    "*",
  ])("%s is the unspecified address", (host) => {
    expect(isUnspecified(host)).toBe(true);
  });
  it.each(["10.0.0.1", "0.0.0.1", "::1", "127.0.0.1", "localhost", "example.org", "fe80::1"])(
    "%s is not",
    (host) => {
      expect(isUnspecified(host)).toBe(false);
    },
  );
});
