// The plan's diffs read from a directory cache: only the paths the local store cannot describe
// are read, each once; a missing path, the bound and a broken cache make diffs unavailable,
// never the plan.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { narInfoKey, narKey } from "../cache/layout.js";
import type { ClosureNode } from "../fleet/plan-diffs.js";
import { Sha256 } from "../nix/hash.js";
import { formatNarInfo } from "../nix/narinfo.js";
import { makeStorePath, type StorePath } from "../nix/store-path.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { type CacheReadReport, closureDiffs } from "./closure-diffs.js";

let dir: string;
let store: ObjectStore;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-closure-diffs-"));
  store = await openStore(`file://${dir}?fsync=false`);
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

const path = (name: string, seed = name) => makeStorePath("output:out", Sha256.of(seed), name);
const node = (p: StorePath, narSize: number, references: StorePath[] = []): ClosureNode => ({
  path: p,
  narSize,
  references,
});

async function putNarInfo(n: ClosureNode): Promise<void> {
  const hash = Sha256.of(n.path);
  const text = formatNarInfo({
    storePath: n.path,
    url: narKey(hash, "none"),
    compression: "none",
    fileHash: hash,
    fileSize: n.narSize,
    narHash: hash,
    narSize: n.narSize,
    references: [...n.references].sort(),
    deriver: undefined,
    sigs: [],
    ca: undefined,
  });
  await store.put(narInfoKey(n.path), Buffer.from(text));
}

const glibc = path("glibc-2.39");
const share = path("example-web-share");
const hello1 = path("hello-2.12");
const hello2 = path("hello-2.12.1");
const v1 = path("example-web-system-hello", "v1");
const v2 = path("example-web-system-hello", "v2");

/** The deployer built v2: the desired closure, which shares glibc and share with v1. */
const LOCAL = new Map(
  [
    node(glibc, 1000, [glibc]),
    node(share, 300, [glibc]),
    node(hello2, 60, [glibc]),
    node(v2, 10, [hello2, share, glibc]),
  ].map((n) => [n.path, n]),
);
const V1 = [node(hello1, 52, [glibc]), node(v1, 10, [hello1, share, glibc])];

const plan = (...currents: (StorePath | undefined)[]) => ({
  hosts: currents.map((current, i) => ({
    host: `web${i + 1}`,
    action: "activate" as const,
    current,
    generation: undefined,
    desired: v2,
    transfer: { paths: 0, bytes: 0 },
    transferBasis: "current-system" as const,
    error: undefined,
  })),
});

/** The store, counting the narinfos got, and the URLs opened. */
function watched() {
  const got: string[] = [];
  const opened: string[] = [];
  const counting: ObjectStore = Object.assign(Object.create(store) as ObjectStore, {
    get: (key: string, ...rest: []) => {
      got.push(key);
      return store.get(key, ...rest);
    },
    close: async () => {},
  });
  return {
    got,
    opened,
    open: async (url: string) => {
      opened.push(url);
      return counting;
    },
  };
}

describe("closureDiffs", () => {
  it("reads from the cache only what the local store cannot describe, and diffs", async () => {
    for (const n of [...V1, ...LOCAL.values()]) await putNarInfo(n);
    const w = watched();
    const reads: CacheReadReport[] = [];
    const diffs = await closureDiffs(plan(v1, v1, undefined, v2), LOCAL, {
      cacheUrl: "file:///cache",
      open: w.open,
      onRead: (r) => reads.push(r),
    });
    expect(w.opened).toEqual(["file:///cache"]);
    // v1 and its own hello: glibc and share come from the local store.
    expect(w.got.sort()).toEqual([narInfoKey(v1), narInfoKey(hello1)].sort());
    expect(reads).toEqual([
      { narinfos: 2, seconds: expect.any(Number), limit: 200_000, stopped: false },
    ]);
    expect(diffs).toEqual({
      groups: [
        {
          hosts: ["web1", "web2"],
          currentFrom: "cache",
          diff: {
            changed: [
              {
                name: "hello",
                before: ["2.12"],
                after: ["2.12.1"],
                sizeDelta: 8,
                kind: "upgrade",
              },
            ],
            added: [],
            removed: [],
            rebuilt: 1,
            sizeBefore: 1362,
            sizeAfter: 1370,
          },
        },
      ],
      unavailable: [],
      narinfosRead: 2,
    });
  });

  it("opens no cache when the local store describes every running system", async () => {
    const w = watched();
    const local = new Map([...LOCAL, ...V1.map((n) => [n.path, n] as const)]);
    const diffs = await closureDiffs(plan(v1), local, { cacheUrl: "file:///cache", open: w.open });
    expect(w.opened).toEqual([]);
    expect(diffs.groups.map((g) => g.currentFrom)).toEqual(["local-store"]);
  });

  it("says which path the cache lacks", async () => {
    await putNarInfo(V1[1] as ClosureNode);
    const w = watched();
    const diffs = await closureDiffs(plan(v1), LOCAL, { cacheUrl: "file:///c", open: w.open });
    expect(diffs.groups).toEqual([]);
    expect(diffs.unavailable).toEqual([
      {
        host: "web1",
        reason: `neither the fleet's cache nor the local store has ${hello1}, which its system ${v1} references; the host was not asked`,
      },
    ]);
  });

  it("asks a host that runs the system where neither the local store nor the cache has it", async () => {
    await putNarInfo(V1[1] as ClosureNode);
    const w = watched();
    const asked: string[] = [];
    const diffs = await closureDiffs(plan(v1), LOCAL, {
      cacheUrl: "file:///c",
      open: w.open,
      askHost: async (host, system) => {
        asked.push(`${host} ${system}`);
        return { kind: "read", nodes: V1 };
      },
    });
    expect(asked).toEqual([`web1 ${v1}`]);
    expect(diffs.unavailable).toEqual([]);
    expect(diffs.groups.map((g) => g.currentFrom)).toEqual(["host"]);
    const refused = await closureDiffs(plan(v1), LOCAL, {
      cacheUrl: "file:///c",
      open: w.open,
      askHost: async () => {
        throw new Error("ssh: connection refused");
      },
    });
    expect(refused.unavailable[0]?.reason).toMatch(
      /and the host could not say: ssh: connection refused$/,
    );
  });

  it("stops at the bound, and says so", async () => {
    for (const n of V1) await putNarInfo(n);
    const w = watched();
    const reads: CacheReadReport[] = [];
    const diffs = await closureDiffs(plan(v1), LOCAL, {
      cacheUrl: "file:///c",
      open: w.open,
      maxReads: 1,
      onRead: (r) => reads.push(r),
    });
    expect(w.got).toEqual([narInfoKey(v1)]);
    expect(reads[0]).toMatchObject({ narinfos: 1, limit: 1, stopped: true });
    expect(diffs.unavailable[0]?.reason).toBe(
      `reading the closure of its system ${v1} from the fleet's cache stopped at the bound of 1 narinfos; the host was not asked`,
    );
  });

  it("makes diffs unavailable, not the plan, when the cache cannot be read", async () => {
    await store.put(narInfoKey(v1), Buffer.from("StorePath: nonsense\n"));
    const w = watched();
    const diffs = await closureDiffs(plan(v1), LOCAL, { cacheUrl: "file:///c", open: w.open });
    expect(diffs.unavailable[0]?.reason).toMatch(
      /^the local store lacks its system \S+, and reading the fleet's cache failed: /,
    );
  });

  it("without a cache, names that", async () => {
    const diffs = await closureDiffs(plan(v1), LOCAL, { cacheUrl: undefined });
    expect(diffs.unavailable[0]?.reason).toBe(
      `the local store lacks its system ${v1}, and the fleet has no cache to read it from; the host was not asked`,
    );
  });

  it("ends on an interrupt", async () => {
    for (const n of V1) await putNarInfo(n);
    const w = watched();
    const abort = new AbortController();
    abort.abort(new Error("interrupted (SIGINT)"));
    await expect(
      closureDiffs(plan(v1), LOCAL, { cacheUrl: "file:///c", open: w.open, signal: abort.signal }),
    ).rejects.toThrow("interrupted (SIGINT)");
  });
});
