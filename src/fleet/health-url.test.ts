import { describe, expect, it } from "vitest";
import { expandHealthUrl, healthUrlProblem, usesPlaceholder } from "./health-url.js";

describe("health URLs", () => {
  it("accepts http(s) URLs with {address} and {name}", () => {
    expect(healthUrlProblem("http://{address}:8080/health")).toBeUndefined();
    expect(healthUrlProblem("https://{name}.lan/health?q={address}")).toBeUndefined();
    expect(healthUrlProblem("http://fixed.example/health")).toBeUndefined();
  });

  it("names what is wrong", () => {
    expect(healthUrlProblem("http://{host}/")).toMatch(/unknown placeholder \{host\}/);
    expect(healthUrlProblem("http://{}/")).toMatch(/unknown placeholder \{\}/);
    expect(healthUrlProblem("http://{address/")).toMatch(/unmatched/);
    expect(healthUrlProblem("http://address}/")).toMatch(/unmatched/);
    expect(healthUrlProblem("{address}/health")).toBe("is not a valid URL");
    expect(healthUrlProblem("file:///etc/passwd")).toMatch(/http/);
  });

  it("fills in a host, bracketing IPv6 addresses", () => {
    const url = "http://{address}:8080/{name}";
    expect(expandHealthUrl(url, { name: "web1", address: "10.0.0.2" })).toBe(
      "http://10.0.0.2:8080/web1",
    );
    expect(expandHealthUrl(url, { name: "web1", address: "fd00::2" })).toBe(
      "http://[fd00::2]:8080/web1",
    );
    expect(usesPlaceholder(url, "address")).toBe(true);
    expect(usesPlaceholder("http://x/", "name")).toBe(false);
  });
});
