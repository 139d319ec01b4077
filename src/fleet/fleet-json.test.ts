import { describe, expect, it } from "vitest";
import type { StorePath } from "../nix/store-path.js";
import type { FleetHost } from "./fleet.js";
import { parseFleet, parseFleetValue } from "./fleet-file.js";
import { formatFleet, hostToJson, upsertHosts, upsertHostsText } from "./fleet-json.js";

const KEY = "cache.example.org-1:lWwOmhFw0ds2rFa+bN7VVTYVXK7ujJv76J6gVTXevhM=";
const SYSTEM = "/nix/store/vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-nixos-system-db1" as StorePath;
const TARGETS = [{ key: "tag:Role", values: ["web", "api"] }];

const labHost = (name: string, address: string): FleetHost => ({
  name,
  tags: ["lab"],
  address,
  delivery: "ssh",
  sshHost: `lab-${name}`,
  system: { kind: "flake", installable: `path:./examples#${name}` },
});

describe("formatFleet", () => {
  it("writes deltas as the file said them: off, on, or with a tool", () => {
    const tool = "/nix/store/3q1xqvr3lzlbbg5z0adw4sw4fxfxdikq-zstd-1.5.6";
    for (const deltas of [false, true, { tool }]) {
      const fleet = parseFleetValue(
        { hosts: { web1: { address: "h", system: ".#w" } }, deltas },
        "f",
      );
      const text = formatFleet(fleet);
      expect(JSON.parse(text).deltas).toEqual(deltas);
      expect(parseFleet(text, "f")).toStrictEqual(fleet);
    }
  });

  it("writes a fleet that parses back to itself", () => {
    const fleet = parseFleetValue(
      {
        cache: { url: "file:///srv/cache", publicKeys: [KEY] },
        releases: { channel: "production", publicKeys: [KEY] },
        ssh: { knownHosts: "known_hosts" },
        ssm: { region: "eu-west-1" },
        policy: { canary: 2, health: { http: [{ url: "http://{address}/" }] } },
        hosts: {
          web1: { address: "10.0.0.2", sshHost: "lab-web1", system: ".#web" },
          i1: { delivery: "ssm", instanceId: "i-0123abcd", address: "10.0.0.3", system: SYSTEM },
          w: { delivery: "ssm", targets: TARGETS, address: "10.0.0.5", system: SYSTEM },
          a1: { delivery: "agent", tags: ["x"], address: "10.0.0.4", system: SYSTEM },
        },
      },
      "f",
    );
    const text = formatFleet(fleet);
    expect(text.endsWith("}\n")).toBe(true);
    expect(parseFleet(text, "f")).toStrictEqual(fleet);
    expect(Object.keys(JSON.parse(text))).toEqual([
      "cache",
      "releases",
      "ssh",
      "ssm",
      "policy",
      "hosts",
    ]);
  });

  it("leaves out ssm settings that are the defaults", () => {
    const fleet = parseFleetValue({ ssm: {}, hosts: { h: { address: "a", system: ".#h" } } }, "f");
    const text = formatFleet(fleet);
    expect(JSON.parse(text).ssm).toBeUndefined();
    expect(parseFleet(text, "f")).toStrictEqual(fleet);
  });

  it("writes hosts with only the fields they have", () => {
    const host: FleetHost = {
      name: "i1",
      tags: [],
      address: undefined,
      delivery: "ssm",
      instanceId: "i-0123abcd",
      targets: undefined,
      system: { kind: "store-path", path: SYSTEM },
    };
    expect(hostToJson(host)).toStrictEqual({
      delivery: "ssm",
      instanceId: "i-0123abcd",
      system: SYSTEM,
    });
    const targeted: FleetHost = { ...host, instanceId: undefined, targets: TARGETS };
    expect(hostToJson(targeted)).toStrictEqual({
      delivery: "ssm",
      targets: TARGETS,
      system: SYSTEM,
    });
    expect((hostToJson(targeted).targets as unknown[])[0]).not.toBe(TARGETS[0]);
  });
});

describe("upsertHosts", () => {
  const existing = {
    $schema: "./nixship.schema.json",
    cache: { url: "file:///srv/cache", publicKeys: [KEY] },
    hosts: {
      mine: { address: "192.0.2.9", system: ".#mine", comment_kept: "untouched" },
      web1: { address: "old", system: ".#old" },
    },
    policy: { parallel: 2 },
  };

  it("replaces hosts in place, appends new ones, and leaves the rest alone", () => {
    const merged = upsertHosts(existing, [
      labHost("web2", "10.0.0.3"),
      labHost("web1", "10.0.0.2"),
    ]);
    expect(Object.keys(merged)).toEqual(["$schema", "cache", "hosts", "policy"]);
    expect(merged.policy).toBe(existing.policy);
    const hosts = merged.hosts as Record<string, unknown>;
    expect(Object.keys(hosts)).toEqual(["mine", "web1", "web2"]);
    expect(hosts.mine).toBe(existing.hosts.mine);
    expect(hosts.web1).toEqual({
      tags: ["lab"],
      address: "10.0.0.2",
      sshHost: "lab-web1",
      delivery: "ssh",
      system: "path:./examples#web1",
    });
    expect(existing.hosts.web1).toEqual({ address: "old", system: ".#old" });
  });

  it("starts a fleet from nothing", () => {
    expect(Object.keys(upsertHosts(undefined, [labHost("web1", "10.0.0.2")]))).toEqual(["hosts"]);
  });

  it("refuses what it cannot merge into", () => {
    expect(() => upsertHosts([], [])).toThrow(/must be a JSON object/);
    expect(() => upsertHosts(null, [])).toThrow(/must be a JSON object/);
    expect(() => upsertHosts({ hosts: [] }, [])).toThrow(/"hosts" must be an object/);
    expect(() => upsertHosts({ hosts: null }, [])).toThrow(/"hosts" must be an object/);
    const web1 = labHost("web1", "a");
    expect(() => upsertHosts({}, [web1, web1])).toThrow(/host "web1" is given twice/);
  });
});

describe("upsertHostsText", () => {
  it("merges into fleet-file text and checks the result", () => {
    const text = upsertHostsText(undefined, [labHost("web1", "10.0.0.2")], "lab.json");
    const again = upsertHostsText(text, [labHost("web2", "10.0.0.3")], "lab.json");
    expect(parseFleet(again, "lab.json").hosts.map((h) => h.name)).toEqual(["web1", "web2"]);
  });

  it("will not write a fleet that would not load", () => {
    const broken = JSON.stringify({ hosts: { x: { system: ".#x", address: "a", typo: 1 } } });
    expect(() => upsertHostsText(broken, [labHost("web1", "a")], "lab.json")).toThrow(
      /^lab\.json: hosts\.x\.typo: unknown key/,
    );
  });
});
