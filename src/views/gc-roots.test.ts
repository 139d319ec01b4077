import { describe, expect, it } from "vitest";
import type { Release } from "../release/release.js";
import { statusRecord } from "../status/status.js";
import { recordPaths, releasePaths } from "./gc-roots.js";

const p = (n: string) => `/nix/store/${n.repeat(32)}-${n}` as const;

describe("gc roots", () => {
  it("from a release: every host's system and the age its secrets need", () => {
    const release = {
      hosts: {
        web1: { path: p("a") },
        web2: { path: p("b"), secrets: { bundle: "x", manifest: "y", age: p("c") } },
      },
    } as unknown as Release;
    expect(releasePaths(release)).toEqual([p("a"), p("b"), p("c")]);
  });

  it("from a status record: current, desired, previous, the booted kernel's path and the agent", () => {
    const record = statusRecord({
      host: "web1",
      mode: "agent",
      release: { channel: "web", seq: 2 },
      desired: p("d"),
      system: {
        current: p("c"),
        generation: 3,
        reboot: {
          due: true,
          changed: ["kernel"],
          since: 1,
          booted: { kernel: `${p("k")}/bzImage`, initrd: null, "kernel-modules": null },
        },
      },
      previous: p("b"),
      agent: p("n"),
      what: { state: "success", phase: null, error: null, rolledBack: null },
      startedAt: "2026-11-25T00:00:00.000Z",
      updatedAt: "2026-11-25T00:00:00.000Z",
    });
    expect(recordPaths(record)).toEqual([
      [p("c"), "status"],
      [p("d"), "status"],
      [p("b"), "status"],
      [p("k"), "status"],
      [p("n"), "agent"],
    ]);
  });
});
