// `--system HOST=PATH`: each a host of the fleet, once, and a store path; what is wrong named.
import { describe, expect, it } from "vitest";
import { parseFleetValue } from "../fleet/fleet-file.js";
import { parseSystemFlags, withGivenSystems } from "./given-systems.js";

const V1 = "/nix/store/11111111111111111111111111111111-web-v1";
const V2 = "/nix/store/22222222222222222222222222222222-web-v2";
const fleet = parseFleetValue(
  {
    hosts: {
      web1: { address: "10.0.0.1", system: ".#web" },
      web2: { address: "10.0.0.2", system: V1 },
    },
  },
  "given-systems.test.ts",
);

describe("--system HOST=PATH", () => {
  it("gives each host named its store path, and leaves the others as the fleet names them", () => {
    const given = parseSystemFlags([`web1=${V2}`], fleet, "deploy");
    expect([...given]).toEqual([["web1", V2]]);
    const hosts = withGivenSystems(fleet, given).hosts;
    expect(hosts.map((h) => h.system)).toEqual([
      { kind: "store-path", path: V2 },
      fleet.hosts[1]?.system,
    ]);
  });

  it("refuses what is not HOST=PATH, a host the fleet lacks, a host twice, a path outside the store", () => {
    expect(() => parseSystemFlags(["web1"], fleet, "deploy")).toThrow(
      "deploy: --system 'web1' is not HOST=/nix/store/…",
    );
    expect(() => parseSystemFlags([`web3=${V1}`], fleet, "deploy")).toThrow(
      "deploy: --system names 'web3', which is no host of the fleet",
    );
    expect(() => parseSystemFlags([`web1=${V1}`, `web1=${V2}`], fleet, "deploy")).toThrow(
      "deploy: --system gives host 'web1' twice",
    );
    expect(() => parseSystemFlags(["web1=/tmp/x"], fleet, "plan")).toThrow(
      "plan: --system web1 '/tmp/x' is not under /nix/store/",
    );
  });
});
