import { describe, expect, it } from "vitest";
import {
  derivationOutputs,
  newerThanTested,
  parseNixVersion,
  unsupportedNix,
} from "./nix-version.js";

const DRV = "/nix/store/9qfmzjvy03p1rkp6r89lqzanjhmc18sx-example-web-system-v1.drv";

function version(line: string) {
  const v = parseNixVersion(line);
  if (v === undefined) throw new Error(`no version in ${line}`);
  return v;
}

describe("parseNixVersion", () => {
  it.each([
    ["nix (Nix) 2.8.0", [2, 8, 0]],
    ["nix (Nix) 2.26.3\n", [2, 26, 3]],
    ["nix-store (Nix) 2.26.3", [2, 26, 3]],
    ["nix (Lix, like Nix) 2.91.1", [2, 91, 1]],
    ["nix (Determinate Nix 3.6.2) 2.29.0", [2, 29, 0]],
    ["nix (Nix) 2.24", [2, 24, 0]],
  ])("reads %j", (line, [major, minor, patch]) => {
    expect(version(line)).toMatchObject({ major, minor, patch, text: line.trim() });
  });

  it("finds no version where there is none", () => {
    expect(parseNixVersion("command not found")).toBeUndefined();
    expect(parseNixVersion("")).toBeUndefined();
  });
});

describe("which Nix is supported", () => {
  it("refuses one older than 2.8.0, naming both versions and the fix", () => {
    const refused = unsupportedNix(version("nix (Nix) 2.3.16"), "nix (Nix) 2.3.16", "host web1");
    expect(refused?.code).toBe("nix-too-old");
    expect(refused?.message).toBe(
      "host web1's Nix is 2.3.16 ('nix (Nix) 2.3.16'), older than 2.8.0, the oldest Nix nixship is tested with",
    );
    expect(refused?.hint).toBe("upgrade Nix to 2.8.0 or later (tested up to 2.26.3)");
  });

  it("refuses a version it cannot read", () => {
    expect(unsupportedNix(undefined, "garbage", "the local machine")?.code).toBe(
      "nix-version-unknown",
    );
  });

  it("accepts 2.8 and everything after", () => {
    for (const line of ["nix (Nix) 2.8.0", "nix (Nix) 2.26.3", "nix (Lix, like Nix) 2.91.1"]) {
      expect(unsupportedNix(version(line), line, "x")).toBeUndefined();
    }
  });

  it("says which are newer than the newest tested", () => {
    expect(newerThanTested(version("nix (Nix) 2.26.3"))).toBe(false);
    expect(newerThanTested(version("nix (Nix) 2.8.0"))).toBe(false);
    expect(newerThanTested(version("nix (Nix) 2.28.1"))).toBe(true);
  });
});

describe("derivationOutputs", () => {
  it("asks Nix 2.14 and later for DRV^* (a bare .drv means the file itself there)", () => {
    expect(derivationOutputs(DRV, version("nix (Nix) 2.26.3"))).toBe(`${DRV}^*`);
    expect(derivationOutputs(DRV, version("nix (Nix) 2.14.0"))).toBe(`${DRV}^*`);
    expect(derivationOutputs(DRV, version("nix (Lix, like Nix) 2.91.1"))).toBe(`${DRV}^*`);
  });

  it("gives older Nix the bare path, whose outputs it builds (it knows no ^)", () => {
    expect(derivationOutputs(DRV, version("nix (Nix) 2.8.0"))).toBe(DRV);
    expect(derivationOutputs(DRV, version("nix (Nix) 2.13.6"))).toBe(DRV);
  });
});
