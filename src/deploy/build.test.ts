import { describe, expect, it } from "vitest";
import { parseFlakeInstallable } from "./build.js";
import { secretKind } from "./flake-source.js";

describe("parseFlakeInstallable", () => {
  it("makes local flake directories absolute, against the fleet file's directory", () => {
    expect(parseFlakeInstallable("path:./examples#web-v1", "/srv/fleet")).toEqual({
      local: { dir: "/srv/fleet/examples", explicitPath: true },
      attrPath: ["web-v1"],
    });
    expect(parseFlakeInstallable(".#web", "/srv/fleet")).toEqual({
      local: { dir: "/srv/fleet", explicitPath: false },
      attrPath: ["web"],
    });
    expect(parseFlakeInstallable("../other#a.b", "/srv/fleet")).toEqual({
      local: { dir: "/srv/other", explicitPath: false },
      attrPath: ["a", "b"],
    });
    expect(parseFlakeInstallable("path:/abs/flake#web", "/x")).toEqual({
      local: { dir: "/abs/flake", explicitPath: true },
      attrPath: ["web"],
    });
  });

  it("keeps other flake references as they are", () => {
    expect(parseFlakeInstallable("github:me/infra#nixosConfigurations.web", "/x")).toEqual({
      flake: "github:me/infra",
      attrPath: ["nixosConfigurations", "web"],
    });
  });
});

describe("secretKind", () => {
  it("knows SSH, age and Nix secret keys by their first bytes", () => {
    expect(secretKind("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n")).toBe(
      "an SSH or TLS private key",
    );
    expect(secretKind("-----BEGIN PRIVATE KEY-----\n")).toBe("an SSH or TLS private key");
    expect(secretKind("# created: 2026\nAGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQ\n")).toBe(
      "an age secret key",
    );
    expect(secretKind(`cache-1:${"A".repeat(86)}==`)).toBe("a Nix secret signing key");
  });

  it("leaves public keys and other files alone", () => {
    expect(secretKind(`cache-1:${"A".repeat(43)}=`)).toBeUndefined();
    expect(secretKind("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI me@host")).toBeUndefined();
    expect(secretKind("{ outputs = { self }: { }; }")).toBeUndefined();
  });
});
