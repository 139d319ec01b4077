import { describe, expect, it } from "vitest";
import { parseFleetValue } from "./fleet-file.js";
import { relocateFleet } from "./relocate-fleet.js";

const STORE_PATH = `/nix/store/${"a".repeat(32)}-nixos-system-web1`;

const fleet = parseFleetValue(
  {
    ssh: { configFile: "ssh_config", knownHosts: "/etc/ssh/known_hosts" },
    hosts: {
      a: { address: "192.0.2.1", system: ".#web" },
      b: { address: "192.0.2.2", system: "path:./nix/hosts#b" },
      c: { address: "192.0.2.3", system: "../shared#c" },
      d: { address: "192.0.2.4", system: "github:me/infra#d" },
      e: { address: "192.0.2.5", system: STORE_PATH },
    },
  },
  "base.json",
);

const systems = (f: typeof fleet) =>
  f.hosts.map((h) => (h.system.kind === "flake" ? h.system.installable : h.system.path));

describe("relocateFleet", () => {
  it("rewrites relative ssh files and local flake references for the new directory", () => {
    const moved = relocateFleet(fleet, "/repo/infra", "/repo/out/prod");
    expect(moved.ssh).toEqual({
      user: "root",
      sudo: false,
      configFile: "../../infra/ssh_config",
      knownHosts: "/etc/ssh/known_hosts",
    });
    expect(systems(moved)).toEqual([
      "../../infra#web",
      "path:../../infra/nix/hosts#b",
      "../../shared#c",
      "github:me/infra#d",
      STORE_PATH,
    ]);
  });

  it("rewrites every other file the fleet names: secrets, a machines file, a bearer token", () => {
    const withFiles = parseFleetValue(
      {
        build: { builders: "@nix/machines" },
        prometheus: { url: "http://127.0.0.1:9090", bearerTokenFile: "prom.token" },
        secrets: {
          admins: ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"],
          entries: {
            db: { hosts: "a" },
            tls: { hosts: "a", file: "/srv/tls.age" },
          },
        },
        hosts: { a: { address: "192.0.2.1", system: ".#web" } },
      },
      "base.json",
    );
    const moved = relocateFleet(withFiles, "/repo/infra", "/repo/out/prod");
    expect(moved.build.builders).toEqual({ kind: "file", path: "../../infra/nix/machines" });
    expect(moved.prometheus?.bearerTokenFile).toBe("../../infra/prom.token");
    expect(moved.secrets?.entries.map((e) => e.file)).toEqual([
      "../../infra/secrets/db.age",
      "/srv/tls.age",
    ]);
  });

  it("writes references into a subdirectory as ./x and to the parent as ./..", () => {
    expect(systems(relocateFleet(fleet, "/repo/infra", "/repo")).slice(0, 3)).toEqual([
      "./infra#web",
      "path:./infra/nix/hosts#b",
      "./shared#c",
    ]);
    expect(systems(relocateFleet(fleet, "/repo", "/repo/infra"))[0]).toBe("./..#web");
  });

  it("leaves a fleet that stays in its directory as it is", () => {
    expect(relocateFleet(fleet, "/repo/infra", "/repo/infra/")).toBe(fleet);
  });

  it("gives references the fleet loader accepts", () => {
    const moved = relocateFleet(fleet, "/repo/infra", "/repo/out/prod");
    const doc = {
      ssh: { configFile: moved.ssh.configFile },
      hosts: Object.fromEntries(
        moved.hosts.map((h, i) => [h.name, { address: h.address, system: systems(moved)[i] }]),
      ),
    };
    expect(parseFleetValue(doc, "moved.json").hosts).toHaveLength(5);
  });
});
