import { describe, expect, it } from "vitest";
import { ADDRESS_PLACEHOLDER } from "./fleet.js";
import { parseFleetValue } from "./fleet-file.js";
import { fleetOutputLine, hostsToFill, initFleetJson, initFleetNix } from "./init-fleet.js";

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

  it("is a plain attribute set of self when none does", () => {
    const configurations = [{ name: "a", deployment: null }];
    expect(initFleetNix(configurations, SETTINGS)).toContain("{ self, ... }:\n{\n  cache = ");
    expect(fleetOutputLine(configurations, "nixship", "./nixship.nix")).toBe(
      "nixship = import ./nixship.nix { inherit self; };",
    );
  });
});
