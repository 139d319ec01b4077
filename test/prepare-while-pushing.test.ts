// prepare's `whilePushing`: the deploy asks its hosts what they run while the push uploads, so
// prepare tells it the systems built and the closure the push read as soon as it has read it.
// Real Nix (the fixture closure) and a real push into a directory cache: the closure is told
// once, before the push ends and before any of its paths is in the cache, and it holds the
// whole closure the survey reads.
import { readdirSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureCacheInfo } from "../src/cache/cache-info.js";
import type { BuildResult } from "../src/deploy/build.js";
import type { DeployEvent } from "../src/deploy/events.js";
import { prepare } from "../src/deploy/prepare.js";
import { parseFleetValue } from "../src/fleet/fleet-file.js";
import type { PathInfo } from "../src/nix/closure.js";
import { formatPublicKey, generateSecretKey, publicKeyOf } from "../src/nix/keys.js";
import type { StorePath } from "../src/nix/store-path.js";
import { openStore } from "../src/store/url.js";
import { buildFixtureClosure, closureMeta } from "./support/fixture-closure.js";

let work: string;
let system: StorePath;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-prepare-"));
  system = (await buildFixtureClosure()) as StorePath;
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A directory cache under `name` and a fleet of `hosts` (each runs the fixture system) using it. */
async function fleetWithCache(name: string, hosts: readonly string[]) {
  const cacheDir = join(work, name);
  const store = await openStore(`file://${cacheDir}`);
  await ensureCacheInfo(store);
  await store.close();
  const key = generateSecretKey("prepare-test-1");
  const fleet = parseFleetValue(
    {
      cache: { url: `file://${cacheDir}`, publicKeys: [formatPublicKey(publicKeyOf(key))] },
      hosts: Object.fromEntries(hosts.map((h, i) => [h, { address: `10.0.0.${i + 1}`, system }])),
    },
    "test fleet",
  );
  return { cacheDir, key, fleet };
}

describe("prepare, while it pushes", () => {
  it("tells the systems and the closure the push read before any path is uploaded", async () => {
    const { cacheDir, key, fleet } = await fleetWithCache("cache", ["a", "b"]);
    const events: string[] = [];
    const told: {
      built: BuildResult;
      closure: ReadonlyMap<StorePath, PathInfo>;
      narinfos: number;
    }[] = [];
    const ready = await prepare(
      {
        fleet,
        fleetDir: work,
        key,
        emit: (event: DeployEvent) => events.push(event.type),
        buildHost: undefined,
        serveCache: undefined,
      },
      fleet.hosts,
      true,
      (built, closure) => {
        events.push("told");
        // What is in the cache at this moment: nothing of the closure yet.
        const narinfos = readdirSync(cacheDir).filter((n) => n.endsWith(".narinfo")).length;
        told.push({ built, closure: new Map(closure), narinfos });
      },
    );
    await ready.close();
    expect(told).toHaveLength(1);
    const [early] = told;
    expect(early?.narinfos).toBe(0);
    expect(events.indexOf("told")).toBeGreaterThan(events.indexOf("push-start"));
    expect(events.indexOf("told")).toBeLessThan(events.indexOf("push-done"));
    expect([...(early?.built.byHost.values() ?? [])]).toEqual([system, system]);
    const closure = await closureMeta(system);
    expect(new Set(early?.closure.keys())).toEqual(new Set(closure.keys()));
    expect(early?.closure.get(system)?.narSize).toBe(closure.get(system)?.narSize);
    // The push went on to the end: every path of the closure is in the cache now.
    const names = await readdir(cacheDir);
    expect(names.filter((n) => n.endsWith(".narinfo"))).toHaveLength(closure.size);
    expect([...ready.pushed.keys()].sort()).toEqual([...closure.keys()].sort());
  });

  it("an interrupt as the push starts its uploads starts no new path, and ends the push", async () => {
    const { cacheDir, key, fleet } = await fleetWithCache("cache-interrupted", ["a"]);
    const interrupt = new AbortController();
    const prepared = prepare(
      {
        fleet,
        fleetDir: work,
        key,
        emit: () => {},
        buildHost: undefined,
        serveCache: undefined,
        signal: interrupt.signal,
      },
      fleet.hosts,
      true,
      // Ctrl-C once the closure is read, before any path is uploaded.
      () => interrupt.abort(new Error("interrupted")),
    );
    await expect(prepared).rejects.toThrow(/push: .*interrupted.*; what was pushed before is kept/);
    const closure = await closureMeta(system);
    // The paths under way when it came (one a core at most) finished; no other started.
    const narinfos = (await readdir(cacheDir)).filter((n) => n.endsWith(".narinfo"));
    expect(narinfos.length).toBeLessThan(closure.size);
  });
});
