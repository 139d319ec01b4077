// The garbage collector's roots from what the store itself says the fleet runs, has released
// and can go back to: the newest releases of every channel (and what each channel points at),
// every host's status record (current, desired, previous and booted systems, its agent's own
// package), each agent host's confirmed history, and the pins. Read without any host name
// given: LIST calls find the channels, releases and records.

import { addRoot, type GcRoots } from "../cache/gc-plan.js";
import { readPins } from "../cache/pins.js";
import { readHistory } from "../channel/history-store.js";
import { confirmedSystems } from "../channel/host-history.js";
import { InputError, NixshipError } from "../errors.js";
import { storePathOf } from "../nix/store-path.js";
import type { Release } from "../release/release.js";
import {
  listChannels,
  listReleaseSeqs,
  readChannel,
  readRelease,
  releaseKey,
} from "../release/release-store.js";
import { loadRelease } from "../release/shard-store.js";
import { BOOT_PARTS } from "../status/boot.js";
import type { StatusRecord } from "../status/status.js";
import { listStatusRecords, readRecord } from "../status/status-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { mapLimit } from "../util/pool.js";

export interface StoreRootOptions {
  /** The newest releases of each channel whose systems are kept (≥ 1). */
  readonly keepReleases: number;
  /**
   * Of each agent host's confirmed history, the newest systems kept (its rollback targets);
   * undefined: every confirmed system the history reaches.
   */
  readonly keepGenerations?: number;
}

export interface StoreRoots {
  readonly roots: GcRoots;
  /** Objects that could not be read (their roots are unknown), and why. */
  readonly problems: string[];
  readonly channels: readonly string[];
  readonly hosts: number;
}

const READS = 8;

/** The roots the store names. A store fault fails the whole read: no collection without them. */
export async function rootsFromStore(
  store: ObjectStore,
  options: StoreRootOptions,
): Promise<StoreRoots> {
  const roots: GcRoots = new Map();
  const problems: string[] = [];

  const seqs = await listReleaseSeqs(store);
  const channels = [...new Set([...(await listChannels(store)), ...seqs.keys()])].sort();
  for (const channel of channels) {
    const newest = (seqs.get(channel) ?? []).slice(-options.keepReleases);
    const releases = await mapLimit(newest, READS, async (seq) =>
      releaseRoots(store, releaseKey(channel, seq), await readRelease(store, channel, seq)),
    );
    const head = await readChannel(store, channel);
    releases.push(await releaseRoots(store, `channels/${channel}.json`, head));
    for (const r of releases) {
      if (typeof r === "string") problems.push(r);
      else if (r !== undefined) for (const p of releasePaths(r)) addRoot(roots, p, "release");
    }
    const history = await readHistory(store, { channel, trustedKeys: undefined });
    for (const events of history.hosts.values()) {
      const confirmed = confirmedSystems(events);
      const kept =
        options.keepGenerations === undefined
          ? confirmed
          : confirmed.slice(0, options.keepGenerations);
      for (const p of kept) addRoot(roots, p, "history");
    }
  }

  const listed = await listStatusRecords(store);
  await mapLimit(listed, READS * 4, async ({ key }) => {
    let record: StatusRecord | undefined;
    try {
      record = await readRecord(store, key);
    } catch (err) {
      if (
        !(err instanceof NixshipError) ||
        !(err.code === "status-malformed" || err.code === "object-too-large")
      )
        throw err;
      problems.push(err.message);
      return;
    }
    if (record !== undefined)
      for (const [p, source] of recordPaths(record)) addRoot(roots, p, source);
  });

  const pins = await readPins(store);
  for (const pin of pins.pins) for (const p of pin.paths) addRoot(roots, p, "pin");
  for (const [key, why] of pins.unreadable) problems.push(`${key}: ${why}`);
  return { roots, problems, channels, hosts: listed.length };
}

async function releaseRoots(
  store: ObjectStore,
  source: string,
  read: { status: string; bytes?: Uint8Array },
): Promise<Release | string | undefined> {
  if (read.status !== "found" || read.bytes === undefined) return undefined;
  try {
    // A sharded release's shards too: one missing or changed is a problem, not a release's roots.
    return (await loadRelease(store, read.bytes, source)).release;
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    return err.message;
  }
}

/** Every store path a release names: each host's system, and the age its secrets need. */
export function releasePaths(release: Release): string[] {
  const paths: string[] = [];
  for (const entry of Object.values(release.hosts)) {
    paths.push(entry.path);
    if (entry.secrets?.age !== undefined) paths.push(entry.secrets.age);
  }
  return paths;
}

/** The systems a status record names, and the store paths behind its booted kernel and initrd. */
export function recordPaths(record: StatusRecord): [string, "status" | "agent"][] {
  const paths: [string, "status" | "agent"][] = [];
  for (const p of [record.current, record.desired, record.previous]) {
    if (typeof p === "string" && storePathOf(p) === p) paths.push([p, "status"]);
  }
  const booted = record.reboot?.booted;
  if (booted) {
    for (const part of BOOT_PARTS) {
      const p = booted[part];
      const root = p === null ? undefined : storePathOf(p);
      if (root !== undefined) paths.push([root, "status"]);
    }
  }
  if (typeof record.agent === "string") paths.push([record.agent, "agent"]);
  return paths;
}
