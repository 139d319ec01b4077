import { describe, expect, it } from "vitest";
import type { SsmHost } from "../fleet/fleet.js";
import type { StorePath } from "../nix/store-path.js";
import type { DeployRequest, WaveHost } from "./delivery.js";
import { groupWave } from "./ssm-groups.js";

const store = (name: string) => `/nix/store/${"0".repeat(31)}${name.length}-${name}` as StorePath;

const request = (extra: Partial<DeployRequest> = {}): DeployRequest => ({
  path: store("nixos-system-web"),
  action: "switch",
  substituters: [],
  trustedKeys: ["cache:AAAA"],
  commandChecks: [],
  httpChecks: [],
  confirmTimeout: 30,
  activationTimeout: 300,
  ...extra,
});

const host = (name: string, instanceId: string): SsmHost => ({
  name,
  tags: [],
  address: undefined,
  system: { kind: "store-path", path: store("nixos-system-web") },
  delivery: "ssm",
  instanceId,
  targets: undefined,
});

const wave = (...requests: DeployRequest[]): WaveHost[] =>
  requests.map((r, i) => ({ host: host(`web${i + 1}`, `i-${i + 1}`), request: r }));

const members = (hosts: WaveHost[]) =>
  groupWave(hosts).map((g) => g.members.map((m) => m.host.name));

describe("groupWave", () => {
  it("sends hosts with one request in one command", () => {
    expect(members(wave(request(), request(), request()))).toEqual([["web1", "web2", "web3"]]);
  });

  it("keeps apart hosts that must run different systems now (a rollback's expect)", () => {
    const a = request({ expect: store("nixos-system-web-a") });
    const b = request({ expect: store("nixos-system-web-b") });
    const groups = groupWave(wave(a, b, a));
    expect(groups.map((g) => g.members.map((m) => m.host.name))).toEqual([
      ["web1", "web3"],
      ["web2"],
    ]);
    expect(groups.map((g) => g.request.expect)).toEqual([a.expect, b.expect]);
  });

  it("keeps apart hosts that apply deltas with different tools (each its own system's zstd)", () => {
    const a = request({ deltaTool: store("zstd-1.5.5") });
    const b = request({ deltaTool: store("zstd-1.5.6") });
    expect(members(wave(a, b, request()))).toEqual([["web1"], ["web2"], ["web3"]]);
  });
});
