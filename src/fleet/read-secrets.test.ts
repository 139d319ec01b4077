// The fleet file's `secrets` section and hosts' `hostKey`: defaults, every rule with a message
// that names the field, and ciphertext paths resolved against the fleet file.
import { describe, expect, it } from "vitest";
import { ADMIN_PLACEHOLDER } from "./fleet.js";
import { FleetFileError, parseFleetValue, resolveFleetPaths } from "./fleet-file.js";
import { formatFleet } from "./fleet-json.js";

const HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH2ocsX1Me8/O5NZWMH4XHmYORWs8Buly0VF+C10HLq7";
const ADMIN = "age13lla8hn7p8ua5ud9858j0rcgxdj2kppja6nezzv9v03e000qx42sp7nezk";
const SYSTEM = "/nix/store/vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-nixos-system-web";

function fleetWith(secrets: unknown, hostExtra: Record<string, unknown> = {}) {
  return {
    cache: {
      url: "file:///srv/cache",
      publicKeys: ["c-1:lWwOmhFw0ds2rFa+bN7VVTYVXK7ujJv76J6gVTXevhM="],
    },
    releases: { channel: "prod", publicKeys: ["r-1:lWwOmhFw0ds2rFa+bN7VVTYVXK7ujJv76J6gVTXevhM="] },
    hosts: {
      web1: { tags: ["web"], address: "10.0.0.1", system: SYSTEM },
      db1: { tags: ["db"], delivery: "agent", hostKey: HOST_KEY, system: SYSTEM, ...hostExtra },
    },
    secrets,
  };
}

function problemsOf(doc: unknown): string[] {
  try {
    parseFleetValue(doc, "fleet.json");
  } catch (err) {
    if (err instanceof FleetFileError)
      return err.problems.map((p) => `${p.path.join(".")}: ${p.message}`);
    throw err;
  }
  return [];
}

describe("the secrets section", () => {
  it("fills in owner, group, mode, host path and ciphertext file", () => {
    const fleet = parseFleetValue(
      fleetWith({ admins: [ADMIN], entries: { "db-password": { hosts: "@db" } } }),
      "fleet.json",
    );
    expect(fleet.secrets).toEqual({
      admins: [ADMIN],
      age: undefined,
      entries: [
        {
          name: "db-password",
          hosts: "@db",
          file: "secrets/db-password.age",
          owner: "root",
          group: "root",
          mode: "0400",
          path: "/run/keys/db-password",
        },
      ],
    });
    expect(fleet.hosts.find((h) => h.name === "db1")?.hostKey).toBe(HOST_KEY);
    // Relative ciphertext files are resolved against the fleet file's directory.
    expect(resolveFleetPaths(fleet, "/srv/fleet").secrets?.entries[0]?.file).toBe(
      "/srv/fleet/secrets/db-password.age",
    );
    // And the section survives a round trip through the fleet file's text.
    expect(parseFleetValue(JSON.parse(formatFleet(fleet)), "again").secrets).toEqual(fleet.secrets);
  });

  it("keeps what the entry says, a three-digit mode as four", () => {
    const fleet = parseFleetValue(
      fleetWith({
        admins: [HOST_KEY],
        entries: {
          "tls.key": {
            hosts: "web1,@db",
            file: "/etc/fleet/tls.age",
            owner: "nginx",
            group: "998",
            mode: "440",
            path: "/run/nginx/tls.key",
          },
        },
      }),
      "fleet.json",
    );
    expect(fleet.secrets?.entries[0]).toMatchObject({
      owner: "nginx",
      group: "998",
      mode: "0440",
      path: "/run/nginx/tls.key",
      file: "/etc/fleet/tls.age",
    });
  });

  it("refuses names with / or .., paths off /run, selectors that match nothing, bad admins", () => {
    const problems = problemsOf(
      fleetWith({
        admins: ["ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ"],
        entries: {
          "a/b": { hosts: "@db" },
          "..x": { hosts: "@db" },
          disk: { hosts: "@db", path: "/var/lib/app/secret" },
          dots: { hosts: "@db", path: "/run/keys/../etc/shadow" },
          typo: { hosts: "@dbs" },
          owner: { hosts: "@db", owner: "Bad Name", mode: "0999" },
          twin: { hosts: "@db", path: "/run/keys/disk2" },
          twin2: { hosts: "@db", path: "/run/keys/disk2" },
        },
      }),
    );
    const at = (prefix: string) => problems.filter((p) => p.startsWith(prefix));
    expect(at("secrets.admins.0")[0]).toMatch(/only ssh-ed25519 host keys and age1 recipients/);
    expect(at("secrets.entries.a/b")[0]).toMatch(/no "\/", no "\.\."/);
    expect(at("secrets.entries...x")[0]).toMatch(/no "\/", no "\.\."/);
    expect(at("secrets.entries.disk.path")[0]).toMatch(/under \/run, which is a tmpfs/);
    expect(at("secrets.entries.dots.path")[0]).toMatch(/no "\." or "\.\."/);
    expect(at("secrets.entries.typo.hosts")[0]).toMatch(/"@dbs" matches no tag/);
    expect(at("secrets.entries.owner.owner")).toHaveLength(1);
    expect(at("secrets.entries.owner.mode")).toHaveLength(1);
    expect(at("secrets.entries.twin2.path")[0]).toBe(
      'secrets.entries.twin2.path: is also the path of secret "twin" (/run/keys/disk2), on db1: a host keeps one file at a path',
    );
  });

  it("lets hosts that share none of two secrets keep each at the same path (colmena's keys)", () => {
    expect(
      problemsOf(
        fleetWith({
          admins: [ADMIN],
          entries: {
            "web1-tls": { hosts: "web1", path: "/run/keys/tls" },
            "db1-tls": { hosts: "db1", path: "/run/keys/tls" },
          },
        }),
      ),
    ).toEqual([]);
    expect(
      problemsOf(
        fleetWith({
          admins: [ADMIN],
          entries: {
            "db1-tls": { hosts: "db1", path: "/run/keys/tls" },
            "all-tls": { hosts: "web1,db1", path: "/run/keys/tls" },
          },
        }),
      ),
    ).toEqual([
      'secrets.entries.all-tls.path: is also the path of secret "db1-tls" (/run/keys/tls), on db1: a host keeps one file at a path',
    ]);
  });

  it("says the admin init --from left to fill in is still its placeholder", () => {
    expect(problemsOf(fleetWith({ admins: [ADMIN_PLACEHOLDER], entries: {} }))).toEqual([
      "secrets.admins.0: is the placeholder 'nixship init --from' wrote: put an admin's age recipient there (age1…, from 'age-keygen -y KEY'), or an ssh-ed25519 public key",
    ]);
  });

  it("needs at least one admin, so that someone can always edit a secret", () => {
    expect(problemsOf(fleetWith({ admins: [], entries: {} }))).toEqual([
      "secrets.admins: must hold at least 1 item",
    ]);
  });
});

describe("hostKey", () => {
  it("is an ssh-ed25519 key, and only for ssm and agent hosts", () => {
    const secrets = { admins: [ADMIN], entries: {} };
    expect(problemsOf(fleetWith(secrets, { hostKey: ADMIN }))[0]).toMatch(
      /^hosts\.db1\.hostKey: must be an SSH host key/,
    );
    const doc = fleetWith(secrets);
    (doc.hosts.web1 as Record<string, unknown>).hostKey = HOST_KEY;
    expect(problemsOf(doc)).toEqual([
      "hosts.web1.hostKey: is only for ssm and agent hosts: an ssh host's key is read from the fleet's known_hosts",
    ]);
  });
});
