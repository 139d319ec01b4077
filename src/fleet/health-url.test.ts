import { describe, expect, it } from "vitest";
import { expandHealthUrl, fixedHost, healthUrlProblem, usesPlaceholder } from "./health-url.js";

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

  it("refuses an address of whatever machine asks: the deployer would ask itself", () => {
    for (const url of [
      "http://127.0.0.1:18099/health",
      "http://127.9.9.9/",
      "http://localhost:8080/",
      "http://api.localhost/",
      "http://169.254.169.254/latest/meta-data/",
      "http://0.0.0.0/",
      "http://[::1]:8080/",
      "http://[::]/",
      "http://[fe80::1]/",
      "http://[::ffff:127.0.0.1]/",
    ]) {
      expect(healthUrlProblem(url), url).toMatch(
        /^names .*, an address of whatever machine asks \(loopback, link-local or unspecified\): the deployer runs the HTTP checks, so it would ask itself, not the host; use \{address\} or \{name\}/,
      );
    }
    // A name or an address of its own is the author's to choose; a placeholder is the host's.
    expect(healthUrlProblem("http://10.0.0.9/")).toBeUndefined();
    expect(healthUrlProblem("http://{address}:8080/?via=127.0.0.1")).toBeUndefined();
    expect(fixedHost("http://{address}:8080/")).toBeUndefined();
    expect(fixedHost("http://Web.Example:80/")).toBe("web.example");
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
