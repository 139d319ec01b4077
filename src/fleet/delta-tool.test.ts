import { describe, expect, it } from "vitest";
import type { StorePath } from "../nix/store-path.js";
import { closureZstd, deltaSwitch, namedDeltaTool } from "./delta-tool.js";

const path = (hash: string, name: string) => `/nix/store/${hash.repeat(32)}-${name}` as StorePath;
const TOOL = path("w", "zstd-1.5.6");

describe("closureZstd", () => {
  it("takes zstd's bin output first, then the newest version", () => {
    const lib = path("a", "zstd-1.5.6");
    const bin = path("b", "zstd-1.5.6-bin");
    const older = path("c", "zstd-1.5.2-bin");
    expect(closureZstd([lib, older, bin, path("d", "glibc-2.39")])).toBe(bin);
    expect(closureZstd([older, lib])).toBe(older);
    expect(closureZstd([lib])).toBe(lib);
  });

  it("takes none older than 1.4.5 (no --patch-from), nor another package, nor none at all", () => {
    expect(closureZstd([path("a", "zstd-1.4.4-bin"), path("b", "zstd-1.3.8")])).toBeUndefined();
    expect(closureZstd([path("a", "zstd-1.4.5-bin")])).toBe(path("a", "zstd-1.4.5-bin"));
    expect(
      closureZstd([path("a", "zstd-dev"), path("b", "pzstd-1.5.6"), path("c", "zstd-1.5.6-dev")]),
    ).toBeUndefined();
    expect(closureZstd([])).toBeUndefined();
  });
});

describe("deltaSwitch", () => {
  const on = { policy: true, delivery: "ssh", fromCache: true } as const;

  it("is on by default, with no tool named: each host's own zstd", () => {
    expect(deltaSwitch({ ...on, deltas: undefined })).toEqual({ kind: "on", tool: undefined });
    expect(deltaSwitch({ ...on, deltas: { on: true, tool: TOOL } })).toEqual({
      kind: "on",
      tool: TOOL,
    });
  });

  it("is off where the fleet file, the policy or --no-delta turns it off", () => {
    expect(deltaSwitch({ ...on, deltas: { on: false } })).toEqual({ kind: "off" });
    expect(deltaSwitch({ ...on, policy: false, deltas: { on: true, tool: TOOL } })).toEqual({
      kind: "off",
    });
  });

  it("gives a reason where deltas are on but cannot be had", () => {
    expect(deltaSwitch({ ...on, fromCache: false, deltas: undefined })).toEqual({
      kind: "none",
      reason: "copied",
    });
    // Agent hosts wait for the fleet file to say so: older agents refuse a release with a tool.
    expect(deltaSwitch({ ...on, delivery: "agent", deltas: undefined })).toEqual({
      kind: "none",
      reason: "agent",
    });
    expect(
      deltaSwitch({ ...on, delivery: "agent", deltas: { on: true, tool: undefined } }),
    ).toEqual({ kind: "on", tool: undefined });
  });

  it("names the fleet's tool only when deltas are on", () => {
    expect(namedDeltaTool({ on: true, tool: TOOL })).toBe(TOOL);
    expect(namedDeltaTool({ on: true, tool: undefined })).toBeUndefined();
    expect(namedDeltaTool({ on: false })).toBeUndefined();
    expect(namedDeltaTool(undefined)).toBeUndefined();
  });
});
