import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ADDRESS_PLACEHOLDER } from "./fleet.js";
import { parseFleetValue } from "./fleet-file.js";
import { fleetOutputLine, hostsToFill, initFleetJson, initFleetNix } from "./init-fleet.js";

/** nixship's Nix lib, as the flake gives it (`nixship.lib`). */
const LIB = new URL("../../packaging/nix/lib.nix", import.meta.url).pathname;

const SETTINGS = {
  cacheUrl: "file:///srv/flake/.nixship-cache",
  publicKey: "cache-1:lWwOmhFw0ds2rFa+bN7VVTYVXK7ujJv76J6gVTXevhM=",
};

describe("initFleetJson", () => {
  it("takes the module's options, leaves its defaults out, and marks unknown addresses", () => {
    const doc = initFleetJson(
      [
        { name: "a", deployment: { tags: [], delivery: "ssh", policy: {} } },
        {
          name: "b",
          deployment: { delivery: "ssm", instanceId: "i-0123456789abcdef0", tags: ["x"] },
        },
        { name: "c", deployment: null },
      ],
      SETTINGS,
    );
    expect(doc.hosts).toEqual({
      a: {
        address: ADDRESS_PLACEHOLDER,
        system: ".#nixosConfigurations.a.config.system.build.toplevel",
      },
      b: {
        tags: ["x"],
        delivery: "ssm",
        instanceId: "i-0123456789abcdef0",
        system: ".#nixosConfigurations.b.config.system.build.toplevel",
      },
      c: {
        address: ADDRESS_PLACEHOLDER,
        system: ".#nixosConfigurations.c.config.system.build.toplevel",
      },
    });
    expect(doc.policies).toBeUndefined();
    // The placeholder is refused by the fleet file's rules, naming the host's address.
    expect(() => parseFleetValue(doc, "nixship.json")).toThrow(
      /hosts\.a\.address: is the placeholder 'nixship init' wrote/,
    );
  });

  it("names the hosts to fill in: ssh hosts without address or sshHost", () => {
    expect(
      hostsToFill([
        { name: "a", deployment: { sshHost: "a.internal" } },
        { name: "b", deployment: { delivery: "agent" } },
        { name: "c", deployment: {} },
        { name: "d", deployment: null },
      ]),
    ).toEqual(["c", "d"]);
  });
});

describe("initFleetNix", () => {
  it("uses fleetFromConfigurations when a configuration imports the module", () => {
    const configurations = [
      { name: "a", deployment: { address: "10.0.0.1" } },
      { name: "b", deployment: null },
    ];
    const text = initFleetNix(configurations, SETTINGS);
    expect(text).toContain("{ self, nixshipLib, ... }:\nnixshipLib.fleetFromConfigurations {");
    expect(text).toContain(
      `b = { system = self.nixosConfigurations.b; address = "${ADDRESS_PLACEHOLDER}"; };`,
    );
    expect(text).not.toMatch(/\ba = \{/);
    expect(fleetOutputLine(configurations, "nixship", "./nixship.nix")).toBe(
      "nixship = import ./nixship.nix { inherit self; nixshipLib = nixship.lib; };",
    );
  });

  it("gives fleetFromConfigurations none of the configurations init left out (their names no host can have)", async () => {
    const configurations = [{ name: "good", deployment: { address: "10.0.0.1" } }];
    const text = initFleetNix(configurations, SETTINGS, ["Bad_Name"]);
    expect(text).toContain(
      '  configurations = builtins.removeAttrs self.nixosConfigurations [ "Bad_Name" ];',
    );
    // Nix evaluates it with nixship's own lib: the host left out is not in the fleet.
    const dir = mkdtempSync(join(tmpdir(), "nixship-init-nix-"));
    try {
      writeFileSync(join(dir, "nixship.nix"), text);
      const deployed = (address: string) =>
        `{ config.nixship.deployment = { address = "${address}"; }; }`;
      const expr = `builtins.attrNames (import ${join(dir, "nixship.nix")} { self = { nixosConfigurations = { good = ${deployed("10.0.0.1")}; Bad_Name = ${deployed("10.0.0.2")}; }; }; nixshipLib = import ${LIB}; }).hosts`;
      const names = JSON.parse(
        execFileSync("nix-instantiate", ["--eval", "--strict", "--json", "--expr", expr], {
          encoding: "utf8",
        }),
      );
      expect(names).toEqual(["good"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("is a plain attribute set of self when none does", () => {
    const configurations = [{ name: "a", deployment: null }];
    expect(initFleetNix(configurations, SETTINGS)).toContain("{ self, ... }:\n{\n  cache = ");
    expect(fleetOutputLine(configurations, "nixship", "./nixship.nix")).toBe(
      "nixship = import ./nixship.nix { inherit self; };",
    );
  });
});
