// `cache gc` beside the cache's own objects: a host's secrets bundles go once no release the
// collection reads names them (the newest --keep-releases, the channel's head and the agents'
// history of 50 releases), the shards of a release whose file is gone go (a publisher that lost
// a race or died), and in a directory store the temp and lock files of writers that died go;
// each only past the grace period, and all of them kept when a release cannot be read. On
// file:// and on s3rver through the AWS SDK.
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getSecretsBundle, putSecretsBundle } from "../src/channel/secrets-store.js";
import { generateSecretKey } from "../src/nix/keys.js";
import type { StorePath } from "../src/nix/store-path.js";
import type { ReleaseHost } from "../src/release/release.js";
import { publishRelease, readRelease } from "../src/release/release-store.js";
import { loadRelease } from "../src/release/shard-store.js";
import { readAll } from "../src/store/helpers.js";
import type { ObjectStore } from "../src/store/object-store.js";
import { openStore } from "../src/store/url.js";
import { nixship } from "../support/cli.js";
import { type S3Server, startS3Server } from "../support/s3-server.js";
import { allKeys, syntheticPath } from "../support/synthetic-cache.js";

let work: string;
let s3: S3Server;
const releaseKey = generateSecretKey("gc-side-release-1");
const MANIFEST = "c".repeat(64);

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-gc-side-"));
  s3 = await startS3Server();
}, 60_000);
afterAll(async () => {
  await s3?.close();
  await rm(work, { recursive: true, force: true });
});

interface Filled {
  readonly store: ObjectStore;
  /** Bundle keys by name: a1 (release 1 names it), a2, b1 (both releases), a0 and g1 (none). */
  readonly bundles: Record<"a0" | "a1" | "a2" | "b1" | "g1", string>;
  /**
   * Release 1's shards; copies of one under releases 9 and 10, which have no file; and one under
   * release 1 that its file does not name (a publisher that lost the number to this one).
   */
  readonly shards: readonly string[];
  readonly orphans: readonly [string, string, string];
}

const entry = (i: number, bundle?: string): ReleaseHost => ({
  path: syntheticPath(`side-${i}`, `nixos-system-h${i}`) as StorePath,
  ...(bundle === undefined ? {} : { secrets: { bundle, manifest: MANIFEST } }),
});

/**
 * Channel prod: release 1, sharded (300 hosts), names a's bundle a1 and b's b1; release 2 names
 * a2 and b1. Bundle a0 (a's before) and g1 (a host no release names) are named by neither, and
 * release-shards/prod/9/ and /10/ hold shards of releases that have no file.
 */
async function fill(url: string): Promise<Filled> {
  const store = await openStore(url);
  await store.put("nix-cache-info", Buffer.from("StoreDir: /nix/store\n"));
  const digest = async (host: string, text: string) =>
    `secrets/${host}/${await putSecretsBundle(store, host, text)}`;
  const bundles = {
    a0: await digest("a", "a's first ciphertext"),
    a1: await digest("a", "a's second ciphertext"),
    a2: await digest("a", "a's third ciphertext"),
    b1: await digest("b", "b's ciphertext"),
    g1: await digest("g", "a gone host's ciphertext"),
  };
  const digestOf = (key: string) => key.slice(key.lastIndexOf("/") + 1);
  const hosts: Record<string, ReleaseHost> = {
    a: entry(0, digestOf(bundles.a1)),
    b: entry(1, digestOf(bundles.b1)),
  };
  for (let i = 2; i < 300; i++) hosts[`h${i}`] = entry(i);
  const release = (seq: number, named: Record<string, ReleaseHost>) =>
    publishRelease(store, {
      channel: "prod",
      hosts: named,
      kind: "deploy",
      action: "switch",
      health: { http: [], commands: [] },
      confirmTimeout: 30,
      key: releaseKey,
    }).then((r) => expect(r.release.seq).toBe(seq));
  await release(1, hosts);
  await release(2, { a: entry(0, digestOf(bundles.a2)), b: entry(1, digestOf(bundles.b1)) });
  const shards = (await allKeys(store, "release-shards/")).sort();
  expect(shards.length).toBeGreaterThan(1);
  // A publisher's shards whose release file never came (or was withdrawn): 9 and 10.
  const body = (await readAll(store, shards[0] as string)) as Buffer;
  const name = (shards[0] as string).slice((shards[0] as string).lastIndexOf("/") + 1);
  const orphans = [
    `release-shards/prod/9/${name}`,
    `release-shards/prod/10/${name}`,
    `release-shards/prod/1/0-${"f".repeat(64)}.json`,
  ] as const;
  for (const key of orphans) await store.put(key, body);
  return { store, bundles, shards, orphans };
}

/** `cache gc --cache URL --keep-releases 1 EXTRA…`, as run. */
const runGc = (url: string, ...extra: string[]) =>
  nixship(["cache", "gc", "--cache", url, "--keep-releases", "1", ...extra]);

/** Its --json report, the run having succeeded. */
async function gc(url: string, ...extra: string[]): Promise<Record<string, unknown>> {
  const r = await runGc(url, "--json", ...extra);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

/** What the store still holds of the bundles and shards. */
async function sideKeys(store: ObjectStore): Promise<string[]> {
  return [
    ...(await allKeys(store, "secrets/")),
    ...(await allKeys(store, "release-shards/")),
  ].sort();
}

/** Release 1 and its shards still read, and a's bundles that releases name still verify. */
async function releasesStillRead(f: Filled): Promise<void> {
  const read = await readRelease(f.store, "prod", 1);
  expect(read.status).toBe("found");
  const loaded = await loadRelease(f.store, (read as { bytes: Uint8Array }).bytes, "prod/1");
  expect(Object.keys(loaded.release.hosts)).toHaveLength(300);
  expect(await allKeys(f.store, "release-shards/prod/1/")).toEqual(f.shards);
  for (const key of [f.bundles.a1, f.bundles.a2]) {
    await getSecretsBundle(f.store, "a", key.slice(key.lastIndexOf("/") + 1));
  }
}

describe("cache gc of secrets bundles, release shards and leftovers", () => {
  it("on file://: old ones nothing names go, young ones and named ones stay, a dry run deletes nothing", async () => {
    const dir = join(work, "file-cache");
    const url = `file://${dir}`;
    const f = await fill(url);
    // A temp file a killed publisher left beside release 2's origin, and a young one.
    const leftover = join(dir, "releases/prod/.2.origin.json.nixship-tmp-6e50d0a8ad75");
    const young = join(dir, "releases/prod/.3.json.nixship-tmp-0123");
    await writeFile(leftover, "{");
    // Everything two days old but orphan 10 and the young temp file.
    const old = new Date(Date.now() - 2 * 86400_000);
    for (const key of await allKeys(f.store)) {
      if (key !== f.orphans[1]) await utimes(join(dir, key), old, old);
    }
    await utimes(leftover, old, old);
    await writeFile(young, "{");
    const before = await sideKeys(f.store);

    const dry = await gc(url, "--dry-run");
    expect(dry.deleted).toMatchObject({
      bundle: { objects: 2 },
      shard: { objects: 2 },
      leftover: { objects: 1, bytes: 1 },
    });
    expect(dry.kept).toMatchObject({
      bundle: { objects: 3 },
      shard: { objects: f.shards.length + 1 },
      leftover: { objects: 1, bytes: 1 },
    });
    // Each named, by key (a leftover by its path in the store's directory).
    expect(dry.deletedObjects).toEqual(
      expect.arrayContaining([
        { kind: "bundle", key: f.bundles.a0 },
        { kind: "bundle", key: f.bundles.g1 },
        { kind: "shard", key: f.orphans[0] },
        { kind: "shard", key: f.orphans[2] },
        { kind: "leftover", key: "releases/prod/.2.origin.json.nixship-tmp-6e50d0a8ad75" },
      ]),
    );
    expect(dry.deletedObjects).toHaveLength(5);
    expect(await sideKeys(f.store)).toEqual(before);
    expect(
      (await readdir(join(dir, "releases/prod"))).filter((n) => n.includes("tmp")),
    ).toHaveLength(2);

    const text = await runGc(url, "--dry-run");
    expect(text.stderr).toMatch(
      /would delete: .*, 2 secrets bundles \(.*\), 2 release shards \(.*\), 1 writers' temp and lock files \(1 B\)/,
    );

    const real = await gc(url);
    expect(real.deleted).toEqual(dry.deleted);
    expect(await sideKeys(f.store)).toEqual(
      before.filter((k) => ![f.bundles.a0, f.bundles.g1, f.orphans[0], f.orphans[2]].includes(k)),
    );
    expect(await readdir(join(dir, "releases/prod"))).toContain(".3.json.nixship-tmp-0123");
    expect(await readdir(join(dir, "releases/prod"))).not.toContain(
      ".2.origin.json.nixship-tmp-6e50d0a8ad75",
    );
    await releasesStillRead(f);
    await f.store.close();
  }, 120_000);

  it("keeps every bundle while a release cannot be read (collected without it by --skip-roots)", async () => {
    const dir = join(work, "skip-cache");
    const url = `file://${dir}`;
    const f = await fill(url);
    // Release 3, which may name bundles an agent fetches, does not read.
    await mkdir(dirname(join(dir, "releases/prod/3.json")), { recursive: true });
    await writeFile(join(dir, "releases/prod/3.json"), "not a release");
    const old = new Date(Date.now() - 2 * 86400_000);
    for (const key of await allKeys(f.store)) await utimes(join(dir, key), old, old);
    const stopped = await runGc(url);
    expect(stopped.code).toBe(1);
    expect(stopped.stderr).toContain("releases/prod/3.json");
    const r = await gc(url, "--skip-roots", "releases/prod/3.json");
    expect(r.deleted).toMatchObject({ bundle: { objects: 0 }, shard: { objects: 3 } });
    expect(await allKeys(f.store, "secrets/")).toHaveLength(5);
    await f.store.close();
  }, 120_000);

  it("on s3rver through the AWS SDK: the same judgement, by a listing of the bucket", async () => {
    const url = `s3://${s3.bucket}/side-cache?region=us-east-1&endpoint=${s3.endpoint}`;
    const f = await fill(url);
    // s3rver's times have whole seconds: let the last object age past the grace of 0.
    await new Promise((r) => setTimeout(r, 1100));
    const before = await sideKeys(f.store);
    const r = await gc(url, "--grace", "0");
    expect(r.deleted).toMatchObject({
      bundle: { objects: 2 },
      shard: { objects: 3 },
      leftover: { objects: 0 },
    });
    expect(await sideKeys(f.store)).toEqual(
      before.filter((k) => k !== f.bundles.a0 && k !== f.bundles.g1 && !f.orphans.includes(k)),
    );
    await releasesStillRead(f);
    await f.store.close();
  }, 120_000);
});
