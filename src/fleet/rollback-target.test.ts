// `rollback --to`: its three forms, and what ssh and ssm hosts accept.
import { describe, expect, it } from "vitest";
import { formatRollbackTarget, generationOnly, parseRollbackTarget } from "./rollback-target.js";

const PATH = `/nix/store/${"a".repeat(32)}-nixos-system-web1`;

describe("parseRollbackTarget", () => {
  it("reads a generation (bare or generation:N), release:N and a store path", () => {
    expect(parseRollbackTarget("12")).toEqual({ kind: "generation", generation: 12 });
    expect(parseRollbackTarget("generation:3")).toEqual({ kind: "generation", generation: 3 });
    expect(parseRollbackTarget("release:7")).toEqual({ kind: "release", seq: 7 });
    expect(parseRollbackTarget(PATH)).toEqual({ kind: "path", path: PATH });
  });

  it("prints each form back as it is written", () => {
    for (const text of ["generation:3", "release:7", PATH]) {
      expect(formatRollbackTarget(parseRollbackTarget(text))).toBe(text);
    }
  });

  it("refuses anything else as bad usage, naming the forms", () => {
    for (const text of [
      "0",
      "-1",
      "release:",
      "release:0",
      "gen:3",
      "#7",
      "x",
      "/nix/store/nope",
    ]) {
      expect(() => parseRollbackTarget(text), text).toThrow(
        expect.objectContaining({ exitCode: 2 }),
      );
    }
    expect(() => parseRollbackTarget("#7")).toThrow(/generation:N, release:N or \/nix\/store/);
  });
});

describe("generationOnly", () => {
  it("gives ssh and ssm hosts their generation, and refuses the agent-only forms", () => {
    expect(generationOnly(undefined, "ssh")).toBeUndefined();
    expect(generationOnly({ kind: "generation", generation: 4 }, "ssh")).toBe(4);
    expect(() => generationOnly({ kind: "release", seq: 2 }, "ssm")).toThrow(
      /--to release:2 applies to agent hosts; ssm hosts go back to a generation/,
    );
  });
});
