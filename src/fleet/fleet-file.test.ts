import { describe, expect, it } from "vitest";
import { InputError } from "../errors.js";
import { FleetFileError, parseFleet, parseFleetValue, resolveSshPaths } from "./fleet-file.js";

const KEY = "cache.example.org-1:lWwOmhFw0ds2rFa+bN7VVTYVXK7ujJv76J6gVTXevhM=";
const DB_SYSTEM = "/nix/store/vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-nixos-system-db1";

const EXAMPLE = {
  $schema: "./nixship.schema.json",
  cache: {
    url: "s3://my-cache/nix?region=eu-west-1",
    publicKeys: [KEY],
    substituter: "http://10.231.1.1:8080",
  },
  ssh: { configFile: "lab/ssh_config", knownHosts: "lab/known_hosts" },
  policy: {
    parallel: 4,
    health: {
      http: [{ url: "http://{address}/health" }],
      commands: [{ run: "systemctl is-system-running", timeout: 20 }],
    },
  },
  hosts: {
    web1: {
      tags: ["web", "eu"],
      address: "10.231.1.2",
      sshHost: "lab-web1",
      delivery: "ssh",
      system: "path:./examples#web-v1",
    },
    db1: { tags: ["db"], address: "db1.example.com", system: DB_SYSTEM },
    i1: {
      delivery: "ssm",
      instanceId: "i-0123456789abcdef0",
      address: "10.0.0.7",
      system: DB_SYSTEM,
    },
  },
};

/** A copy of EXAMPLE with `edit` applied to it. */
// biome-ignore lint/suspicious/noExplicitAny: the edits break the shape on purpose.
function example(edit: (doc: any) => void = () => {}): unknown {
  const doc = structuredClone(EXAMPLE);
  edit(doc);
  return doc;
}

function problemsOf(doc: unknown): string[] {
  try {
    parseFleetValue(doc, "nixship.json");
  } catch (err) {
    if (err instanceof FleetFileError) {
      return err.message.split("\n").map((line) => line.replace(/^nixship\.json: /, ""));
    }
    throw err;
  }
  return [];
}

const minimal = (host: object) => ({ hosts: { h: { system: ".#h", ...host } } });

describe("parseFleet", () => {
  it("reads the example fleet and fills in defaults", () => {
    const fleet = parseFleet(JSON.stringify(example()), "nixship.json");
    expect(fleet.cache).toEqual({
      url: "s3://my-cache/nix?region=eu-west-1",
      publicKeys: [KEY],
      substituter: "http://10.231.1.1:8080",
    });
    expect(fleet.ssh).toEqual({
      user: "root",
      configFile: "lab/ssh_config",
      knownHosts: "lab/known_hosts",
    });
    expect(fleet.policy).toEqual({
      parallel: 4,
      maxFailures: 0,
      canary: 1,
      confirmTimeout: 30,
      health: {
        http: [{ url: "http://{address}/health", expectStatus: 200, timeout: 5 }],
        commands: [{ run: "systemctl is-system-running", timeout: 20 }],
      },
    });
    expect(fleet.hosts.map((h) => h.name)).toEqual(["web1", "db1", "i1"]);
    expect(fleet.hosts[0]).toEqual({
      name: "web1",
      tags: ["web", "eu"],
      address: "10.231.1.2",
      sshHost: "lab-web1",
      delivery: "ssh",
      system: { kind: "flake", installable: "path:./examples#web-v1" },
    });
    expect(fleet.hosts[1]).toMatchObject({
      delivery: "ssh",
      sshHost: undefined,
      system: { kind: "store-path", path: DB_SYSTEM },
    });
    expect(fleet.hosts[2]).toEqual({
      name: "i1",
      tags: [],
      address: "10.0.0.7",
      delivery: "ssm",
      instanceId: "i-0123456789abcdef0",
      system: { kind: "store-path", path: DB_SYSTEM },
    });
  });

  it("needs nothing but hosts", () => {
    const fleet = parseFleetValue(minimal({ address: "h.lan" }), "f.json");
    expect(fleet.cache).toBeUndefined();
    expect(fleet.policy).toEqual({
      parallel: 10,
      maxFailures: 0,
      canary: 1,
      confirmTimeout: 30,
      health: { http: [], commands: [] },
    });
    expect(fleet.ssh).toEqual({ user: "root", configFile: undefined, knownHosts: undefined });
  });

  it("names the field by its JSON path", () => {
    expect(problemsOf(example((d) => d.hosts.web1.tags.push(3)))).toEqual([
      "hosts.web1.tags[2]: must be a string matching ^[a-z0-9][a-z0-9-]*$ (at most 63 characters; got 3)",
    ]);
  });

  it("reports every problem at once, and keeps them as data", () => {
    const doc = example((d) => {
      d.policy.parallel = 0;
      d.hosts.db1.tags = ["DB"];
      d.hosts.web1.system = "web-v1";
    });
    let error: FleetFileError | undefined;
    try {
      parseFleetValue(doc, "nixship.json");
    } catch (err) {
      error = err as FleetFileError;
    }
    expect(error).toBeInstanceOf(FleetFileError);
    expect(error).toBeInstanceOf(InputError);
    expect(error?.exitCode).toBe(2);
    expect(error?.code).toBe("bad-fleet-file");
    expect(error?.problems.map((p) => p.path)).toEqual([
      ["policy", "parallel"],
      ["hosts", "web1", "system"],
      ["hosts", "db1", "tags", 0],
    ]);
  });

  it("refuses unknown keys anywhere but $schema at the top, suggesting the likely one", () => {
    expect(problemsOf(example((d) => (d.hosts.web1.tag = ["x"])))).toEqual([
      'hosts.web1.tag: unknown key (did you mean "tags"?)',
    ]);
    expect(problemsOf(example((d) => (d.policy.paralel = 3)))).toEqual([
      'policy.paralel: unknown key (did you mean "parallel"?)',
    ]);
    expect(problemsOf(example((d) => (d.colour = "blue")))).toEqual([
      "colour: unknown key (known keys: hosts, $schema, cache, ssh, policy)",
    ]);
    expect(problemsOf(example((d) => (d.policy.health.http[0].method = "GET")))).toHaveLength(1);
    expect(problemsOf(example((d) => (d.hosts.db1.$schema = "x")))).toHaveLength(1);
  });

  it("needs at least one host, with a valid name", () => {
    expect(problemsOf({})).toEqual(["hosts: is required"]);
    expect(problemsOf({ hosts: {} })).toEqual([
      'hosts: must name at least one host, e.g. {"web1": {...}}',
    ]);
    expect(problemsOf({ hosts: [] })).toEqual(["hosts: must be an object (got an array)"]);
    expect(problemsOf({ hosts: { Web1: { address: "a", system: ".#a" } } })).toEqual([
      "hosts.Web1: host names must match ^[a-z0-9][a-z0-9-]*$, at most 63 characters",
    ]);
    const long = "a".repeat(64);
    expect(problemsOf({ hosts: { [long]: { address: "a", system: ".#a" } } })).toHaveLength(1);
    expect(problemsOf({ hosts: { ["a".repeat(63)]: { address: "a", system: ".#a" } } })).toEqual(
      [],
    );
    expect(problemsOf({ hosts: { "odd name": { address: "a", system: ".#a" } } })[0]).toMatch(
      /^hosts\["odd name"\]: /,
    );
  });

  it("checks tags", () => {
    expect(problemsOf(minimal({ address: "a", tags: "web" }))).toEqual([
      'hosts.h.tags: must be an array (got "web")',
    ]);
    expect(problemsOf(minimal({ address: "a", tags: ["web", "web"] }))).toEqual([
      'hosts.h.tags[1]: repeats the tag "web"',
    ]);
    expect(problemsOf(minimal({ address: "a", tags: ["-web"] }))).toHaveLength(1);
  });

  it("knows the delivery modes and what each needs", () => {
    expect(problemsOf(minimal({ address: "a", delivery: "scp" }))).toEqual([
      'hosts.h.delivery: must be one of ssh, ssm, agent (got "scp")',
    ]);
    expect(problemsOf(minimal({}))).toEqual(['hosts.h: an ssh host needs "address" or "sshHost"']);
    expect(problemsOf(minimal({ sshHost: "lab-h" }))).toEqual([]);
    const withCache = (host: object) => ({ ...minimal(host), cache: EXAMPLE.cache });
    expect(problemsOf(withCache({ delivery: "ssm" }))).toEqual([
      'hosts.h.instanceId: is required when delivery is "ssm"',
    ]);
    expect(problemsOf(withCache({ delivery: "ssm", instanceId: "i-12" }))).toEqual([
      'hosts.h.instanceId: must be a string matching ^i-[0-9a-f]{8,17}$ (at most 19 characters; got "i-12")',
    ]);
    expect(
      problemsOf(withCache({ delivery: "ssm", instanceId: "i-0123abcd", sshHost: "x" })),
    ).toEqual(['hosts.h.sshHost: is only allowed when delivery is "ssh"']);
    expect(problemsOf(minimal({ address: "a", instanceId: "i-0123abcd" }))).toEqual([
      'hosts.h.instanceId: is only allowed when delivery is "ssm"',
    ]);
    expect(problemsOf(withCache({ delivery: "agent" }))).toEqual([]);
  });

  it("needs a cache for hosts that substitute from it", () => {
    expect(problemsOf(minimal({ delivery: "agent" }))).toEqual([
      'hosts.h.delivery: "agent" hosts substitute their system from the binary cache, but the fleet has no "cache"',
    ]);
  });

  it("refuses addresses and ssh hosts that could pass as options", () => {
    expect(problemsOf(minimal({ address: "-oProxyCommand=x" }))).toHaveLength(1);
    expect(problemsOf(minimal({ sshHost: "-oProxyCommand=x" }))).toHaveLength(1);
    expect(problemsOf(minimal({ address: "fd00::2" }))).toEqual([]);
    expect(problemsOf({ ...minimal({ address: "a" }), ssh: { user: "-l" } })).toHaveLength(1);
  });

  it("takes a store path or a flake installable as the system", () => {
    expect(problemsOf({ hosts: { h: { address: "a" } } })).toEqual(["hosts.h.system: is required"]);
    expect(problemsOf(minimal({ address: "a", system: "/nix/store/abc-web" }))).toEqual([
      "hosts.h.system: the store path '/nix/store/abc-web' does not start with a 32-character nix32 hash and '-'",
    ]);
    for (const bad of ["web", "", "#web", "-.#web", ".# web", 7, "./flake #web"]) {
      expect(problemsOf(minimal({ address: "a", system: bad }))[0]).toMatch(
        /^hosts\.h\.system: must be a store path \(\/nix\/store\/<hash>-<name>\) or a flake installable/,
      );
    }
    for (const good of [
      ".#web",
      "github:me/fleet#nixosConfigurations.web.config.system.build.toplevel",
    ]) {
      expect(problemsOf(minimal({ address: "a", system: good }))).toEqual([]);
    }
  });

  it("checks policy numbers", () => {
    const withPolicy = (policy: object) => ({ ...minimal({ address: "a" }), policy });
    expect(problemsOf(withPolicy({ parallel: 0 }))).toEqual([
      "policy.parallel: must be a whole number >= 1 (got 0)",
    ]);
    expect(problemsOf(withPolicy({ maxFailures: -1 }))).toHaveLength(1);
    expect(problemsOf(withPolicy({ canary: 1.5 }))).toHaveLength(1);
    expect(problemsOf(withPolicy({ confirmTimeout: "30" }))).toEqual([
      'policy.confirmTimeout: must be a whole number >= 0 (got "30")',
    ]);
    expect(problemsOf(withPolicy({ canary: 0, maxFailures: 0, confirmTimeout: 0 }))).toEqual([]);
    expect(problemsOf(withPolicy({ health: { commands: [{ run: "true", timeout: 0 }] } }))).toEqual(
      ["policy.health.commands[0].timeout: must be a whole number >= 1 (got 0)"],
    );
    expect(
      problemsOf(withPolicy({ health: { http: [{ url: "http://h/", expectStatus: 99 }] } })),
    ).toEqual([
      "policy.health.http[0].expectStatus: must be a whole number from 100 to 599 (got 99)",
    ]);
    expect(
      problemsOf(withPolicy({ health: { http: [{ url: "http://h/", timeout: 0 }] } })),
    ).toEqual(["policy.health.http[0].timeout: must be a whole number >= 1 (got 0)"]);
    expect(problemsOf(withPolicy({ health: { commands: [{ run: "" }] } }))).toEqual([
      'policy.health.commands[0].run: must be a non-empty string (got "")',
    ]);
  });

  it("allows only {address} and {name} in health URLs", () => {
    const withUrl = (url: string, host: object = { address: "a" }) => ({
      ...minimal(host),
      policy: { health: { http: [{ url }] } },
    });
    expect(problemsOf(withUrl("http://{name}.lan:8080/health?from={address}"))).toEqual([]);
    expect(problemsOf(withUrl("http://{host}/health"))).toEqual([
      'policy.health.http[0].url: unknown placeholder {host}; only {address} and {name} are allowed (got "http://{host}/health")',
    ]);
    expect(problemsOf(withUrl("http://{address/health"))[0]).toMatch(/unmatched/);
    expect(problemsOf(withUrl("ftp://{address}/"))[0]).toMatch(/must be http:\/\/ or https:\/\//);
    expect(problemsOf(withUrl("http://{address}/", { sshHost: "lab-h" }))).toEqual([
      'hosts.h: has no "address", but policy.health.http[0].url uses {address}',
    ]);
    expect(problemsOf(withUrl("http://{name}/", { sshHost: "lab-h" }))).toEqual([]);
  });

  it("checks the cache settings", () => {
    expect(problemsOf(example((d) => (d.cache.url = "http://cache.lan")))[0]).toMatch(
      /^cache\.url: bad store URL "http:\/\/cache\.lan": unknown scheme "http:"/,
    );
    expect(problemsOf(example((d) => (d.cache.url = "file:///srv/cache")))).toEqual([]);
    expect(problemsOf(example((d) => (d.cache.publicKeys = [])))).toEqual([
      "cache.publicKeys: must hold at least 1 item",
    ]);
    expect(problemsOf(example((d) => (d.cache.publicKeys = ["nope"])))[0]).toMatch(
      /^cache\.publicKeys\[0\]: public key must look like 'NAME:BASE64'/,
    );
    expect(problemsOf(example((d) => delete d.cache.publicKeys))).toEqual([
      "cache.publicKeys: is required",
    ]);
    expect(problemsOf(example((d) => (d.cache.substituter = "10.0.0.1:8080")))[0]).toMatch(
      /^cache\.substituter: must be an http:\/\/, https:\/\/, s3:\/\/ or file:\/\/ URL/,
    );
  });

  it("reads an s3 cache URL without looking at the environment", () => {
    const before = process.env.AWS_REGION;
    process.env.AWS_REGION = "not a region!";
    try {
      const doc = example((d) => (d.cache.url = "s3://bucket/prefix"));
      expect(problemsOf(doc)).toEqual([]);
    } finally {
      if (before === undefined) delete process.env.AWS_REGION;
      else process.env.AWS_REGION = before;
    }
  });

  it("rejects invalid JSON with line and column", () => {
    expect(() =>
      parseFleet('{\n  "hosts": {\n    "a": 1\n    "b": 2 }\n}', "nixship.json"),
    ).toThrow(/^nixship\.json:4:5: invalid JSON: expected ',' or '}' after property value$/);
    expect(() => parseFleet("", "nixship.json")).toThrow(
      /^nixship\.json: invalid JSON: the text is empty$/,
    );
    expect(() => parseFleet('{"hosts": {', "nixship.json")).toThrow(/^nixship\.json:1:12: /);
  });

  it("rejects a duplicate host, which JSON.parse would drop silently", () => {
    const text = '{"hosts": {\n  "web1": {"address": "a", "system": ".#a"},\n  "web1": {}\n}}';
    expect(() => parseFleet(text, "nixship.json")).toThrow(
      /^nixship\.json:3:3: hosts: duplicate key "web1"$/,
    );
  });

  it("does not take null for an object", () => {
    expect(problemsOf({ ...minimal({ address: "a" }), ssh: null })).toEqual([
      "ssh: must be an object (got null)",
    ]);
    expect(problemsOf({ ...minimal({ address: "a" }), policy: { health: null } })).toEqual([
      "policy.health: must be an object (got null)",
    ]);
    expect(problemsOf({ ...minimal({ address: "a" }), cache: null })).toEqual([
      "cache: must be an object (got null)",
    ]);
  });

  it("needs a JSON object at the top", () => {
    expect(problemsOf([])).toEqual(["(top level): must be an object (got an array)"]);
  });
});

describe("resolveSshPaths", () => {
  it("resolves relative ssh paths against the fleet file's directory", () => {
    const fleet = parseFleetValue(
      {
        ssh: { configFile: "lab/ssh_config", knownHosts: "/etc/ssh/known" },
        ...minimal({ address: "a" }),
      },
      "f",
    );
    expect(resolveSshPaths(fleet, "/srv/fleet").ssh).toEqual({
      user: "root",
      configFile: "/srv/fleet/lab/ssh_config",
      knownHosts: "/etc/ssh/known",
    });
  });
});
