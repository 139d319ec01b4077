// The fleet file's secrets at their edges: one ciphertext file per secret, none that is the
// fleet file's default name or the host-key pins, and no host path segment a command on the
// host would read as an option.
import { describe, expect, it } from "vitest";
import { PINS_FILE } from "../secrets/host-key-pins.js";
import { FleetFileError, parseFleetValue } from "./fleet-file.js";
import { DEFAULT_FLEET_FILE } from "./load-fleet.js";
import { NOT_SECRET_FILES } from "./read-secrets.js";

const ADMIN = "age13lla8hn7p8ua5ud9858j0rcgxdj2kppja6nezzv9v03e000qx42sp7nezk";
const SYSTEM = "/nix/store/vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-nixos-system-web";

function problemsOf(entries: Record<string, unknown>): string[] {
  const doc = {
    hosts: {
      web1: { tags: ["web"], address: "10.0.0.1", system: SYSTEM },
      web2: { tags: ["web"], address: "10.0.0.2", system: SYSTEM },
    },
    secrets: { admins: [ADMIN], entries },
  };
  try {
    parseFleetValue(doc, "fleet.json");
  } catch (err) {
    if (err instanceof FleetFileError) {
      return err.problems.map((p) => `${p.path.join(".")}: ${p.message}`);
    }
    throw err;
  }
  return [];
}

describe("a secret's ciphertext file", () => {
  it("is one secret's alone: a second secret naming it is refused, naming both", () => {
    expect(
      problemsOf({
        a: { hosts: "web1", file: "secrets/shared.age" },
        b: { hosts: "web2", file: "./secrets/x/../shared.age" },
      }),
    ).toEqual([
      'secrets.entries.b.file: is also the file of secret "a" (./secrets/x/../shared.age): each secret needs a file of its own, else setting one replaces the other\'s value (give "b" another file, e.g. secrets/b.age)',
    ]);
    // A file given to one secret that is another's default file.
    expect(
      problemsOf({ a: { hosts: "web1" }, b: { hosts: "web2", file: "secrets/a.age" } }),
    ).toEqual([
      expect.stringMatching(/^secrets\.entries\.b\.file: is also the file of secret "a"/),
    ]);
    // Distinct files are fine.
    expect(problemsOf({ a: { hosts: "web1" }, b: { hosts: "web2" } })).toEqual([]);
  });

  it("is not the fleet file's default name nor the host-key pins file", () => {
    expect(NOT_SECRET_FILES).toHaveProperty([PINS_FILE]);
    expect(NOT_SECRET_FILES).toHaveProperty([DEFAULT_FLEET_FILE]);
    expect(problemsOf({ a: { hosts: "web1", file: "nixship.json" } })).toEqual([
      "secrets.entries.a.file: is the fleet file's name (nixship.json), which setting the secret would overwrite with ciphertext: give the secret a file of its own, e.g. secrets/a.age",
    ]);
    expect(problemsOf({ a: { hosts: "web1", file: "secrets/../nixship-host-keys" } })).toEqual([
      "secrets.entries.a.file: is the host-key pins file (secrets/../nixship-host-keys), which setting the secret would overwrite with ciphertext: give the secret a file of its own, e.g. secrets/a.age",
    ]);
  });

  it("names a file, not a directory", () => {
    for (const file of [".", "secrets/", "..", "secrets/.."]) {
      expect(problemsOf({ a: { hosts: "web1", file } }), file).toEqual([
        `secrets.entries.a.file: must name a file (got "${file}")`,
      ]);
    }
  });
});

describe("a secret's host path", () => {
  it("has no segment starting with '-', which a command on the host would read as an option", () => {
    for (const path of ["/run/keys/--version", "/run/-rf/x", "/run/keys/-"]) {
      const problems = problemsOf({ a: { hosts: "web1", path } });
      expect(problems, path).toHaveLength(1);
      expect(problems[0], path).toMatch(
        /^secrets\.entries\.a\.path: must have no segment starting with "-" \("-[^"]*"\), which a command on the host would read as an option: rename it/,
      );
    }
    // A "-" inside a segment is fine.
    expect(problemsOf({ a: { hosts: "web1", path: "/run/keys/db-password-2" } })).toEqual([]);
  });
});
