// A deploy killed mid-rollout (SIGKILL: a CI job's timeout, a lost runner) leaves its rollout
// record saying running. `nixship rollback` refuses to undo a rollout whose deployer still
// writes its record, and undoes one whose record has gone unwritten for 15 heartbeats.
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseSecretKey } from "../src/nix/keys.js";
import { rolloutKey } from "../src/status/rollout.js";
import { writeRollout } from "../src/status/rollout-store.js";
import { FsStore } from "../src/store/fs-store.js";
import { generatedKey, nixship } from "../support/cli.js";
import { rolloutRecord } from "./support/rollout-records.js";

const V2 = "/nix/store/22222222222222222222222222222222-nixos-system-a1";
const V3 = "/nix/store/33333333333333333333333333333333-nixos-system-a1";

let work: string;
let fleet: string;
let cache: string;
let cacheKey: string;
let releaseKey: string;

/**
 * A rollout record as a deploy killed mid-activation of a1 left it, last written at `at`, and
 * signed as a deploy signs it (with the cache key), unless `unsigned`.
 */
async function leftRunning(id: string, at: Date, unsigned = false): Promise<void> {
  const record = rolloutRecord(
    [{ host: "a1", state: "activating", phase: "switch", system: V3, before: V2, message: null }],
    {
      id,
      mode: "agent",
      startedAt: new Date(at.getTime() - 60_000).toISOString(),
      updatedAt: at.toISOString(),
    },
  );
  const key = unsigned ? undefined : parseSecretKey(await readFile(cacheKey, "utf8"));
  await writeRollout(new FsStore(cache), record, key);
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-rollback-abandoned-"));
  cache = join(work, "cache");
  await mkdir(cache);
  await writeFile(join(cache, "nix-cache-info"), "StoreDir: /nix/store\n");
  const cache1 = await generatedKey(work, "cache-1");
  const release1 = await generatedKey(work, "release-1");
  cacheKey = cache1.file;
  releaseKey = release1.file;
  const cachePub = cache1.publicKey;
  const releasePub = release1.publicKey;
  fleet = join(work, "fleet.json");
  await writeFile(
    fleet,
    JSON.stringify({
      cache: { url: `file://${cache}`, publicKeys: [cachePub] },
      releases: { channel: "prod", publicKeys: [releasePub] },
      hosts: { a1: { delivery: "agent", system: V3 } },
    }),
  );
});
afterAll(() => rm(work, { recursive: true, force: true }));

const rollback = (id: string) =>
  nixship([
    "rollback",
    "--fleet",
    fleet,
    "--rollout",
    id,
    "--key",
    cacheKey,
    "--release-key",
    releaseKey,
  ]);

describe("rollback of a rollout left running", () => {
  it("refuses one whose record was written moments ago: its deploy may still run", async () => {
    await leftRunning("aaaaaaaaaaaa", new Date());
    const r = await rollback("aaaaaaaaaaaa");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("rollback: rollout aaaaaaaaaaaa is still running");
    expect(r.stderr).toContain("15 minutes after its last write it can be rolled back");
  });

  it("undoes one whose record has gone unwritten for 15 heartbeats, saying why", async () => {
    await leftRunning("bbbbbbbbbbbb", new Date(Date.now() - 20 * 60_000));
    const r = await rollback("bbbbbbbbbbbb");
    expect(r.stderr).toContain(
      "note: rollout bbbbbbbbbbbb says running, but its deployer has not written it since",
    );
    // What a1 runs is not known here (no record of its agent): it stays, and nothing is deployed.
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toContain("still running");
  });
});

describe("rollback of a rollout left paused", () => {
  it("undoes one whose pause's deadline passed with no outcome taken, saying why", async () => {
    const at = Date.now() - 5 * 60_000;
    const until = new Date(at - 60 * 60_000).toISOString();
    const record = rolloutRecord(
      [{ host: "a1", state: "confirmed", phase: null, system: V3, before: V2, message: null }],
      {
        id: "eeeeeeeeeeee",
        mode: "agent",
        state: "paused",
        pauses: [
          {
            afterWave: 1,
            since: new Date(at - 2 * 3600_000).toISOString(),
            until,
            onTimeout: "abort",
          },
        ],
        startedAt: new Date(at - 3 * 3600_000).toISOString(),
        updatedAt: new Date(at).toISOString(),
      },
    );
    await writeRollout(
      new FsStore(cache),
      record,
      parseSecretKey(await readFile(cacheKey, "utf8")),
    );
    const r = await rollback("eeeeeeeeeeee");
    expect(r.stderr).toContain(
      `note: rollout eeeeeeeeeeee says paused, but its deadline (${until}) passed and its deployer took no outcome`,
    );
    expect(r.stderr).not.toContain("waits for an answer");
    // Planned, not refused: what a1 runs is not known here, so a1 itself is refused.
    expect(r.stderr).toContain("Rolling back rollout eeeeeeeeeeee");
  });
});

describe("rollback of a rollout whose record no cache key signed", () => {
  it("refuses it, by id and as the newest: anyone who can write the store could have put it there", async () => {
    await leftRunning("cccccccccccc", new Date(), true);
    const r = await rollback("cccccccccccc");
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("rollout cccccccccccc's record (file://");
    expect(r.stderr).toContain(
      "is not to be believed: it is not signed; anyone who can write the store could have put it there",
    );
    // The newest naming a1 is this one: named, not passed over for an older.
    const newest = await nixship([
      "rollback",
      "--fleet",
      fleet,
      "--key",
      cacheKey,
      "--release-key",
      releaseKey,
    ]);
    expect(newest.code).toBe(2);
    expect(newest.stderr).toContain("cccccccccccc's record");
  });

  it("refuses a signed record copied under a newer key (it would pass for the newest rollout)", async () => {
    await leftRunning("dddddddddddd", new Date(Date.now() - 40 * 60_000));
    const store = new FsStore(cache);
    const [from] = (await store.list("status/rollouts/")).objects
      .map((o) => o.key)
      .filter((k) => k.endsWith("-dddddddddddd.json"));
    const copied = rolloutKey(new Date(), "dddddddddddd");
    await writeFile(join(cache, copied), await readFile(join(cache, from as string)));
    await rm(join(cache, from as string));
    const r = await rollback("dddddddddddd");
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("it lies at another key than its own start and id make");
  });
});
