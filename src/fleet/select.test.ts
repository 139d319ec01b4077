import { describe, expect, it } from "vitest";
import type { FleetHost } from "./fleet.js";
import { globMatcher, parseSelector, selectHosts } from "./select.js";

const host = (name: string, tags: string[]): FleetHost => ({
  name,
  tags,
  address: `${name}.lan`,
  delivery: "ssh",
  sshHost: undefined,
  system: { kind: "flake", installable: `.#${name}` },
});

const fleet = {
  hosts: [
    host("web1", ["web", "eu"]),
    host("db1", ["db-main", "eu"]),
    host("web2", ["web", "us"]),
    host("db2", ["db-replica", "us"]),
    host("cache1", []),
  ],
};

const names = (selector: string | undefined) => selectHosts(fleet, selector).map((h) => h.name);

function errorOf(selector: string): { code: string; message: string; hint: string | undefined } {
  try {
    selectHosts(fleet, selector);
  } catch (err) {
    return err as { code: string; message: string; hint: string | undefined };
  }
  throw new Error(`selector ${selector} did not fail`);
}

describe("selectHosts", () => {
  it("selects every host without a selector", () => {
    expect(names(undefined)).toEqual(["web1", "db1", "web2", "db2", "cache1"]);
  });

  it("unites names and tags, in fleet order, each host once", () => {
    expect(names("db2,@web")).toEqual(["web1", "web2", "db2"]);
    expect(names("web1,@eu,web1")).toEqual(["web1", "db1"]);
    expect(names(" web2 , db1 ")).toEqual(["db1", "web2"]);
  });

  it("takes * as a wildcard in names and tags", () => {
    expect(names("@db-*")).toEqual(["db1", "db2"]);
    expect(names("*1")).toEqual(["web1", "db1", "cache1"]);
    expect(names("w*b*")).toEqual(["web1", "web2"]);
    expect(names("*")).toEqual(["web1", "db1", "web2", "db2", "cache1"]);
    expect(names("@*")).toEqual(["web1", "db1", "web2", "db2"]);
  });

  it("refuses empty terms", () => {
    for (const selector of ["", "web1,", ",web1", "web1,,db1", "@"]) {
      expect(errorOf(selector).code, selector).toBe("bad-selector");
    }
    expect(errorOf("@").message).toBe('selector "@" has a "@" with no tag');
    expect(errorOf("web1,,db1").message).toBe('selector "web1,,db1" has an empty term');
  });

  it("refuses bad characters", () => {
    expect(errorOf("web_1").message).toBe(
      'selector term "web_1" has characters other than a-z, 0-9, "-" and "*"',
    );
    expect(errorOf("Web1").hint).toBe("host names and tags are lowercase");
    expect(errorOf("@web?").code).toBe("bad-selector");
    expect(errorOf("@@web").code).toBe("bad-selector");
  });

  it("refuses a term that matches nothing, hinting at the closest names", () => {
    const error = errorOf("web1,web3");
    expect(error.message).toBe('selector term "web3" matches no host');
    expect(error.hint).toBe("known hosts, closest first: web1, web2, db1, db2, cache1");
    expect(errorOf("@wbe").hint).toBe(
      "known tags, closest first: web, eu, us, db-main, db-replica",
    );
    expect(errorOf("x*").message).toBe('selector term "x*" matches no host');
  });

  it("spots a tag written as a name and a name written as a tag", () => {
    expect(errorOf("web").hint).toBe('"web" is a tag; write @web');
    expect(errorOf("@web1").hint).toBe('"web1" is a host name; write it without "@"');
  });

  it("says when no host has tags", () => {
    expect(() => selectHosts({ hosts: [host("a", [])] }, "@x")).toThrow(
      expect.objectContaining({ hint: "no host in the fleet has tags" }),
    );
  });
});

describe("parseSelector and globMatcher", () => {
  it("splits terms", () => {
    expect(parseSelector("web1,@db-*")).toEqual([
      { text: "web1", kind: "name", pattern: "web1" },
      { text: "@db-*", kind: "tag", pattern: "db-*" },
    ]);
  });

  it("matches whole strings only", () => {
    expect(globMatcher("web")("web1")).toBe(false);
    expect(globMatcher("web*")("web")).toBe(true);
    expect(globMatcher("*-eu")("db-eu")).toBe(true);
    expect(globMatcher("*-eu")("db-eu-2")).toBe(false);
  });
});
