// Policy per role: parsing `policies` from the fleet file and merging it per host.
import { describe, expect, it } from "vitest";
import { FleetFileError, parseFleetValue } from "./fleet-file.js";
import { formatFleet } from "./fleet-json.js";
import { hostPolicy, keepGenerationsOf, longestActivationTimeout, roleOf } from "./host-policy.js";

const API_CHECK = { url: "http://{address}:8080/health", expectStatus: 200, timeout: 5 };
const fleetDoc = (policies: unknown, extra: object = {}) => ({
  policy: {
    confirmTimeout: 20,
    health: { commands: [{ run: "systemctl is-system-running" }] },
  },
  policies,
  hosts: {
    api1: { tags: ["api", "eu"], address: "10.0.0.1", system: ".#api1" },
    api2: { tags: ["api"], address: "10.0.0.2", system: ".#api2" },
    worker1: { tags: ["worker", "eu"], sshHost: "worker1-alias", system: ".#worker1" },
  },
  ...extra,
});

function problemsOf(doc: unknown): string[] {
  try {
    parseFleetValue(doc, "f");
  } catch (err) {
    if (err instanceof FleetFileError)
      return err.problems.map((p) => `${p.path.join(".")}: ${p.message}`);
    throw err;
  }
  return [];
}

describe("policies", () => {
  it("gives each role its own checks, tags first, then names, flags last", () => {
    const fleet = parseFleetValue(
      fleetDoc({
        "@api": { health: { http: [{ url: API_CHECK.url }] }, activationTimeout: 900 },
        "@eu": { confirmTimeout: 40 },
        api2: { confirmTimeout: 5, health: { commands: [] } },
      }),
      "f",
    );
    const of = (name: string, flags = {}) =>
      hostPolicy(
        fleet.policy,
        fleet.policies,
        fleet.hosts.find((h) => h.name === name) as never,
        flags,
      );
    expect(of("api1")).toMatchObject({
      confirmTimeout: 40,
      activationTimeout: 900,
      health: {
        http: [API_CHECK],
        commands: [{ run: "systemctl is-system-running", timeout: 10 }],
      },
    });
    // A host's own entry comes after its tags', and can take a list away.
    expect(of("api2")).toMatchObject({
      confirmTimeout: 5,
      health: { http: [API_CHECK], commands: [] },
    });
    // The worker runs none of the API's checks.
    expect(of("worker1")).toMatchObject({
      confirmTimeout: 40,
      activationTimeout: 600,
      health: { http: [], commands: [{ run: "systemctl is-system-running", timeout: 10 }] },
    });
    // The command line's flags win over every entry.
    expect(of("api2", { confirmTimeout: 60 }).confirmTimeout).toBe(60);
  });

  it("makes a role of tags and name globs, not of an entry that names one host", () => {
    const rules = [
      { selector: "@web", override: { canary: 1 } },
      { selector: "web2", override: { activationTimeout: 300 } },
      { selector: "db*", override: { canary: 1 } },
    ];
    const role = (name: string, tags: string[]) => roleOf(rules, { name, tags });
    expect(role("web1", ["web"])).toBe("@web");
    // Its own timeout leaves web2 in @web: it shares @web's canary.
    expect(role("web2", ["web"])).toBe("@web");
    expect(role("db1", [])).toBe("db*");
    expect(role("cache1", [])).toBe("");
  });

  it("refuses an entry that matches no host, a key that is not one term, and maxFailures", () => {
    expect(
      problemsOf(
        fleetDoc({
          "@apl": { confirmTimeout: 1 },
          "api1,api2": {},
          "@API": {},
          worker9: {},
          "@api": { maxFailures: 3 },
        }),
      ),
    ).toEqual([
      'policies.@apl: matches no host: no host has tag "apl" (did you mean "@api"?)',
      "policies.api1,api2: names one host or @tag (one entry each)",
      'policies.@API: is not a host name or @tag: selector term "@API" has characters other than a-z, 0-9, "-" and "*" (host names and tags are lowercase)',
      'policies.worker9: matches no host: no host is named "worker9" (did you mean "worker1"?)',
      "policies.@api.maxFailures: unknown key (known keys: parallel, canary, confirmTimeout, activationTimeout, keepGenerations, reboot, rebootTimeout, rebootRollback, requirePinned, deltas, health, bake, analysis)",
    ]);
  });

  it("says nothing of an entry's host or tag while a host has a problem of its own", () => {
    // worker1 is there, with a bad field: only that field is named, not "no host is named
    // worker1", nor "no host has tag worker" (its tags could not be read either).
    const doc = fleetDoc({ worker1: { canary: 1 }, "@worker": {} });
    const bad = {
      ...doc,
      hosts: { ...doc.hosts, worker1: { ...doc.hosts.worker1, tags: "worker", sudo: "yes" } },
    };
    expect(problemsOf(bad)).toEqual([
      'hosts.worker1.tags: must be an array (got "worker")',
      'hosts.worker1.sudo: must be true or false (got "yes")',
    ]);
  });

  it("asks for an address only on the hosts whose role's checks use it", () => {
    expect(
      problemsOf(fleetDoc({ "@api": { health: { http: [{ url: API_CHECK.url }] } } })),
    ).toEqual([]);
    expect(problemsOf(fleetDoc({ "@eu": { health: { http: [{ url: API_CHECK.url }] } } }))).toEqual(
      ['hosts.worker1: has no "address", but policies["@eu"].health.http[0].url uses {address}'],
    );
  });

  it("survives formatting: a fleet written out reads back the same", () => {
    const fleet = parseFleetValue(
      fleetDoc({ "@api": { health: { http: [{ url: API_CHECK.url }] } }, "work*": { canary: 0 } }),
      "f",
    );
    const again = parseFleetValue(JSON.parse(formatFleet(fleet)), "f");
    expect(again.policies).toEqual(fleet.policies);
  });
});

describe("longestActivationTimeout", () => {
  const fleet = parseFleetValue(
    {
      policy: { activationTimeout: 600 },
      policies: { "@db": { activationTimeout: 1200 }, web9: { activationTimeout: 60 } },
      hosts: {
        web1: { address: "10.0.0.1", tags: ["web"], system: ".#web" },
        web9: { address: "10.0.0.9", tags: ["web"], system: ".#web" },
        db1: { address: "10.0.0.5", tags: ["db"], system: ".#db" },
      },
    },
    "nixship.json",
  );
  const named = (...names: string[]) => fleet.hosts.filter((h) => names.includes(h.name));

  it("is a role's own where it is the longest, else the fleet's", () => {
    expect(longestActivationTimeout(fleet, named("db1"))).toBe(1200);
    expect(longestActivationTimeout(fleet, named("web1", "db1"))).toBe(1200);
    expect(longestActivationTimeout(fleet, named("web1"))).toBe(600);
  });

  it("is a host's own where it is shorter, and the fleet's for no host", () => {
    expect(longestActivationTimeout(fleet, named("web9"))).toBe(60);
    expect(longestActivationTimeout(fleet, [])).toBe(600);
  });
});

describe("keepGenerationsOf", () => {
  const fleet = parseFleetValue(
    {
      policy: { keepGenerations: 1 },
      policies: { "@db": { keepGenerations: 3 }, "@cache": { keepGenerations: 0 } },
      hosts: {
        web1: { address: "10.0.0.1", tags: ["web"], system: ".#web" },
        db1: { address: "10.0.0.5", tags: ["db"], system: ".#db" },
        c1: { address: "10.0.0.6", tags: ["cache"], system: ".#c" },
      },
    },
    "nixship.json",
  );

  it("is each host's own (a role's), the fleet's for a host it no longer names, none for 0", () => {
    const keep = keepGenerationsOf(fleet);
    expect(["web1", "db1", "c1", "gone"].map(keep)).toEqual([1, 3, undefined, 1]);
  });
});
