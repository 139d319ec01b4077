// Part of `npm run bench:delta`: 20 hosts that share bases, each delta computed once.
// The hosts' running and desired closures are given as data (no lab: the plan reads closures
// from the cache, the local store or the host alike); the real planDeltaPairs and
// publishPlanDeltas make and publish the pairs in a directory cache, and a zstd on PATH that
// logs each run counts the deltas the deployer computed.
import { randomBytes } from "node:crypto";
import { chmod, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { DeltaTally } from "../src/cache/delta-compute.js";
import { publishPlanDeltas } from "../src/deploy/deltas.js";
import type { DeployEvent } from "../src/deploy/events.js";
import { planDeltaPairs } from "../src/fleet/plan-deltas.js";
import type { DiffHost, ReadClosure } from "../src/fleet/plan-diffs.js";
import { generateSecretKey } from "../src/nix/keys.js";
import type { StorePath } from "../src/nix/store-path.js";
import { openStore } from "../src/store/url.js";
import { putSyntheticPath, syntheticPath } from "../support/synthetic-cache.js";

/** A system of the scenario: its packages, name → version. */
type System = Readonly<Record<string, string>>;

const PACKAGES = 12;
const names = Array.from({ length: PACKAGES }, (_, i) => `pkg${String.fromCharCode(97 + i)}`);
const all = (version: string): Record<string, string> =>
  Object.fromEntries(names.map((n) => [n, version]));

/**
 * Three running systems, two desired ones: 10 hosts run A, 6 run B (three packages a version
 * behind), 4 run C (A with two packages of its own); 16 go to D (every package 1.1, a security
 * update), the 4 on C to E (D with C's two packages, updated). Hosts on one system share every
 * pair; hosts on A and B share the pairs of the nine packages A and B have alike.
 */
export const SCENARIO = {
  running: {
    A: all("1.0"),
    B: { ...all("1.0"), pkga: "0.9", pkgb: "0.9", pkgc: "0.9" },
    C: { ...all("1.0"), extra: "2.0", tool: "3.0" },
  } as Record<string, System>,
  desired: {
    D: all("1.1"),
    E: { ...all("1.1"), extra: "2.1", tool: "3.1" },
  } as Record<string, System>,
  hosts: [
    ...Array.from({ length: 10 }, (): [string, string] => ["A", "D"]),
    ...Array.from({ length: 6 }, (): [string, string] => ["B", "D"]),
    ...Array.from({ length: 4 }, (): [string, string] => ["C", "E"]),
  ],
};

export interface SharedBaseResult {
  readonly hosts: number;
  /** (host, path) pairs: the paths each host lacks, summed over the hosts. */
  readonly needs: number;
  /** (host, pair) pairs: each host's pairs, summed (what computing per host would run). */
  readonly asks: number;
  /** The plan's pairs, each once. */
  readonly pairs: number;
  /** zstd --patch-from runs counted by the logging zstd, the first publish. */
  readonly zstdRuns: number;
  readonly tally: DeltaTally | undefined;
  /** The same plan published again (a second deploy): zstd runs, and the tally. */
  readonly againZstdRuns: number;
  readonly againTally: DeltaTally | undefined;
}

/** Publishes the scenario's deltas in a fresh cache under `work` and counts zstd's runs. */
export async function sharedBase(work: string): Promise<SharedBaseResult> {
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  const url = `file://${join(work, "cache")}?fsync=false`;
  const key = generateSecretKey("bench-delta-shared-1");
  const store = await openStore(url);
  // One path per (package, version): a 60 kB text whose version shows in it, so an update's
  // delta is a few bytes (worth publishing) and each version's NAR is its own.
  const text = randomBytes(45_000).toString("base64");
  const paths = new Map<string, StorePath>();
  const pathOf = (name: string, version: string): StorePath => {
    const id = `${name}-${version}`;
    let path = paths.get(id);
    if (path === undefined) {
      path = syntheticPath(`bench-delta-shared:${id}`, id);
      paths.set(id, path);
    }
    return path;
  };
  const closures = new Map<StorePath, StorePath[]>();
  const systems = { ...SCENARIO.running, ...SCENARIO.desired };
  const toplevels = new Map<string, StorePath>();
  try {
    for (const [system, packages] of Object.entries(systems)) {
      const members = Object.entries(packages).map(([n, v]) => pathOf(n, v));
      for (const [n, v] of Object.entries(packages)) {
        const path = pathOf(n, v);
        await putSyntheticPath(
          store,
          key,
          path,
          [],
          `${text.slice(0, 30_000)}${n} ${v}${text.slice(30_000)}`,
        );
      }
      const top = syntheticPath(`bench-delta-shared:system:${system}`, `system-${system}`);
      await putSyntheticPath(store, key, top, members);
      toplevels.set(system, top);
      closures.set(top, [top, ...members]);
    }
  } finally {
    await store.close();
  }
  const hosts: DiffHost[] = SCENARIO.hosts.map(([from, to], i) => ({
    host: `host${i + 1}`,
    action: "activate",
    current: toplevels.get(from),
    desired: toplevels.get(to) as StorePath,
  }));
  const read = (root: StorePath): ReadClosure => ({
    kind: "complete",
    paths: (closures.get(root) ?? []).map((path) => ({ path, narSize: 60_000 })),
    from: "cache",
  });
  const planned = planDeltaPairs(hosts, read, () => true);

  // A zstd first on PATH that logs its arguments, then runs the machine's (PATH as it was).
  const shimDir = join(work, "bin");
  const log = join(work, "zstd-runs");
  await mkdir(shimDir, { recursive: true });
  await writeFile(
    join(shimDir, "zstd"),
    `#!/bin/sh\nprintf '%s\\n' "$*" >> '${log}'\nPATH='${process.env.PATH ?? ""}' exec zstd "$@"\n`,
  );
  await chmod(join(shimDir, "zstd"), 0o755);
  const patchRuns = async (): Promise<number> =>
    (await readFile(log, "utf8").catch(() => ""))
      .split("\n")
      .filter((line) => line.includes("--patch-from=")).length;

  const oldPath = process.env.PATH;
  process.env.PATH = `${shimDir}:${oldPath ?? ""}`;
  const events: DeployEvent[] = [];
  try {
    const tally = await publishPlanDeltas({
      cacheUrl: url,
      key,
      planned,
      emit: (e) => events.push(e),
    });
    const zstdRuns = await patchRuns();
    const againTally = await publishPlanDeltas({ cacheUrl: url, key, planned, emit: () => {} });
    const againZstdRuns = (await patchRuns()) - zstdRuns;
    return {
      hosts: hosts.length,
      needs: planned.hosts.reduce((sum, h) => sum + h.missing, 0),
      asks: planned.hosts.reduce((sum, h) => sum + h.pairs.length, 0),
      pairs: planned.pairs.length,
      zstdRuns,
      tally,
      againZstdRuns,
      againTally,
    };
  } finally {
    process.env.PATH = oldPath;
    await rm(work, { recursive: true, force: true });
  }
}
