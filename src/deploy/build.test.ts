import { describe, expect, it } from "vitest";
import { parseFlakeInstallable } from "./build.js";

describe("parseFlakeInstallable", () => {
  it("makes local flake references absolute, against the fleet file's directory", () => {
    expect(parseFlakeInstallable("path:./examples#web-v1", "/srv/fleet")).toEqual({
      flake: "path:/srv/fleet/examples",
      attrPath: ["web-v1"],
    });
    expect(parseFlakeInstallable(".#web", "/srv/fleet")).toEqual({
      flake: "path:/srv/fleet",
      attrPath: ["web"],
    });
    expect(parseFlakeInstallable("../other#a.b", "/srv/fleet")).toEqual({
      flake: "path:/srv/other",
      attrPath: ["a", "b"],
    });
  });

  it("keeps other flake references as they are", () => {
    expect(parseFlakeInstallable("github:me/infra#nixosConfigurations.web", "/x")).toEqual({
      flake: "github:me/infra",
      attrPath: ["nixosConfigurations", "web"],
    });
    expect(parseFlakeInstallable("path:/abs/flake#web", "/x").flake).toBe("path:/abs/flake");
  });
});
