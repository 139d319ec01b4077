import { describe, expect, it } from "vitest";
import type { StorePath } from "../nix/store-path.js";
import {
  type CacheRead,
  type ClosureNode,
  closureOf,
  currentsToRead,
  type DiffHost,
  diffHosts,
  type HostRead,
  planDiffs,
  systemsToAsk,
} from "./plan-diffs.js";

const sp = (hashChar: string, name: string) =>
  `/nix/store/${hashChar.repeat(32)}-${name}` as StorePath;

const glibc = sp("g", "glibc-2.39");
const hello1 = sp("h", "hello-2.12");
const hello2 = sp("i", "hello-2.12.1");
const etc = sp("f", "etc");
const v1 = sp("1", "nixos-system-web");
const v2 = sp("2", "nixos-system-web");
const v0 = sp("0", "nixos-system-web");

const node = (path: StorePath, narSize: number, references: StorePath[] = []): ClosureNode => ({
  path,
  narSize,
  references,
});
const nodes = (...list: ClosureNode[]) => new Map(list.map((n) => [n.path, n]));

/** The deployer built v2; it does not have v1 or v0. */
const LOCAL = nodes(
  node(glibc, 1000, [glibc]),
  node(hello2, 60, [glibc]),
  node(etc, 5),
  node(v2, 10, [hello2, glibc, etc]),
);
/** What the cache adds: v1 and its own hello (glibc and etc the local store describes). */
const CACHED = nodes(node(hello1, 52, [glibc]), node(v1, 10, [hello1, glibc, etc]));
const READ: CacheRead = {
  kind: "read",
  nodes: CACHED,
  missing: new Set(),
  narinfosRead: 2,
};

const host = (name: string, current: StorePath | undefined, over: Partial<DiffHost> = {}) =>
  ({ host: name, action: "activate", current, desired: v2, ...over }) as DiffHost;

const HELLO_DIFF = {
  changed: [{ name: "hello", before: ["2.12"], after: ["2.12.1"], sizeDelta: 8, kind: "upgrade" }],
  added: [],
  removed: [],
  rebuilt: 1,
  sizeBefore: 1067,
  sizeAfter: 1075,
};

describe("closureOf", () => {
  it("follows the references, each path once", () => {
    const found = closureOf(v2, (p) => LOCAL.get(p));
    expect(found.kind).toBe("complete");
    const paths = found.kind === "complete" ? found.paths.map((p) => p.path).sort() : [];
    expect(paths).toEqual([glibc, hello2, etc, v2].sort());
  });

  it("names the first path it has no metadata for", () => {
    expect(closureOf(v1, (p) => LOCAL.get(p))).toEqual({ kind: "incomplete", lacking: v1 });
    const withTop = nodes(...LOCAL.values(), node(v1, 10, [hello1, glibc, etc]));
    expect(closureOf(v1, (p) => withTop.get(p))).toEqual({ kind: "incomplete", lacking: hello1 });
  });
});

describe("diffHosts and currentsToRead", () => {
  it("diffs hosts that change system; not unknown, equal or unreachable ones", () => {
    const hosts = [
      host("a", v1),
      host("b", undefined),
      host("c", v2, { action: "skip" }),
      host("d", v1, { action: "unreachable" }),
      host("e", v0),
    ];
    expect(diffHosts(hosts).map((h) => h.host)).toEqual(["a", "e"]);
  });

  it("asks the cache only for running systems the local store cannot describe, each once", () => {
    const local = nodes(...LOCAL.values(), node(v0, 10, [glibc, etc]));
    const hosts = [host("a", v1), host("b", v1), host("c", v0), host("d", v2)];
    expect(currentsToRead(hosts, local)).toEqual([v1]);
  });
});

describe("planDiffs", () => {
  it("diffs a running closure read from the cache against the desired one", () => {
    const diffs = planDiffs([host("web1", v1)], LOCAL, READ);
    expect(diffs).toEqual({
      groups: [{ hosts: ["web1"], currentFrom: "cache", diff: HELLO_DIFF }],
      unavailable: [],
      narinfosRead: 2,
    });
  });

  it("takes the local store's closure where it is whole there", () => {
    const local = nodes(...LOCAL.values(), ...CACHED.values());
    const diffs = planDiffs([host("web1", v1)], local, { kind: "not-read", why: "not-needed" });
    expect(diffs.groups).toEqual([
      { hosts: ["web1"], currentFrom: "local-store", diff: HELLO_DIFF },
    ]);
    expect(diffs.narinfosRead).toBe(0);
  });

  it("groups hosts with the same change, in the plan's order, each naming its hosts", () => {
    const local = nodes(...LOCAL.values(), node(v0, 10, [glibc, etc]));
    const hosts = [
      host("w1", v1),
      host("w2", v0),
      host("w3", v1),
      host("w4", undefined),
      host("w5", v1),
    ];
    const diffs = planDiffs(hosts, local, READ);
    expect(diffs.groups.map((g) => [g.hosts, g.currentFrom])).toEqual([
      [["w1", "w3", "w5"], "cache"],
      [["w2"], "local-store"],
    ]);
    expect(diffs.groups[1]?.diff.added).toEqual([
      { name: "hello", versions: ["2.12.1"], size: 60 },
    ]);
  });

  it("groups hosts of different systems with equal changes, each host once, in plan order", () => {
    // v1b: v1 built again (another path), with the same package names and sizes.
    const v1b = sp("3", "nixos-system-web");
    const cache: CacheRead = {
      ...READ,
      nodes: nodes(...CACHED.values(), node(v1b, 10, [hello1, glibc, etc])),
    };
    const hosts = Array.from({ length: 1000 }, (_, i) => host(`w${i}`, i % 3 === 1 ? v1 : v1b));
    const diffs = planDiffs(hosts, LOCAL, cache);
    expect(diffs.groups).toHaveLength(1);
    expect(diffs.groups[0]?.hosts).toEqual(hosts.map((h) => h.host));
    expect(diffs.groups[0]?.diff).toEqual(HELLO_DIFF);
  });

  it("says why a host gets no diff", () => {
    const unavailable = (cache: CacheRead) =>
      planDiffs([host("web1", v1)], LOCAL, cache).unavailable;
    expect(unavailable({ kind: "not-read", why: "no-cache" })).toEqual([
      {
        host: "web1",
        reason: `the local store lacks its system ${v1}, and the fleet has no cache to read it from; the host was not asked`,
      },
    ]);
    expect(unavailable({ kind: "failed", reason: "AccessDenied: no" })[0]?.reason).toBe(
      `the local store lacks its system ${v1}, and reading the fleet's cache failed: AccessDenied: no; the host was not asked`,
    );
    const noTop: CacheRead = { ...READ, nodes: new Map(), missing: new Set([v1]) };
    expect(unavailable(noTop)[0]?.reason).toBe(
      `neither the fleet's cache nor the local store has its system ${v1}; the host was not asked`,
    );
    const noHello: CacheRead = {
      ...READ,
      nodes: nodes(node(v1, 10, [hello1, glibc, etc])),
      missing: new Set([hello1]),
    };
    expect(unavailable(noHello)[0]?.reason).toBe(
      `neither the fleet's cache nor the local store has ${hello1}, which its system ${v1} references; the host was not asked`,
    );
    const stopped: CacheRead = {
      ...READ,
      nodes: nodes(node(v1, 10, [hello1, glibc, etc])),
      stoppedAt: 1,
    };
    expect(unavailable(stopped)[0]?.reason).toBe(
      `reading the closure of its system ${v1} from the fleet's cache stopped at the bound of 1 narinfos; the host was not asked`,
    );
  });

  it("takes the closure a host sent where neither the local store nor the cache has it", () => {
    const noTop: CacheRead = { ...READ, nodes: new Map(), missing: new Set([v1]) };
    const sent: HostRead = {
      kind: "read",
      nodes: [
        node(hello1, 52, [glibc]),
        node(v1, 10, [hello1, glibc, etc]),
        node(glibc, 1000, [glibc]),
        node(etc, 5),
      ],
    };
    const hosts = [host("web1", v1), host("web2", v1)];
    const diffs = planDiffs(hosts, LOCAL, noTop, new Map([[v1, sent]]));
    expect(diffs.groups).toEqual([
      { hosts: ["web1", "web2"], currentFrom: "host", diff: HELLO_DIFF },
    ]);
    expect(diffs.unavailable).toEqual([]);
    // One host asked per system.
    expect(systemsToAsk(hosts, planDiffs(hosts, LOCAL, noTop))).toEqual([
      { system: v1, host: "web1" },
    ]);
    const failed = planDiffs(
      hosts,
      LOCAL,
      noTop,
      new Map([[v1, { kind: "failed", reason: "exit 3" } as HostRead]]),
    );
    expect(failed.unavailable[0]?.reason).toBe(
      `neither the fleet's cache nor the local store has its system ${v1}, and the host could not say: exit 3`,
    );
    const partial: HostRead = { kind: "read", nodes: [node(v1, 10, [hello1, glibc, etc])] };
    expect(planDiffs(hosts, LOCAL, noTop, new Map([[v1, partial]])).unavailable[0]?.reason).toBe(
      `neither the fleet's cache nor the local store has ${hello1}, which its system ${v1} references, and the host's own answer lacks ${hello1}`,
    );
  });

  it("diffs nothing when no host changes system", () => {
    const diffs = planDiffs([host("web1", v2, { action: "skip" })], LOCAL, READ);
    expect(diffs.groups).toEqual([]);
    expect(diffs.unavailable).toEqual([]);
  });
});
