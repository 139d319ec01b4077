// The garbage collector's roots from what the store itself says the fleet runs, has released
// and can go back to: the newest releases of every channel (and what each channel points at),
// every host's status record (current, desired, previous and booted systems, its agent's own
// package), each agent host's confirmed history, and the pins. Read without any host name
// given: LIST calls find the channels, releases and records. What cannot be read (a record, a
// release or one of its shards, a pin) is returned as unreadable: the collector then deletes
// nothing, unless the operator named it to be skipped.

import {
  addOrigin,
  addRoot,
  type GcRoots,
  judgeUnreadable,
  type RootOrigins,
  type RootSource,
  type RootsRead,
  type UnreadableRoot,
} from "../cache/gc-plan.js";
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
  /** Hosts or object keys whose roots the operator lets go when they cannot be read. */
  readonly skip?: ReadonlySet<string>;
}

export interface StoreRoots extends RootsRead {
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
  const origins: RootOrigins = new Map();
  const unreadable: UnreadableRoot[] = [];
  // One origin string per host, shared by every path it names (a fleet may have 100,000).
  const hostOrigins = new Map<string, string>();
  const hostOrigin = (host: string) => {
    let origin = hostOrigins.get(host);
    if (origin === undefined) {
      origin = `host ${host}`;
      hostOrigins.set(host, origin);
    }
    return origin;
  };
  const add = (path: string, source: RootSource, origin: string) => {
    addRoot(roots, path, source);
    addOrigin(origins, path, origin);
  };

  const seqs = await listReleaseSeqs(store);
  const channels = [...new Set([...(await listChannels(store)), ...seqs.keys()])].sort();
  for (const channel of channels) {
    const newest = (seqs.get(channel) ?? []).slice(-options.keepReleases);
    const releases = await mapLimit(newest, READS, async (seq) => {
      const key = releaseKey(channel, seq);
      return { key, read: await releaseRoots(store, key, await readRelease(store, channel, seq)) };
    });
    const headKey = `channels/${channel}.json`;
    releases.push({
      key: headKey,
      read: await releaseRoots(store, headKey, await readChannel(store, channel)),
    });
    for (const { key, read } of releases) {
      if (typeof read === "string") unreadable.push({ name: key, problem: read });
      else if (read !== undefined)
        for (const [host, p] of releasePaths(read)) add(p, "release", hostOrigin(host));
    }
    const history = await readHistory(store, { channel, trustedKeys: undefined });
    // A release of the history that does not read hides what its hosts were confirmed on.
    for (const seq of history.untrusted) {
      const key = releaseKey(channel, seq);
      unreadable.push({
        name: key,
        problem: `${key}: does not read as a release of ${channel} (malformed, or a shard missing or changed): the systems its hosts were confirmed on are unknown`,
      });
    }
    for (const [host, events] of history.hosts) {
      const confirmed = confirmedSystems(events);
      const kept =
        options.keepGenerations === undefined
          ? confirmed
          : confirmed.slice(0, options.keepGenerations);
      for (const p of kept) add(p, "history", hostOrigin(host));
    }
  }

  const listed = await listStatusRecords(store);
  await mapLimit(listed, READS * 4, async ({ key, host }) => {
    let record: StatusRecord | undefined;
    try {
      record = await readRecord(store, key);
    } catch (err) {
      if (
        !(err instanceof NixshipError) ||
        !(err.code === "status-malformed" || err.code === "object-too-large")
      )
        throw err;
      unreadable.push({ name: host, problem: `the status record ${key}: ${err.message}` });
      return;
    }
    if (record !== undefined)
      for (const [p, source] of recordPaths(record)) add(p, source, hostOrigin(host));
  });

  const pins = await readPins(store);
  for (const pin of pins.pins) for (const p of pin.paths) add(p, "pin", `pin ${pin.name}`);
  for (const [key, why] of pins.unreadable)
    unreadable.push({ name: key, problem: `${key}: ${why}` });
  const judged = judgeUnreadable(unreadable, options.skip ?? new Set());
  return { roots, origins, ...judged, channels, hosts: listed.length };
}

async function releaseRoots(
  store: ObjectStore,
  source: string,
  read: { status: string; bytes?: Uint8Array },
): Promise<Release | string | undefined> {
  if (read.status !== "found" || read.bytes === undefined) return undefined;
  try {
    // A sharded release's shards too: one missing or changed leaves the release's roots unknown.
    return (await loadRelease(store, read.bytes, source)).release;
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    return err.message;
  }
}

/**
 * Every store path a release names, with its host: each system, the age its secrets need, and
 * the delta tool its agent realises from the cache (docs/deltas.md).
 */
export function releasePaths(release: Release): [string, string][] {
  const paths: [string, string][] = [];
  for (const [host, entry] of Object.entries(release.hosts)) {
    paths.push([host, entry.path]);
    if (entry.secrets?.age !== undefined) paths.push([host, entry.secrets.age]);
    if (entry.deltaTool !== undefined) paths.push([host, entry.deltaTool]);
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
