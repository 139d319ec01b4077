// Memory, not only bytes: `release show` reads a release of 31 MB (120,000 hosts
// with secrets: once the 32 MiB read cap of one file, now a head and its 469 shards) and the
// history of the releases before it (the same reading the agent delivery's history does)
// within the budget docs/fleet.md states: 1 GB of peak RSS, however many such releases the
// channel holds.
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSecretKey } from "../src/nix/keys.js";
import type { StorePath } from "../src/nix/store-path.js";
import { type ReleaseHost, SHARD_HOSTS } from "../src/release/release.js";
import { publishRelease } from "../src/release/release-store.js";
import { SHARD_MAX_BYTES } from "../src/release/shard-store.js";
import { openStore } from "../src/store/url.js";
import { NIXSHIP_BIN, run, runOk } from "../support/cli.js";

const HOSTS = 120_000;
const RELEASES = 4;
const BUDGET_MB = 1024;
let work: string;
let storeUrl: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-release-memory-"));
  await writeFile(join(work, "nix-cache-info"), "StoreDir: /nix/store\n");
  storeUrl = `file://${work}`;
  const store = await openStore(`${storeUrl}?fsync=false`);
  const key = generateSecretKey("release-memory-1");
  try {
    for (let r = 0; r < RELEASES; r++) {
      const hosts: Record<string, ReleaseHost> = {};
      for (let i = 0; i < HOSTS; i++) {
        hosts[`host-${i}`] = {
          path: `/nix/store/abcdfghijklmnpqrsvwxyz0123456789-nixos-system-host-${i}-${r}` as StorePath,
          secrets: { bundle: "a".repeat(64), manifest: "b".repeat(64) },
        };
      }
      await publishRelease(store, {
        channel: "big",
        hosts,
        kind: "deploy",
        action: "switch",
        health: { http: [], commands: [] },
        confirmTimeout: 30,
        key,
      });
    }
  } finally {
    await store.close();
  }
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe("release show over releases of 31 MB", () => {
  it(`stays under ${BUDGET_MB} MB of peak RSS`, async () => {
    // The release's stored bytes: its head and every shard, each far under the read cap.
    const files = [
      join(work, "releases/big/1.json"),
      ...(await readdir(join(work, "release-shards/big/1"))).map((f) =>
        join(work, "release-shards/big/1", f),
      ),
    ];
    expect(files).toHaveLength(1 + Math.ceil(HOSTS / SHARD_HOSTS));
    const sizes = (await runOk("stat", ["-c", "%s", ...files])).trim().split("\n").map(Number);
    expect(sizes.reduce((a, b) => a + b)).toBeGreaterThan(30e6);
    expect(Math.max(...sizes)).toBeLessThan(SHARD_MAX_BYTES);
    const rusage = join(work, "rusage");
    const r = await run("/usr/bin/time", [
      "-f",
      "%M",
      "-o",
      rusage,
      process.execPath,
      NIXSHIP_BIN,
      "release",
      "show",
      "latest",
      "--channel",
      "big",
      "--store",
      storeUrl,
      "--json",
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).release.seq).toBe(RELEASES);
    const peakMb = Number((await runOk("tail", ["-n", "1", rusage])).trim()) / 1024;
    expect(peakMb, `peak RSS ${peakMb.toFixed(0)} MB`).toBeLessThan(BUDGET_MB);
  });
});
