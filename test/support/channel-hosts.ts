// For the channel's unit tests (src/channel/): hosts that report on a channel's releases as
// their agents would (a status marker and a record each, with the generation an activation
// makes), and releases published by hand: signed by the fleet's key, or planted by a key the
// fleet does not trust.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach } from "vitest";
import { generateSecretKey, type SecretKey } from "../../src/nix/keys.js";
import type { StorePath } from "../../src/nix/store-path.js";
import type { ReleaseHost, SignedRelease } from "../../src/release/release.js";
import {
  channelKey,
  publishRelease,
  readChannel,
  readRelease,
  releaseKey,
} from "../../src/release/release-store.js";
import { loadRelease } from "../../src/release/shard-store.js";
import { writeStatus } from "../../src/status/status-store.js";
import { FsStore } from "../../src/store/fs-store.js";
import type { ObjectStore } from "../../src/store/object-store.js";
import { putSyntheticPath } from "../../support/synthetic-cache.js";

export const CHANNEL = "prod";
export const NO_HEALTH = { http: [], commands: [] };

/** A system path; `c` must be a nix32 character (not e, o, u or t). */
export const sys = (c: string, host = "web") =>
  `/nix/store/${c.repeat(24)}${hostPart(host)}-nixos-system-${host}` as StorePath;

const NIX32 = "0123456789abcdfghijklmnpqrsvwxyz";
/** Eight nix32 characters of its own for each host: two hosts' systems never share a hash. */
function hostPart(host: string): string {
  let h = 2166136261;
  for (const ch of host) h = Math.imul(h ^ (ch.codePointAt(0) ?? 0), 16777619) >>> 0;
  let out = "";
  for (let i = 0; i < 8; i++) out += NIX32[(h >>> (i * 4)) & 31];
  return out;
}

const CACHE_KEY = generateSecretKey("channel-cache-1");

/** Puts each path in the store as a push would (a signed narinfo and its NAR): the cache has it. */
export async function inCache(store: ObjectStore, paths: readonly StorePath[]): Promise<void> {
  for (const path of new Set(paths)) await putSyntheticPath(store, CACHE_KEY, path, []);
}

/** The channel's current release (parsed, not verified). */
export async function channelRelease(store: ObjectStore): Promise<SignedRelease> {
  const read = await readChannel(store, CHANNEL);
  if (read.status !== "found") throw new Error("no channel");
  return (await loadRelease(store, read.bytes, channelKey(CHANNEL))) as SignedRelease;
}

/** Publishes a release signed by `key`, as an older nixship (or a by-hand publisher) could. */
export async function publishSigned(
  store: ObjectStore,
  key: SecretKey,
  hosts: Record<string, ReleaseHost>,
): Promise<number> {
  const signed = await publishRelease(store, {
    channel: CHANNEL,
    hosts,
    kind: "deploy",
    action: "switch",
    health: NO_HEALTH,
    confirmTimeout: 0,
    key,
  });
  return signed.release.seq;
}

/** Publishes a release signed by a key the fleet does not trust, as a bucket writer could. */
export function plant(store: ObjectStore, hosts: Record<string, ReleaseHost>): Promise<number> {
  return publishSigned(store, generateSecretKey("intruder-1"), hosts);
}

/** What each host runs, and the reports it leaves for a release, as its agent would. */
export class Hosts {
  readonly #running = new Map<string, { path: StorePath; generation: number }>();

  constructor(private readonly store: ObjectStore) {}

  /** The generation `host` is on (its activations that succeeded), or null before any. */
  generation(host: string): number | null {
    return this.#running.get(host)?.generation ?? null;
  }

  /**
   * Each host of `outcomes` reports release `seq` (whose entry for it names the system): a
   * success makes a new generation of that system; a failure leaves the host on what it ran.
   */
  async report(seq: number, outcomes: Record<string, "success" | "failed">): Promise<void> {
    const read = await readRelease(this.store, CHANNEL, seq);
    if (read.status !== "found") throw new Error(`no release ${seq}`);
    const { release } = await loadRelease(this.store, read.bytes, releaseKey(CHANNEL, seq));
    for (const [host, state] of Object.entries(outcomes)) {
      const path = release.hosts[host]?.path;
      if (path === undefined) throw new Error(`release ${seq} does not name ${host}`);
      const before = this.#running.get(host);
      if (state === "success") {
        this.#running.set(host, { path, generation: (before?.generation ?? 0) + 1 });
      }
      const now = this.#running.get(host);
      await writeStatus(this.store, {
        version: 1,
        host,
        mode: "agent",
        channel: CHANNEL,
        seq,
        desired: path,
        current: now?.path ?? null,
        generation: now?.generation ?? null,
        previous: before?.path ?? null,
        state,
        phase: state === "failed" ? "health" : null,
        error: state === "failed" ? "health check failed: curl exited 7" : null,
        rolledBack: state === "failed" ? before !== undefined : null,
        startedAt: "2026-11-25T06:00:00.000Z",
        updatedAt: "2026-11-25T06:01:00.000Z",
      });
    }
  }
}

/**
 * A directory store and the hosts that report in it, made afresh before each test of the file
 * that calls this (and removed after): read `store` and `hosts` inside the tests.
 */
export function channelStoreEachTest(name: string): { store: FsStore; hosts: Hosts } {
  const fixture = {} as { store: FsStore; hosts: Hosts };
  let dir = "";
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), `nixship-${name}-`));
    fixture.store = new FsStore(join(dir, "bucket"), { fsync: false });
    fixture.hosts = new Hosts(fixture.store);
  });
  afterEach(async () => {
    await fixture.store.close();
    await rm(dir, { recursive: true, force: true });
  });
  return fixture;
}
