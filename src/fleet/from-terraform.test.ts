import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { formatPublicKey, generateSecretKey, publicKeyOf } from "../nix/keys.js";
import type { Fleet } from "./fleet.js";
import { parseFleetValue } from "./fleet-file.js";
import {
  type FleetFromTerraformOptions,
  fleetFromTerraform,
  TerraformOutputError,
} from "./from-terraform.js";
import { HostKeyChangedError } from "./known-hosts.js";

const CACHE_KEY = formatPublicKey(publicKeyOf(generateSecretKey("cache-1")));
const RELEASE_KEY = formatPublicKey(publicKeyOf(generateSecretKey("release-1")));
const SYSTEM = `/nix/store/${"a".repeat(32)}-nixos-system-web1`;

const output = (value: unknown, type: unknown = "string") => ({ sensitive: false, type, value });

function outputs(hosts: Record<string, unknown>, overrides: Record<string, unknown> = {}) {
  return {
    cache_url: output("s3://fleet-cache?region=eu-west-1"),
    region: output("eu-west-1"),
    ssm_document_name: output("nixship-activate"),
    hosts: output(hosts, ["object", {}]),
    ...overrides,
  };
}

const web = (instanceId: string, tags: Record<string, string> = { Role: "web" }) => ({
  instance_id: instanceId,
  private_ip: "10.0.0.5",
  public_ip: "",
  tags,
});

function options(overrides: Partial<FleetFromTerraformOptions> = {}): FleetFromTerraformOptions {
  return {
    via: "ssm",
    tagKeys: [],
    base: undefined,
    systemTemplate: ".#nixosConfigurations.{name}.config.system.build.toplevel",
    cacheKeys: [CACHE_KEY],
    substituter: undefined,
    ...overrides,
  };
}

/** The problems of a conversion that must fail, as `path: message` lines. */
function problems(value: unknown, opts: FleetFromTerraformOptions): string[] {
  try {
    fleetFromTerraform(value, opts, "out.json");
  } catch (err) {
    if (!(err instanceof TerraformOutputError)) throw err;
    expect(err.exitCode).toBe(2);
    return err.message.split("\n").map((line) => line.replace(/^out\.json: /, ""));
  }
  throw new Error("the conversion succeeded");
}

const BASE: Fleet = parseFleetValue(
  {
    cache: {
      url: "file:///old/cache",
      publicKeys: [CACHE_KEY],
      substituter: "https://cache.example.org",
    },
    releases: { channel: "prod", publicKeys: [RELEASE_KEY] },
    ssh: { knownHosts: "/etc/fleet/known_hosts", user: "deploy" },
    ssm: { commandTimeout: 600 },
    policy: { parallel: 3, health: { http: [{ url: "http://{address}/health" }] } },
    prometheus: { url: "https://prometheus.internal:9090", bearerTokenFile: "/etc/fleet/prom" },
    hosts: {
      web1: { address: "192.0.2.1", tags: ["old"], system: SYSTEM },
      web2: { address: "192.0.2.2", system: ".#web2" },
      gone: { address: "192.0.2.3", system: ".#gone" },
    },
  },
  "base.json",
);

describe("fleetFromTerraform", () => {
  it("makes ssm hosts by instance ID, with addresses, Role tags lowercased and templated systems", () => {
    const made = fleetFromTerraform(
      outputs({
        web1: { ...web("i-0123456789abcdef0"), public_ip: "198.51.100.7" },
        web2: web("i-0fedcba9876543210", { Role: "Web", Name: "web2" }),
      }),
      options(),
      "out.json",
    );
    expect(made.doc).toMatchObject({
      cache: {
        url: "s3://fleet-cache?region=eu-west-1",
        publicKeys: [CACHE_KEY],
        substituter: "s3://fleet-cache?region=eu-west-1",
      },
      ssm: { documentName: "nixship-activate", region: "eu-west-1", commandTimeout: 900 },
      hosts: {
        web1: {
          delivery: "ssm",
          instanceId: "i-0123456789abcdef0",
          address: "198.51.100.7",
          tags: ["web"],
          system: ".#nixosConfigurations.web1.config.system.build.toplevel",
        },
        web2: { delivery: "ssm", instanceId: "i-0fedcba9876543210", address: "10.0.0.5" },
      },
    });
    expect(made.doc).not.toHaveProperty("releases");
    expect(made.fleet.hosts.map((h) => h.tags)).toEqual([["web"], ["web"]]);
    expect(parseFleetValue(made.doc, "x")).toEqual(made.fleet);
  });

  it("takes systems and the settings Terraform does not know from the base fleet", () => {
    const made = fleetFromTerraform(
      outputs({ web1: web("i-0123456789abcdef0"), web2: web("i-0fedcba9876543210") }),
      options({ base: BASE, systemTemplate: undefined, cacheKeys: undefined }),
      "out.json",
    );
    expect(made.fleet.hosts.map((h) => [h.name, h.system])).toEqual([
      ["web1", { kind: "store-path", path: SYSTEM }],
      ["web2", { kind: "flake", installable: ".#web2" }],
    ]);
    // Terraform's addresses, not the base's; Terraform's tags, with the base's (a person's
    // own, such as a canary's) beside them.
    expect(made.fleet.hosts.map((h) => [h.tags, h.address])).toEqual([
      [["web", "old"], "10.0.0.5"],
      [["web"], "10.0.0.5"],
    ]);
    expect(made.fleet.cache).toEqual({
      url: "s3://fleet-cache?region=eu-west-1",
      publicKeys: [CACHE_KEY],
      substituter: "https://cache.example.org",
    });
    expect(made.fleet.releases).toEqual(BASE.releases);
    expect(made.fleet.ssh).toEqual(BASE.ssh);
    expect(made.fleet.policy).toEqual(BASE.policy);
    expect(made.fleet.prometheus).toEqual(BASE.prometheus);
    expect(made.fleet.ssm.commandTimeout).toBe(600);
    expect(made.notInTerraform).toEqual(["gone"]);
  });

  it("uses the template for hosts the base does not name, and refuses a host with neither", () => {
    const tf = outputs({ web1: web("i-0123456789abcdef0"), web9: web("i-0123456789abcdef9") });
    const made = fleetFromTerraform(
      tf,
      options({ base: BASE, systemTemplate: ".#{name}", cacheKeys: undefined }),
      "out.json",
    );
    expect(made.fleet.hosts.map((h) => h.system)).toEqual([
      { kind: "store-path", path: SYSTEM },
      { kind: "flake", installable: ".#web9" },
    ]);
    expect(problems(tf, options({ base: BASE, systemTemplate: undefined }))).toEqual([
      "hosts.value.web9: is not a host of the base fleet, and no system template was given: its system is unknown",
    ]);
  });

  it("makes ssh hosts by public address, else private, and agent hosts", () => {
    const tf = outputs({
      a: { ...web("i-0123456789abcdef0"), public_ip: "198.51.100.7" },
      b: { ...web("i-0123456789abcdef1"), public_ip: null },
    });
    const ssh = fleetFromTerraform(tf, options({ via: "ssh" }), "out.json");
    expect(ssh.fleet.hosts.map((h) => [h.delivery, h.address])).toEqual([
      ["ssh", "198.51.100.7"],
      ["ssh", "10.0.0.5"],
    ]);
    expect(ssh.doc.hosts).not.toHaveProperty("a.instanceId");
    expect(ssh.fleet.cache?.substituter).toBeUndefined();
    const agent = fleetFromTerraform(tf, options({ via: "agent", base: BASE }), "out.json");
    expect(agent.fleet.hosts.map((h) => h.delivery)).toEqual(["agent", "agent"]);
    expect(agent.fleet.releases?.channel).toBe("prod");
  });

  it("adds the values of further tag keys as tags, lowercased and without repeats", () => {
    const made = fleetFromTerraform(
      outputs({ web1: web("i-0123456789abcdef0", { Role: "Web", Env: "PROD", Team: "web" }) }),
      options({ tagKeys: ["Env", "Team", "Absent"] }),
      "out.json",
    );
    expect(made.fleet.hosts[0]?.tags).toEqual(["web", "prod"]);
  });

  it("names the JSON path of every problem, all at once", () => {
    const tf = outputs(
      {
        web1: { ...web(""), tags: { Role: "Web Server", Env: 3 } },
        Web_2: web("i-0123456789abcdef0"),
        web3: { ...web("i-bad"), private_ip: "-oProxyCommand=x" },
        web4: "i-0123456789abcdef4",
      },
      { region: output("Europe") },
    );
    expect(problems(tf, options({ tagKeys: ["Env"] }))).toEqual([
      'region.value: must be a string matching ^[a-z]{2}(-[a-z]+)+-\\d$ (got "Europe")',
      "hosts.value.web1.instance_id: is needed for an ssm host: SSM Run Command reaches the instance by its ID",
      'hosts.value.web1.tags.Role: "Web Server" is not a fleet tag: lowercased, tags must match ^[a-z0-9][a-z0-9-]*$, at most 63 characters',
      "hosts.value.web1.tags.Env: must be a string (got 3)",
      "hosts.value.Web_2: is not a fleet host name: names must match ^[a-z0-9][a-z0-9-]*$, at most 63 characters",
      expect.stringMatching(/^hosts\.value\.web3\.instance_id: must be a string matching/),
      expect.stringMatching(/^hosts\.value\.web3\.private_ip: must be a string matching/),
      'hosts.value.web4: must be an object {instance_id, private_ip, public_ip, tags, ssh_host_public_key} (got "i-0123456789abcdef4")',
    ]);
  });

  it("refuses missing outputs, outputs that are not output objects, and a bad cache URL", () => {
    const { hosts: _, ...noHosts } = outputs({ web1: web("i-0123456789abcdef0") });
    expect(problems(noHosts, options())).toEqual([
      "hosts: is missing: examples/aws has the outputs cache_url, region, ssm_document_name, hosts",
    ]);
    expect(
      problems(
        outputs({}, { cache_url: "s3://x", ssm_document_name: output("no spaces allowed") }),
        options(),
      ),
    ).toEqual([
      'cache_url: must be an output as \'terraform output -json\' prints it, {"sensitive", "type", "value"} (got "s3://x")',
      expect.stringMatching(/^ssm_document_name\.value: must be a string matching/),
      "hosts.value: names no host",
    ]);
    expect(problems(outputs({}, { cache_url: output("ftp://x") }), options())[0]).toMatch(
      /^cache_url\.value: .*ftp:\/\/x/,
    );
    expect(problems([], options())).toEqual([
      "(top level): must be an object of outputs, as 'terraform output -json' prints (got an array)",
    ]);
  });

  it("refuses an ssh host with no address at all", () => {
    const tf = outputs({ web1: { ...web("i-0123456789abcdef0"), private_ip: "" } });
    expect(problems(tf, options({ via: "ssh" }))).toEqual([
      "hosts.value.web1: an ssh host needs a public_ip or a private_ip, and this one has neither",
    ]);
    // ssm reaches it by ID: no address needed.
    expect(fleetFromTerraform(tf, options(), "x").fleet.hosts[0]?.address).toBeUndefined();
  });

  it("takes addresses that are IP addresses, v4 or v6, and refuses any other word", () => {
    const tf = (publicIp: string) =>
      outputs({ web1: { ...web("i-0123456789abcdef0"), public_ip: publicIp } });
    expect(fleetFromTerraform(tf("2001:db8::1"), options(), "x").fleet.hosts[0]?.address).toBe(
      "2001:db8::1",
    );
    for (const bad of ["999.1.1.1", "evil.example.com", "hunter2"]) {
      expect(problems(tf(bad), options({ via: "ssh" })), bad).toEqual([
        `hosts.value.web1.public_ip: must be an IP address, as EC2 gives an instance's (got ${JSON.stringify(bad)})`,
      ]);
    }
  });

  it("quotes no value of an output Terraform marks sensitive", () => {
    const secret = "AKIAIOSFODNN7EXAMPLE/wJalrXUtnFEMI";
    const tf = outputs(
      { web1: { ...web("i-0123456789abcdef0"), tags: { Role: secret } } },
      { region: { sensitive: true, type: "string", value: secret } },
    );
    const hostsSensitive = { ...tf, hosts: { ...tf.hosts, sensitive: true } };
    const said = problems(hostsSensitive, options());
    expect(said).toEqual([
      "region.value: must be a string matching ^[a-z]{2}(-[a-z]+)+-\\d$ (Terraform marks the output sensitive: its value is not shown)",
      expect.stringMatching(
        /^hosts\.value\.web1\.tags\.Role: .*\(Terraform marks the output sensitive: its value is not shown\)$/,
      ),
    ]);
    expect(said.join("\n")).not.toContain("AKIA");
  });
});

/** A fresh `ssh-ed25519 BASE64` key line. */
function sshKey(): string {
  const raw = generateKeyPairSync("ed25519")
    .publicKey.export({ format: "der", type: "spki" })
    .subarray(-32);
  const field = (b: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, b.length]), b]);
  return `ssh-ed25519 ${Buffer.concat([field(Buffer.from("ssh-ed25519")), field(raw)]).toString("base64")}`;
}

describe("fleetFromTerraform and the hosts' SSH host keys", () => {
  const KEY = sshKey();
  const tf = outputs({
    web1: {
      ...web("i-0123456789abcdef0"),
      public_ip: "198.51.100.7",
      ssh_host_public_key: `${KEY}\n`,
    },
    web2: { ...web("i-0123456789abcdef2"), ssh_host_public_key: "" },
    web3: { ...web("i-0123456789abcdef3"), private_ip: "10.0.0.7" },
  });

  it('gives each host\'s key from ssh_host_public_key (none for "" or absent) and its names, public first', () => {
    const made = fleetFromTerraform(tf, options({ via: "ssh" }), "out.json");
    expect(made.hostKeys).toEqual([
      { host: "web1", names: ["198.51.100.7", "10.0.0.5"], key: KEY },
      { host: "web2", names: ["10.0.0.5"], key: undefined },
      { host: "web3", names: ["10.0.0.7"], key: undefined },
    ]);
    // An ssh host's key goes to known_hosts, never into the fleet file.
    expect(made.doc.hosts).not.toHaveProperty("web1.hostKey");
  });

  it("makes it the hostKey of ssm and agent hosts (their secrets' recipient), else keeps the base's", () => {
    const base = parseFleetValue(
      {
        ...JSON.parse(JSON.stringify({ cache: { url: "file:///c", publicKeys: [CACHE_KEY] } })),
        releases: { channel: "prod", publicKeys: [RELEASE_KEY] },
        hosts: {
          web1: { delivery: "agent", hostKey: KEY, system: SYSTEM },
          web2: { delivery: "agent", hostKey: sshKey(), system: SYSTEM },
          web3: { delivery: "agent", system: SYSTEM },
        },
      },
      "base.json",
    );
    for (const via of ["ssm", "agent"] as const) {
      const made = fleetFromTerraform(tf, options({ via, base }), "out.json");
      expect(made.fleet.hosts.map((h) => h.hostKey)).toEqual([
        KEY,
        base.hosts[1]?.hostKey,
        undefined,
      ]);
    }
  });

  it("refuses a key that differs from the base fleet's hostKey, unless replaceHostKeys", () => {
    const old = sshKey();
    const base = parseFleetValue(
      {
        cache: { url: "file:///c", publicKeys: [CACHE_KEY] },
        hosts: {
          web1: {
            delivery: "ssm",
            instanceId: "i-0123456789abcdef0",
            hostKey: old,
            system: SYSTEM,
          },
        },
      },
      "base.json",
    );
    let thrown: unknown;
    try {
      fleetFromTerraform(tf, options({ base }), "out.json");
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(HostKeyChangedError);
    expect((thrown as HostKeyChangedError).conflicts).toEqual([
      expect.objectContaining({ host: "web1", where: "the base fleet's hostKey" }),
    ]);
    expect((thrown as Error).message).toMatch(
      /^web1: its SSH host key changed: the base fleet's hostKey trusts SHA256:/,
    );
    const made = fleetFromTerraform(tf, options({ base, replaceHostKeys: true }), "out.json");
    expect(made.fleet.hosts[0]?.hostKey).toBe(KEY);
  });

  it("names the fleet's known_hosts file when told to", () => {
    const made = fleetFromTerraform(tf, options({ via: "ssh", base: BASE, knownHosts: "kh" }), "x");
    expect(made.fleet.ssh).toEqual({ ...BASE.ssh, knownHosts: "kh" });
    expect(fleetFromTerraform(tf, options({ via: "ssh", base: BASE }), "x").fleet.ssh).toEqual(
      BASE.ssh,
    );
  });

  it("refuses a key that is no ssh-ed25519 key line, at its JSON path", () => {
    const bad = outputs({
      web1: { ...web("i-0123456789abcdef0"), ssh_host_public_key: "ssh-rsa AAAAB3NzaC1yc2E" },
      web2: { ...web("i-0123456789abcdef2"), ssh_host_public_key: 42 },
      web3: { ...web("i-0123456789abcdef3"), ssh_host_public_key: "ssh-ed25519 AAAAnotakey" },
    });
    expect(problems(bad, options({ via: "ssh" }))).toEqual([
      "hosts.value.web1.ssh_host_public_key: is not an ssh-ed25519 public key line (ssh-ed25519 AAAA…), as the host module's output gives",
      "hosts.value.web2.ssh_host_public_key: must be a non-empty string (at most 4096 characters; got 42)",
      expect.stringMatching(
        /^hosts\.value\.web3\.ssh_host_public_key: is not an ssh-ed25519 public key line .*: the key: /,
      ),
    ]);
  });
});
