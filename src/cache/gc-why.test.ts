import { describe, expect, it } from "vitest";
import type { StorePath } from "../nix/store-path.js";
import { deltaPathOf } from "./delta-path.js";
import type { GcRoots, RootOrigins, RootSource } from "./gc-plan.js";
import { type DoomedNarInfo, keptRoots, type LetGo, whyGone } from "./gc-why.js";

const path = (c: string, name: string) => `/nix/store/${c.repeat(32)}-${name}` as StorePath;
const hash = (p: string) => p.slice(11, 43);

// sys4 (an old release's system) → pkg4 → lib; loose (pushed by hand) → lib2 → lib.
const SYS4 = path("a", "system-4");
const PKG4 = path("b", "pkg4-1.4");
const LIB = path("c", "lib-1.0");
const LOOSE = path("d", "loose-1");
const LIB2 = path("f", "lib2-2.0");
const OLD = path("g", "system-0");
const at = (iso: string) => Date.parse(iso);

function doomed(entries: [StorePath, StorePath[], string][]): Map<string, DoomedNarInfo> {
  return new Map(
    entries.map(([p, refs, time]) => [
      hash(p),
      { storePath: p, references: refs.map(hash), modified: at(time) },
    ]),
  );
}

const RELEASE: LetGo = {
  rule: "keep-releases",
  path: SYS4,
  host: "db1",
  channel: "db",
  seq: 1,
  keep: 2,
};

describe("whyGone", () => {
  it("puts a let-go system's closure with it, and what no root reaches with the path that holds it", () => {
    const why = whyGone(
      doomed([
        [SYS4, [PKG4, SYS4], "2025-01-01T00:00:00.000Z"],
        [PKG4, [LIB], "2025-01-01T00:00:00.000Z"],
        [LIB, [], "2025-01-01T00:00:00.000Z"],
        [LOOSE, [LIB2, LIB], "2025-02-01T00:00:00.000Z"],
        [LIB2, [], "2025-01-15T00:00:00.000Z"],
      ]),
      [RELEASE],
    );
    expect(why.get(hash(SYS4))).toEqual({ kind: "let-go", letGo: RELEASE });
    expect(why.get(hash(PKG4))).toEqual({ kind: "let-go", letGo: RELEASE, via: SYS4 });
    // Shared with the unreferenced path, it goes with the system (walked first).
    expect(why.get(hash(LIB))).toEqual({ kind: "let-go", letGo: RELEASE, via: SYS4 });
    expect(why.get(hash(LOOSE))).toEqual({
      kind: "unreferenced",
      pushed: "2025-02-01T00:00:00.000Z",
    });
    expect(why.get(hash(LIB2))).toEqual({
      kind: "unreferenced",
      pushed: "2025-02-01T00:00:00.000Z",
      via: LOOSE,
    });
    expect(why.size).toBe(5);
  });

  it("takes the first rule that names a system, ignores systems that stay, and names a delta's target", () => {
    const status: LetGo = {
      rule: "status",
      path: OLD,
      host: "web1",
      rollout: "0123456789ab",
      at: "2025-01-02T00:00:00.000Z",
    };
    const delta = deltaPathOf(OLD, path("h", "system-base"));
    const why = whyGone(
      doomed([
        [OLD, [], "2025-01-01T00:00:00.000Z"],
        [delta, [], "2025-01-03T00:00:00.000Z"],
      ]),
      [status, { ...RELEASE, path: OLD }, RELEASE],
    );
    expect(why.get(hash(OLD))).toEqual({ kind: "let-go", letGo: status });
    expect(why.get(hash(delta))).toEqual({ kind: "delta", target: OLD });
  });
});

describe("keptRoots", () => {
  it("lists the store-path roots the cache holds, with their sources and the first few who named them", () => {
    const roots: GcRoots = new Map<string, Set<RootSource>>([
      [SYS4, new Set(["release", "status"])],
      [OLD, new Set(["status"])],
      [hash(LIB), new Set(["grace"])],
      [LOOSE, new Set(["pin"])],
    ]);
    const hosts = Array.from({ length: 12 }, (_, i) => `host web${String(i).padStart(2, "0")}`);
    const origins: RootOrigins = new Map([
      [SYS4, new Set(hosts)],
      [LOOSE, new Set(["pin keep"])],
    ]);
    expect(keptRoots(roots, origins, new Set([OLD]))).toEqual([
      {
        path: SYS4,
        sources: ["release", "status"],
        by: hosts.slice(0, 10),
        byCount: 12,
      },
      { path: LOOSE, sources: ["pin"], by: ["pin keep"], byCount: 1 },
    ]);
  });
});
