import { describe, expect, it } from "vitest";
import { problemsOf } from "../../test/support/fleet-problems.js";
import { InputError } from "../errors.js";
import type { StorePath } from "../nix/store-path.js";
import { type Fleet, RELEASE_DEFAULTS, SSM_DEFAULTS, sshUserOf } from "./fleet.js";
import { FleetFileError, parseFleet, parseFleetValue, resolveFleetPaths } from "./fleet-file.js";
import { formatFleet } from "./fleet-json.js";

const KEY = "cache.example.org-1:lWwOmhFw0ds2rFa+bN7VVTYVXK7ujJv76J6gVTXevhM=";
const RELEASE_KEY = "release-1:lWwOmhFw0ds2rFa+bN7VVTYVXK7ujJv76J6gVTXevhM=";
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

const minimal = (host: object) => ({ hosts: { h: { system: ".#h", ...host } } });
const RELEASES = { channel: "production", publicKeys: [RELEASE_KEY] };
const TARGETS = [
  { key: "tag:Role", values: ["web", "api"] },
  { key: "resource-groups:Name", values: ["prod"] },
];

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
      sudo: false,
      configFile: "lab/ssh_config",
      knownHosts: "lab/known_hosts",
    });
    expect(fleet.policy).toEqual({
      parallel: 4,
      maxFailures: 0,
      canary: 1,
      confirmTimeout: 30,
      activationTimeout: 600,
      keepGenerations: 0,
      reboot: "never",
      rebootTimeout: 600,
      rebootRollback: true,
      requirePinned: false,
      deltas: true,
      health: {
        http: [{ url: "http://{address}/health", expectStatus: 200, timeout: 5 }],
        commands: [{ run: "systemctl is-system-running", timeout: 20 }],
      },
    });
    expect(fleet.releases).toBeUndefined();
    expect(fleet.ssm).toEqual({ ...SSM_DEFAULTS, region: undefined });
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
      targets: undefined,
      system: { kind: "store-path", path: DB_SYSTEM },
    });
    expect(Object.keys(fleet.hosts[2] ?? {})).toContain("targets");
  });

  it("needs nothing but hosts", () => {
    const fleet = parseFleetValue(minimal({ address: "h.lan" }), "f.json");
    expect(fleet.cache).toBeUndefined();
    expect(fleet.policy).toEqual({
      parallel: 10,
      maxFailures: 0,
      canary: 1,
      confirmTimeout: 30,
      activationTimeout: 600,
      keepGenerations: 0,
      reboot: "never",
      rebootTimeout: 600,
      rebootRollback: true,
      requirePinned: false,
      deltas: true,
      health: { http: [], commands: [] },
    });
    expect(fleet.ssh).toEqual({
      user: "root",
      sudo: false,
      configFile: undefined,
      knownHosts: undefined,
    });
    expect(fleet.releases).toBeUndefined();
    expect(fleet.ssm).toEqual({
      documentName: "nixship-activate",
      region: undefined,
      commandTimeout: 900,
    });
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
      "colour: unknown key (known keys: hosts, $schema, cache, releases, ssh, ssm, build, policy, policies, secrets, deltas, prometheus)",
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
      'hosts.h: an ssm host needs "instanceId" or "targets"',
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
    expect(problemsOf({ ...withCache({ delivery: "agent" }), releases: RELEASES })).toEqual([]);
  });

  it("needs a cache for hosts that substitute from it", () => {
    expect(problemsOf({ ...minimal({ delivery: "agent" }), releases: RELEASES })).toEqual([
      'hosts.h.delivery: "agent" hosts substitute their system from the binary cache, but the fleet has no "cache"',
    ]);
    expect(problemsOf(minimal({ delivery: "ssm", instanceId: "i-0123abcd" }))).toEqual([
      'hosts.h.delivery: "ssm" hosts substitute their system from the binary cache, but the fleet has no "cache"',
    ]);
  });

  it("needs releases for agent hosts", () => {
    expect(problemsOf({ ...minimal({ delivery: "agent" }), cache: EXAMPLE.cache })).toEqual([
      'hosts.h.delivery: "agent" hosts follow signed releases, but the fleet has no "releases"',
    ]);
    expect(problemsOf(minimal({ delivery: "agent" }))).toEqual([
      'hosts.h.delivery: "agent" hosts substitute their system from the binary cache, but the fleet has no "cache"',
      'hosts.h.delivery: "agent" hosts follow signed releases, but the fleet has no "releases"',
    ]);
    // A broken releases section is reported once, as itself.
    expect(
      problemsOf({
        ...minimal({ delivery: "agent" }),
        cache: EXAMPLE.cache,
        releases: { publicKeys: [RELEASE_KEY] },
      }),
    ).toEqual(["releases.channel: is required"]);
    // Other fleets may have releases too.
    expect(problemsOf({ ...minimal({ address: "a" }), releases: RELEASES })).toEqual([]);
  });

  it("reads the releases section, filling in the offline timeout, the releases' maximum age and whether reports must be signed", () => {
    const fleet = parseFleetValue({ ...minimal({ address: "a" }), releases: RELEASES }, "f");
    expect(fleet.releases).toEqual({
      channel: "production",
      publicKeys: [RELEASE_KEY],
      offlineTimeout: RELEASE_DEFAULTS.offlineTimeout,
      maxAge: RELEASE_DEFAULTS.maxAge,
      signedReports: false,
    });
    expect(RELEASE_DEFAULTS).toEqual({ offlineTimeout: 600, maxAge: 604800, signedReports: false });
    const signed = parseFleetValue(
      { ...minimal({ address: "a" }), releases: { ...RELEASES, signedReports: true } },
      "f",
    );
    expect(signed.releases?.signedReports).toBe(true);
    expect(
      problemsOf({ ...minimal({ address: "a" }), releases: { ...RELEASES, signedReports: "yes" } }),
    ).toEqual(['releases.signedReports: must be true or false (got "yes")']);
    const custom = parseFleetValue(
      { ...minimal({ address: "a" }), releases: { ...RELEASES, offlineTimeout: 1, maxAge: 86400 } },
      "f",
    );
    expect(custom.releases).toMatchObject({ offlineTimeout: 1, maxAge: 86400 });
    expect(
      problemsOf({ ...minimal({ address: "a" }), releases: { ...RELEASES, maxAge: 59 } }),
    ).toEqual(["releases.maxAge: must be a whole number from 60 to 31622400 (got 59)"]);
  });

  it("checks the releases section", () => {
    const withReleases = (releases: unknown) => ({ ...minimal({ address: "a" }), releases });
    expect(problemsOf(withReleases({}))).toEqual([
      "releases.channel: is required",
      "releases.publicKeys: is required",
    ]);
    expect(problemsOf(withReleases(null))).toEqual(["releases: must be an object (got null)"]);
    expect(problemsOf(withReleases({ ...RELEASES, channel: "Prod" }))).toEqual([
      'releases.channel: must be a string matching ^[a-z0-9][a-z0-9-]*$ (at most 63 characters; got "Prod")',
    ]);
    expect(problemsOf(withReleases({ ...RELEASES, channel: "p".repeat(64) }))).toHaveLength(1);
    expect(problemsOf(withReleases({ ...RELEASES, publicKeys: [] }))).toEqual([
      "releases.publicKeys: must hold at least 1 item",
    ]);
    expect(problemsOf(withReleases({ ...RELEASES, publicKeys: "k:x" }))).toEqual([
      'releases.publicKeys: must be an array (got "k:x")',
    ]);
    expect(problemsOf(withReleases({ ...RELEASES, publicKeys: [RELEASE_KEY, "nope"] }))[0]).toMatch(
      /^releases\.publicKeys\[1\]: public key must look like 'NAME:BASE64'/,
    );
    expect(problemsOf(withReleases({ ...RELEASES, publicKeys: ["release-1:AAAA"] }))[0]).toMatch(
      /^releases\.publicKeys\[0\]: public key 'release-1' must hold 32 bytes of base64/,
    );
    expect(problemsOf(withReleases({ ...RELEASES, offlineTimeout: 0 }))).toEqual([
      "releases.offlineTimeout: must be a whole number >= 1 (got 0)",
    ]);
    expect(problemsOf(withReleases({ ...RELEASES, offlineTimeout: 1.5 }))).toEqual([
      "releases.offlineTimeout: must be a whole number >= 1 (got 1.5)",
    ]);
    expect(problemsOf(withReleases({ ...RELEASES, chanel: "x" }))).toEqual([
      'releases.chanel: unknown key (did you mean "channel"?)',
    ]);
  });

  it("reads the ssm section, filling in defaults", () => {
    const withSsm = (ssm: object) => parseFleetValue({ ...minimal({ address: "a" }), ssm }, "f");
    expect(withSsm({}).ssm).toEqual({
      documentName: "nixship-activate",
      region: undefined,
      commandTimeout: 900,
    });
    expect(
      withSsm({ documentName: "Fleet_Activate.v2", region: "us-gov-west-1", commandTimeout: 30 })
        .ssm,
    ).toEqual({ documentName: "Fleet_Activate.v2", region: "us-gov-west-1", commandTimeout: 30 });
    expect(withSsm({ commandTimeout: 172800 }).ssm.commandTimeout).toBe(172800);
    expect(withSsm({ documentName: "a".repeat(128) }).ssm.documentName).toHaveLength(128);
  });

  it("checks the ssm section", () => {
    const withSsm = (ssm: unknown) => ({ ...minimal({ address: "a" }), ssm });
    expect(problemsOf(withSsm(null))).toEqual(["ssm: must be an object (got null)"]);
    expect(problemsOf(withSsm({ documentName: "ab" }))).toEqual([
      'ssm.documentName: must be a string matching ^[a-zA-Z0-9_.-]{3,128}$ (got "ab")',
    ]);
    expect(problemsOf(withSsm({ documentName: "a".repeat(129) }))).toHaveLength(1);
    expect(problemsOf(withSsm({ documentName: "my doc" }))).toHaveLength(1);
    expect(problemsOf(withSsm({ documentName: "" }))).toHaveLength(1);
    expect(problemsOf(withSsm({ region: "eu-west" }))).toEqual([
      'ssm.region: must be a string matching ^[a-z]{2}(-[a-z]+)+-\\d$ (got "eu-west")',
    ]);
    for (const bad of ["EU-WEST-1", "euwest1", "eu-west-12", " eu-west-1", 1]) {
      expect(problemsOf(withSsm({ region: bad })), String(bad)).toHaveLength(1);
    }
    expect(problemsOf(withSsm({ commandTimeout: 29 }))).toEqual([
      "ssm.commandTimeout: must be a whole number from 30 to 172800 (got 29)",
    ]);
    expect(problemsOf(withSsm({ commandTimeout: 172801 }))).toEqual([
      "ssm.commandTimeout: must be a whole number from 30 to 172800 (got 172801)",
    ]);
    expect(problemsOf(withSsm({ commandTimeout: "900" }))).toHaveLength(1);
    expect(problemsOf(withSsm({ document: "x" }))).toEqual([
      "ssm.document: unknown key (known keys: documentName, region, commandTimeout)",
    ]);
    expect(problemsOf(withSsm({ documentname: "x" }))).toEqual([
      'ssm.documentname: unknown key (did you mean "documentName"?)',
    ]);
  });

  it("refuses two ssm hosts on one instance ID, naming the host it is already", () => {
    const on = (instanceId: string) => ({ system: ".#h", delivery: "ssm", instanceId });
    expect(
      problemsOf({
        cache: EXAMPLE.cache,
        hosts: { web1: on("i-0123abcd"), web2: on("i-0123abcd"), web3: on("i-0456abcd") },
      }),
    ).toEqual([
      "hosts.web2.instanceId: i-0123abcd is host web1's instance too: one instance is one host",
    ]);
  });

  it("reaches ssm hosts by instance ID or by targets, exactly one", () => {
    const ssmHost = (host: object) => ({
      ...minimal({ delivery: "ssm", ...host }),
      cache: EXAMPLE.cache,
    });
    const fleet = parseFleetValue(ssmHost({ targets: TARGETS }), "f");
    expect(fleet.hosts[0]).toEqual({
      name: "h",
      tags: [],
      address: undefined,
      delivery: "ssm",
      instanceId: undefined,
      targets: TARGETS,
      system: { kind: "flake", installable: ".#h" },
    });
    expect(Object.keys(fleet.hosts[0] ?? {})).toContain("instanceId");
    expect(problemsOf(ssmHost({ instanceId: "i-0123abcd", targets: TARGETS }))).toEqual([
      'hosts.h: an ssm host takes "instanceId" or "targets", not both',
    ]);
    expect(problemsOf(ssmHost({}))).toEqual([
      'hosts.h: an ssm host needs "instanceId" or "targets"',
    ]);
    expect(problemsOf(minimal({ address: "a", targets: TARGETS }))).toEqual([
      'hosts.h.targets: is only allowed when delivery is "ssm"',
    ]);
    expect(
      problemsOf({
        ...minimal({ delivery: "agent", targets: TARGETS }),
        cache: EXAMPLE.cache,
        releases: RELEASES,
      }),
    ).toEqual(['hosts.h.targets: is only allowed when delivery is "ssm"']);
  });

  it("checks ssm targets", () => {
    const withTargets = (targets: unknown) => ({
      ...minimal({ delivery: "ssm", targets }),
      cache: EXAMPLE.cache,
    });
    const target = (key: string, ...values: unknown[]) => ({ key, values });
    for (const key of [
      "tag:Role",
      "tag:aws:cloudformation:stack-name",
      `tag:${"k".repeat(128)}`,
      "tag-key",
      "resource-groups:Name",
      "resource-groups:ResourceTypeFilters",
    ]) {
      expect(problemsOf(withTargets([target(key, "x")])), key).toEqual([]);
    }
    expect(problemsOf(withTargets([target("InstanceIds", "i-0123abcd")]))).toEqual([
      'hosts.h.targets[0].key: must be a string matching ^(tag:[^\\s]{1,128}|tag-key|resource-groups:Name|resource-groups:ResourceTypeFilters)$ (got "InstanceIds")',
    ]);
    for (const key of ["tag:", "tag:a b", `tag:${"k".repeat(129)}`, "Tag:Role", "tag-keys"]) {
      expect(problemsOf(withTargets([target(key, "x")])), key).toHaveLength(1);
    }
    expect(problemsOf(withTargets([]))).toEqual(["hosts.h.targets: must hold at least 1 item"]);
    expect(problemsOf(withTargets({ key: "tag:Role", values: ["web"] }))).toEqual([
      "hosts.h.targets: must be an array (got an object)",
    ]);
    const six = [1, 2, 3, 4, 5, 6].map((i) => target(`tag:T${i}`, "x"));
    expect(problemsOf(withTargets(six.slice(0, 5)))).toEqual([]);
    expect(problemsOf(withTargets(six))).toEqual(["hosts.h.targets: must hold at most 5 items"]);
    expect(problemsOf(withTargets(["tag:Role=web"]))).toEqual([
      'hosts.h.targets[0]: must be an object (got "tag:Role=web")',
    ]);
    expect(problemsOf(withTargets([{ key: "tag:Role" }]))).toEqual([
      "hosts.h.targets[0].values: is required",
    ]);
    expect(problemsOf(withTargets([{ values: ["web"] }]))).toEqual([
      "hosts.h.targets[0].key: is required",
    ]);
    expect(problemsOf(withTargets([{ ...target("tag:Role", "web"), value: "x" }]))).toEqual([
      'hosts.h.targets[0].value: unknown key (did you mean "values"?)',
    ]);
    expect(problemsOf(withTargets([target("tag:Role")]))).toEqual([
      "hosts.h.targets[0].values: must hold at least 1 item",
    ]);
    const values = Array.from({ length: 51 }, (_, i) => `v${i}`);
    expect(problemsOf(withTargets([target("tag:Role", ...values.slice(0, 50))]))).toEqual([]);
    expect(problemsOf(withTargets([target("tag:Role", ...values)]))).toEqual([
      "hosts.h.targets[0].values: must hold at most 50 items",
    ]);
    expect(problemsOf(withTargets([target("tag:Role", "web", "")]))).toEqual([
      'hosts.h.targets[0].values[1]: must be a non-empty string (at most 256 characters; got "")',
    ]);
    expect(problemsOf(withTargets([target("tag:Role", 3)]))).toEqual([
      "hosts.h.targets[0].values[0]: must be a non-empty string (at most 256 characters; got 3)",
    ]);
    expect(problemsOf(withTargets([target("tag:Role", "v".repeat(256))]))).toEqual([]);
    expect(problemsOf(withTargets([target("tag:Role", "v".repeat(257))]))[0]).toMatch(
      /^hosts\.h\.targets\[0\]\.values\[0\]: must be a non-empty string \(at most 256 characters; /,
    );
    for (const bad of ["a\nb", "a\tb", "\u0000", "a\u007f", "a\u0085"]) {
      expect(problemsOf(withTargets([target("tag:Role", "ok", bad)])), JSON.stringify(bad)).toEqual(
        ["hosts.h.targets[0].values[1]: must not contain control characters"],
      );
    }
    expect(problemsOf(withTargets([target("tag:Role", "web server", "été", "a=b")]))).toEqual([]);
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

  it("reads ssh.sudo, a host's own sudo and requirePinned, and refuses what is not a switch", () => {
    const fleet = parseFleetValue(
      {
        ssh: { user: "deploy", sudo: true },
        policy: { requirePinned: true },
        policies: { web2: { requirePinned: false } },
        hosts: {
          web1: { system: ".#w", address: "a" },
          web2: { system: ".#w", address: "b", sudo: false },
        },
      },
      "f",
    );
    expect(fleet.ssh).toMatchObject({ user: "deploy", sudo: true });
    expect(fleet.policy.requirePinned).toBe(true);
    expect(fleet.hosts.map((h) => (h.delivery === "ssh" ? h.sudo : "-"))).toEqual([
      undefined,
      false,
    ]);
    expect(fleet.policies).toEqual([{ selector: "web2", override: { requirePinned: false } }]);
    expect(
      problemsOf({
        ssh: { sudo: "yes" },
        policy: { requirePinned: 1 },
        hosts: {
          h: { system: ".#h", address: "a", sudo: "no" },
          a: { system: ".#a", delivery: "agent", sudo: true },
        },
        releases: RELEASES,
        cache: { url: "file:///c", publicKeys: [KEY] },
      }),
    ).toEqual([
      'ssh.sudo: must be true or false (got "yes")',
      "policy.requirePinned: must be true or false (got 1)",
      'hosts.h.sudo: must be true or false (got "no")',
      'hosts.a.sudo: is only allowed when delivery is "ssh"',
    ]);
  });

  it("reads a host's own ssh user, which ssh and the build host log in as", () => {
    const fleet = parseFleetValue(
      {
        ssh: { user: "deploy" },
        hosts: {
          web1: { system: ".#w", address: "a", sshUser: "ops" },
          web2: { system: ".#w", address: "b" },
        },
      },
      "f",
    );
    const users = fleet.hosts.map((h) => (h.delivery === "ssh" ? sshUserOf(fleet.ssh, h) : "-"));
    expect(users).toEqual(["ops", "deploy"]);
    expect(formatFleet(fleet)).toContain('"sshUser": "ops"');
    expect(
      problemsOf({
        hosts: {
          h: { system: ".#h", address: "a", sshUser: "-oProxyCommand=x" },
          a: { system: ".#a", delivery: "agent", sshUser: "ops" },
        },
        releases: RELEASES,
        cache: { url: "file:///c", publicKeys: [KEY] },
      }),
    ).toEqual([
      expect.stringMatching(/^hosts\.h\.sshUser: must be a string matching/),
      'hosts.a.sshUser: is only allowed when delivery is "ssh"',
    ]);
  });

  it("checks policy numbers", () => {
    const withPolicy = (policy: object) => ({ ...minimal({ address: "a" }), policy });
    expect(problemsOf(withPolicy({ parallel: 0 }))).toEqual([
      "policy.parallel: must be a whole number >= 1 (got 0)",
    ]);
    // A whole number past what a double holds exactly is refused with the limit it passed.
    expect(problemsOf(withPolicy({ parallel: 1e20 }))).toEqual([
      "policy.parallel: must be a whole number from 1 to 9007199254740991 (got 100000000000000000000)",
    ]);
    // JSON reads 1e400 as Infinity: said as such, not as null.
    expect(problemsOf(withPolicy({ parallel: Number.POSITIVE_INFINITY }))).toEqual([
      "policy.parallel: must be a whole number >= 1 (got Infinity)",
    ]);
    expect(problemsOf(withPolicy({ maxFailures: -1 }))).toHaveLength(1);
    expect(problemsOf(withPolicy({ canary: 1.5 }))).toHaveLength(1);
    expect(problemsOf(withPolicy({ confirmTimeout: "30" }))).toEqual([
      'policy.confirmTimeout: must be a whole number from 0 to 86400 (got "30")',
    ]);
    // Timeouts end within a day; past about 24 days no timer could wait for one.
    expect(problemsOf(withPolicy({ activationTimeout: 5_000_000, rebootTimeout: 86_401 }))).toEqual(
      [
        "policy.activationTimeout: must be a whole number from 1 to 86400 (got 5000000)",
        "policy.rebootTimeout: must be a whole number from 1 to 86400 (got 86401)",
      ],
    );
    expect(problemsOf({ ...withPolicy({}), policies: { h: { confirmTimeout: 100_000 } } })).toEqual(
      ["policies.h.confirmTimeout: must be a whole number from 0 to 86400 (got 100000)"],
    );
    expect(problemsOf(withPolicy({ canary: 0, maxFailures: 0, confirmTimeout: 0 }))).toEqual([]);
    expect(problemsOf(withPolicy({ activationTimeout: 0 }))).toEqual([
      "policy.activationTimeout: must be a whole number from 1 to 86400 (got 0)",
    ]);
    expect(parseFleetValue(withPolicy({ activationTimeout: 90 }), "f.json").policy).toMatchObject({
      activationTimeout: 90,
    });
    expect(problemsOf(withPolicy({ health: { commands: [{ run: "true", timeout: 0 }] } }))).toEqual(
      ["policy.health.commands[0].timeout: must be a whole number from 1 to 86400 (got 0)"],
    );
    // Within a day, as every other timeout: no wait a timer cannot hold, no window for years.
    expect(
      problemsOf(withPolicy({ health: { http: [{ url: "http://{address}/", timeout: 1e12 }] } })),
    ).toEqual([
      "policy.health.http[0].timeout: must be a whole number from 1 to 86400 (got 1000000000000)",
    ]);
    expect(
      problemsOf(withPolicy({ health: { http: [{ url: "http://h/", expectStatus: 99 }] } })),
    ).toEqual([
      "policy.health.http[0].expectStatus: must be a whole number from 100 to 599 (got 99)",
    ]);
    expect(
      problemsOf(withPolicy({ health: { http: [{ url: "http://h/", timeout: 0 }] } })),
    ).toEqual(["policy.health.http[0].timeout: must be a whole number from 1 to 86400 (got 0)"]);
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

  it("refuses an analysis query that uses {address} on a host without one (it would ask for another's series)", () => {
    const withQuery = (query: string, host: object) => ({
      ...minimal(host),
      prometheus: { url: "http://prometheus:9090" },
      policy: {
        bake: { seconds: 60 },
        analysis: [{ name: "errors", query, max: 0.1 }],
      },
    });
    expect(problemsOf(withQuery('up{instance=~"{address}:.*"}', { sshHost: "lab-h" }))).toEqual([
      'hosts.h: has no "address", but policy.analysis[0].query uses {address}',
    ]);
    expect(problemsOf(withQuery('up{instance=~"{address}:.*"}', { address: "a" }))).toEqual([]);
    expect(problemsOf(withQuery('up{host="{name}"}', { sshHost: "lab-h" }))).toEqual([]);
  });

  it("refuses health URLs that hold credentials, without quoting them", () => {
    const withUrl = (url: string) => ({
      ...minimal({ address: "a" }),
      policy: { health: { http: [{ url }] } },
    });
    const holds = (what: string, shown: string) =>
      `policy.health.http[0].url: must hold no credentials (it has ${what}): it is recorded and shown as written; a check that needs one is a command check ("run") that reads it on the host (got "${shown}")`;
    expect(problemsOf(withUrl("https://bot:s3cr3t@{address}/health"))).toEqual([
      holds("a user or password before the host", "https://…"),
    ]);
    expect(problemsOf(withUrl("http://{address}/health?full=1&access_token=s3cr3t"))).toEqual([
      holds('the query parameter "access_token"', "http://{address}/health"),
    ]);
    // A password holding "/" leaves no valid URL: still not quoted.
    const slashed = problemsOf(withUrl("http://bot:ab/s3cr3t@{address}/health"));
    expect(slashed).toHaveLength(1);
    expect(slashed[0]).not.toContain("s3cr3t");
    expect(problemsOf(withUrl("http://{address}/health?full=1"))).toEqual([]);
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
    expect(
      problemsOf(example((d) => (d.cache.substituter = "https://bot:s3cr3t@cache.example"))),
    ).toEqual([
      "cache.substituter: must hold no credentials (it has a user or password before the host): give the hosts' Nix a netrc-file for an http(s) cache, or an instance role for S3",
    ]);
    expect(
      problemsOf(example((d) => (d.cache.substituter = "s3://c?region=eu-west-1&profile=p"))),
    ).toEqual([]);
    // Nix's S3 store reads a bucket whole: a key prefix is refused, with the ways out.
    expect(
      problemsOf(example((d) => (d.cache.substituter = "s3://c/fleet/?region=eu-west-1"))),
    ).toEqual([
      "cache.substituter: names a key prefix (fleet) in its bucket, which Nix's S3 store does not read (it reads a bucket whole): give the hosts a bucket of their own without a prefix, serve the cache to them (deploy --serve-cache), or make them agent hosts (their agent reads a prefix)",
    ]);
    expect(problemsOf(example((d) => (d.cache.substituter = "s3://c/?region=eu-west-1")))).toEqual(
      [],
    );
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

describe("formatFleet and parseFleet", () => {
  const SYSTEM = DB_SYSTEM as StorePath;
  const roundTrip = (fleet: Fleet) => parseFleet(formatFleet(fleet), "f");

  it("round-trips releases, ssm settings and ssm targets", () => {
    const fleet = parseFleetValue(
      {
        cache: EXAMPLE.cache,
        releases: { ...RELEASES, publicKeys: [RELEASE_KEY, KEY], offlineTimeout: 120 },
        ssm: { documentName: "fleet-activate", region: "eu-west-1", commandTimeout: 3600 },
        hosts: {
          i1: { delivery: "ssm", instanceId: "i-0123abcd", system: SYSTEM },
          web: { delivery: "ssm", tags: ["web"], targets: TARGETS, system: ".#web" },
          a1: { delivery: "agent", address: "10.0.0.4", system: SYSTEM },
        },
      },
      "f",
    );
    expect(fleet.hosts[1]).toMatchObject({ instanceId: undefined, targets: TARGETS });
    expect(roundTrip(fleet)).toStrictEqual(fleet);
    const text = formatFleet(fleet);
    expect(JSON.parse(text).ssm).toEqual({
      documentName: "fleet-activate",
      region: "eu-west-1",
      commandTimeout: 3600,
    });
    expect(JSON.parse(text).hosts.web).toEqual({
      tags: ["web"],
      delivery: "ssm",
      targets: TARGETS,
      system: ".#web",
    });
  });

  it("leaves ssm out when it is the defaults, and writes what differs", () => {
    const fleet = parseFleetValue(minimal({ address: "a" }), "f");
    const doc = JSON.parse(formatFleet(fleet));
    expect(Object.keys(doc)).toEqual(["ssh", "policy", "hosts"]);
    expect(roundTrip(fleet)).toStrictEqual(fleet);
    const regionOnly: Fleet = { ...fleet, ssm: { ...SSM_DEFAULTS, region: "us-east-2" } };
    expect(JSON.parse(formatFleet(regionOnly)).ssm).toEqual({
      ...SSM_DEFAULTS,
      region: "us-east-2",
    });
    expect(roundTrip(regionOnly)).toStrictEqual(regionOnly);
    const timeoutOnly: Fleet = { ...fleet, ssm: { ...fleet.ssm, commandTimeout: 60 } };
    expect(JSON.parse(formatFleet(timeoutOnly)).ssm).toEqual({
      documentName: "nixship-activate",
      commandTimeout: 60,
    });
    expect(roundTrip(timeoutOnly)).toStrictEqual(timeoutOnly);
  });

  it("writes the default offline timeout out", () => {
    const fleet = parseFleetValue({ ...minimal({ address: "a" }), releases: RELEASES }, "f");
    expect(JSON.parse(formatFleet(fleet)).releases).toEqual({
      ...RELEASES,
      offlineTimeout: 600,
      maxAge: 604800,
    });
    expect(roundTrip(fleet)).toStrictEqual(fleet);
  });
});

describe("resolveFleetPaths", () => {
  it("resolves relative ssh paths against the fleet file's directory", () => {
    const fleet = parseFleetValue(
      {
        ssh: { configFile: "lab/ssh_config", knownHosts: "/etc/ssh/known" },
        ...minimal({ address: "a" }),
      },
      "f",
    );
    expect(resolveFleetPaths(fleet, "/srv/fleet").ssh).toEqual({
      user: "root",
      sudo: false,
      configFile: "/srv/fleet/lab/ssh_config",
      knownHosts: "/etc/ssh/known",
    });
  });
});

describe("deltas", () => {
  const TOOL = "/nix/store/3q1xqvr3lzlbbg5z0adw4sw4fxfxdikq-zstd-1.5.6";

  it("reads the delta tool and the policy's switch, per role too, on by default", () => {
    const fleet = parseFleetValue(
      {
        ...minimal({ address: "h.lan", tags: ["edge"] }),
        deltas: { tool: TOOL },
        policies: { "@edge": { deltas: false } },
      },
      "f.json",
    );
    expect(fleet.deltas).toEqual({ on: true, tool: TOOL });
    expect(fleet.policy.deltas).toBe(true);
    expect(fleet.policies).toEqual([{ selector: "@edge", override: { deltas: false } }]);
    // Without the key: on by default (fleet/delta-tool.ts), the file says nothing.
    expect(parseFleetValue(minimal({ address: "h.lan" }), "f.json").deltas).toBeUndefined();
  });

  it("reads deltas turned off, or on for every host without a tool named", () => {
    const read = (deltas: unknown) =>
      parseFleetValue({ ...minimal({ address: "h.lan" }), deltas }, "f.json").deltas;
    expect(read(false)).toEqual({ on: false });
    expect(read(true)).toEqual({ on: true, tool: undefined });
    expect(read({})).toEqual({ on: true, tool: undefined });
  });

  it("refuses a tool that is not a store path, deltas neither a switch nor an object, and a switch that is not boolean", () => {
    expect(
      problemsOf({ ...minimal({ address: "h.lan" }), deltas: { tool: "/usr/bin/zstd" } }),
    ).toEqual(['deltas.tool: must be a store path holding bin/zstd (got "/usr/bin/zstd")']);
    expect(problemsOf({ ...minimal({ address: "h.lan" }), deltas: "off" })).toEqual([
      'deltas: must be true, false or an object such as {"tool": "/nix/store/…-zstd-…"} (got "off")',
    ]);
    expect(problemsOf({ ...minimal({ address: "h.lan" }), policy: { deltas: "yes" } })).toEqual([
      'policy.deltas: must be true or false (got "yes")',
    ]);
  });
});
