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
import type { LetGo } from "../cache/gc-why.js";
import { readPins } from "../cache/pins.js";
import { readHistory } from "../channel/history-store.js";
import {
  confirmedSystems,
  type HostEvent,
  type HostHistory,
  rollbackWalk,
} from "../channel/host-history.js";
import { addBundleKeys } from "../channel/secrets-store.js";
import { InputError, NixshipError } from "../errors.js";
import type { PublicKey } from "../nix/keys.js";
import { type StorePath, storePathOf } from "../nix/store-path.js";
import type { Release, ReleaseHost } from "../release/release.js";
import { isHostTwice } from "../release/release-parse.js";
import {
  listChannels,
  listReleaseSeqs,
  readChannel,
  readRelease,
  releaseKey,
} from "../release/release-store.js";
import { loadRelease, storedShardKeys } from "../release/shard-store.js";
import { BOOT_PARTS } from "../status/boot.js";
import {
  gotItsSystem,
  type RolloutHost,
  type RolloutRecord,
  rolloutLive,
} from "../status/rollout.js";
import { listNewestRollouts, readRollout, readWeighedRollout } from "../status/rollout-store.js";
import type { StatusRecord } from "../status/status.js";
import { listStatusRecords, readRecord } from "../status/status-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { mapLimit } from "../util/pool.js";
import { readSideObjects } from "./gc-side-objects.js";

export interface StoreRootOptions {
  /** The newest releases of each channel whose systems are kept (≥ 1). */
  readonly keepReleases: number;
  /**
   * Of each agent host's confirmed history, the newest systems kept (its rollback targets):
   * one number for every host, or each host's own (its role's); undefined: every confirmed
   * system the history reaches.
   */
  readonly keepGenerations?: number | ((host: string) => number | undefined);
  /** Hosts or object keys whose roots the operator lets go when they cannot be read. */
  readonly skip?: ReadonlySet<string>;
  /** Also say which confirmed systems --keep-generations let go of (`letGo`, for a dry run). */
  readonly explain?: boolean;
  /**
   * The keys a rollout record must be signed by (the fleet's cache.publicKeys): each host keeps
   * what the newest record they signed gave it and what it ran before, whatever its status
   * record says (a status record is not authenticated). Undefined: no rollout is believed.
   */
  readonly rolloutKeys?: readonly PublicKey[];
}

export interface StoreRoots extends RootsRead {
  readonly channels: readonly string[];
  readonly hosts: number;
  /** With `explain`: each agent host's confirmed systems past the newest --keep-generations. */
  readonly letGo?: readonly LetGo[];
}

const READS = 8;

/** Rollout records read, newest first, for a host whose record cannot be read. */
export const GC_ROLLOUTS = 50;
/**
 * Rollout records read at most: for one still running past the newest GC_ROLLOUTS, and (with the
 * fleet's keys) for GC_ROLLOUTS signed ones.
 */
export const GC_ROLLOUT_READS = 500;

/** The roots the store names. A store fault fails the whole read: no collection without them. */
export async function rootsFromStore(
  store: ObjectStore,
  options: StoreRootOptions,
): Promise<StoreRoots> {
  const roots: GcRoots = new Map();
  const origins: RootOrigins = new Map();
  const unreadable: UnreadableRoot[] = [];
  const refused: UnreadableRoot[] = [];
  // A system many hosts ran is said once, for the first host found.
  const letGo = new Map<string, LetGo>();
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

  // The records first: a host whose record does not read (a host writes its own) has what else
  // names it kept instead, from the channels' releases and markers and from the rollouts.
  const listed = await listStatusRecords(store);
  const unread = new Map<string, { problem: string; kept: Set<string> }>();
  await mapLimit(listed, READS * 4, async ({ key, host }) => {
    const record = await recordOf(store, key);
    if (typeof record === "string") {
      unread.set(host, { problem: `the status record ${key}: ${record}`, kept: new Set() });
      return;
    }
    if (record !== undefined)
      for (const [p, source] of recordPaths(record)) add(p, source, hostOrigin(host));
  });
  const keep = (host: string, path: string, source: RootSource) => {
    add(path, source, hostOrigin(host));
    unread.get(host)?.kept.add(path);
  };

  // Every secrets bundle a release read names: the newest releases', and the history's.
  const bundles = new Set<string>();
  // The releases read whole (`channel/seq`), and their shards' keys.
  const shards = { read: new Set<string>(), keys: new Set<string>() };
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
      if (read === undefined) continue;
      if ("refused" in read) refused.push({ name: key, problem: read.refused });
      else if ("unreadable" in read) unreadable.push({ name: key, problem: read.unreadable });
      else {
        for (const [host, p] of releasePaths(read.release)) add(p, "release", hostOrigin(host));
        addBundleKeys(bundles, read.release);
        shards.read.add(`${channel}/${read.release.seq}`);
        for (const shard of read.shardKeys) shards.keys.add(shard);
      }
    }
    const history = await readHistory(store, {
      channel,
      trustedKeys: undefined,
      entriesOf: new Set(unread.keys()),
    });
    // A release every full reader refuses hides nothing: a host that applied its entry from a
    // sound shard keeps its system by its record.
    for (const key of history.bundles) bundles.add(key);
    for (const seq of history.shards.read) shards.read.add(`${channel}/${seq}`);
    for (const key of history.shards.keys) shards.keys.add(key);
    const refusedSeqs = new Set(history.refused.map((r) => r.seq));
    for (const { seq, problem } of history.refused) {
      refused.push({ name: releaseKey(channel, seq), problem });
    }
    // A release of the history that does not read hides what its hosts were confirmed on.
    for (const seq of history.untrusted) {
      if (refusedSeqs.has(seq)) continue;
      const key = releaseKey(channel, seq);
      // Named once: among the newest releases it was named already.
      if (unreadable.some((u) => u.name === key)) continue;
      unreadable.push({
        name: key,
        problem: `${key}: does not read as a release of ${channel} (malformed, or a shard missing or changed): the systems its hosts were confirmed on are unknown`,
      });
    }
    for (const [host, events] of history.hosts) {
      const confirmed = confirmedSystems(events);
      const keep =
        typeof options.keepGenerations === "function"
          ? options.keepGenerations(host)
          : options.keepGenerations;
      // The newest confirmed, and what as many rollbacks walk back through (by when each
      // system was put there: after a rollback the two differ).
      const kept =
        keep === undefined
          ? confirmed
          : [...new Set([...confirmed.slice(0, keep), ...rollbackWalk(events, host, keep)])];
      for (const p of kept) add(p, "history", hostOrigin(host));
      // A system whose newest report on the host is a failure is kept too: the collection does
      // not judge the reports' signatures, and a failure written over a success must not make
      // it the deleter of a system the host runs or goes back to.
      for (const p of failedLast(events)) add(p, "history", hostOrigin(host));
      if (options.explain && keep !== undefined) {
        for (const path of confirmed.filter((p) => !kept.includes(p))) {
          if (!letGo.has(path))
            letGo.set(path, { rule: "keep-generations", path, host, channel, keep });
        }
      }
    }
    // A host whose record does not read: its entry in each release of the history, and what
    // it recorded on each (its markers hold the record it wrote then; one of its own that does
    // not read either names nothing).
    for (const [host, { entries, markers }] of history.entriesOf) {
      for (const entry of entries) for (const p of entryPaths(entry)) keep(host, p, "release");
      const records = await mapLimit(markers, READS, (key) => recordOf(store, key));
      for (const record of records) {
        if (typeof record === "string" || record === undefined || record.host !== host) continue;
        for (const [p, source] of recordPaths(record)) keep(host, p, source);
      }
    }
  }

  // And the systems the newest rollouts gave: to a host whose record does not read (a record
  // that does not read hides what it gave, so it is unreadable as a release is); and, while a
  // rollout says running, to every host it names, with what each ran before: its deployer
  // writes the hosts' records when the rollout ends, so one killed before then wrote none.
  // And to every host, from the newest record a fleet key signed that names it: what it gave
  // and what the host ran before. A status record is not authenticated, so one rewritten by
  // whoever can write the store must not turn the collector into the deleter of what a host
  // runs or goes back to.
  const given = new Set<string>();
  // Past the newest GC_ROLLOUTS records, read on (up to GC_ROLLOUT_READS) for a rollout that
  // still says running or paused (its deployer killed before it wrote its hosts' records; 50
  // rollouts of other hosts may have come since) and, with keys, for the newest signed
  // records: records of a writer's own, put there to push the signed ones out, are passed
  // over, as are records dated ahead (a writer's, sorting first), which listNewestRollouts
  // never lists.
  const rollouts = await listNewestRollouts(store, GC_ROLLOUT_READS);
  for (const [index, { key }] of rollouts.entries()) {
    const within = index < GC_ROLLOUTS;
    let rollout: RolloutRecord | undefined;
    let trusted = false;
    try {
      if (options.rolloutKeys === undefined) rollout = await readRollout(store, key);
      else {
        const weighed = await readWeighedRollout(store, key, options.rolloutKeys);
        rollout = weighed?.record;
        trusted = weighed?.trusted === true;
      }
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      if (within && unread.size > 0) unreadable.push({ name: key, problem: err.message });
      continue;
    }
    // Past the newest GC_ROLLOUTS, a record keeps while it says running or paused, or by the
    // newest-signed rule.
    const live = rollout !== undefined && rolloutLive(rollout.state);
    for (const entry of [
      ...(rollout?.waves.flatMap((w) => w.hosts) ?? []),
      ...(rollout?.skipped ?? []),
    ]) {
      // The newest signed record that says what the host ran after it (it got its system, or
      // failed or went back); one that left it unreached, not started or refused says nothing.
      const newestSigned = trusted && !given.has(entry.host) && saysWhatItRuns(entry);
      if (newestSigned) given.add(entry.host);
      if (!live && !newestSigned && !(within && unread.has(entry.host))) continue;
      for (const path of [entry.system, live || newestSigned ? entry.before : null]) {
        if (typeof path === "string" && storePathOf(path) === path) {
          keep(entry.host, path, "rollout");
        }
      }
    }
  }

  const pins = await readPins(store);
  for (const pin of pins.pins) for (const p of pin.paths) add(p, "pin", `pin ${pin.name}`);
  // (Each why names its pin's key already.)
  for (const [key, why] of pins.unreadable) unreadable.push({ name: key, problem: why });
  const judged = judgeUnreadable(unreadable, options.skip ?? new Set());
  // A release refused, or let go unread, may name bundles its agents still fetch: then none go.
  const releasesRead =
    refused.length === 0 && !judged.skipped.some((u) => RELEASE_OBJECT.test(u.name));
  const sideObjects = await readSideObjects(store, {
    bundles: releasesRead ? bundles : undefined,
    releases: seqs,
    shards,
  });
  const unreadRecords = [...unread]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([host, { problem, kept }]) => ({ host, problem, kept: [...kept].sort() }));
  return {
    roots,
    origins,
    ...judged,
    refused: dedupe(refused),
    unreadRecords,
    sideObjects,
    channels,
    hosts: listed.length,
    ...(options.explain ? { letGo: [...letGo.values()] } : {}),
  };
}

/** The keys of a release's file, its channel's head and its shards. */
const RELEASE_OBJECT = /^(?:releases|channels|release-shards)\//;

/** A record, undefined when it is gone, or why it does not read (that record's fault alone). */
async function recordOf(
  store: ObjectStore,
  key: string,
): Promise<StatusRecord | string | undefined> {
  try {
    return await readRecord(store, key);
  } catch (err) {
    if (
      !(err instanceof NixshipError) ||
      !(err.code === "status-malformed" || err.code === "object-too-large")
    )
      throw err;
    return err.message;
  }
}

/** Each refusal once: a channel and its release file name one release, the history again. */
function dedupe(found: readonly UnreadableRoot[]): UnreadableRoot[] {
  const seen = new Set<string>();
  return found.filter((u) => {
    const id = `${u.name}\0${u.problem}`;
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
}

/** A release file's roots: its release, why every full reader refuses it, or why it does not read. */
async function releaseRoots(
  store: ObjectStore,
  source: string,
  read: { status: string; bytes?: Uint8Array },
): Promise<
  | { release: Release; shardKeys: string[] }
  | { refused: string }
  | { unreadable: string }
  | undefined
> {
  if (read.status !== "found" || read.bytes === undefined) return undefined;
  try {
    // A sharded release's shards too: one missing or changed leaves the release's roots unknown.
    const parsed = await loadRelease(store, read.bytes, source);
    return { release: parsed.release, shardKeys: storedShardKeys(parsed) };
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    // Refused by every full reader: it keeps nothing. The agents of its sound shards may apply
    // it (each reads its own shard only); what they then run their records keep.
    if (isHostTwice(err)) return { refused: err.message };
    return { unreadable: err.message };
  }
}

/**
 * Every store path a release names, with its host: each system, the age its secrets need, and
 * the delta tool its agent realises from the cache (docs/deltas.md).
 */
export function releasePaths(release: Release): [string, string][] {
  return Object.entries(release.hosts).flatMap(([host, entry]) =>
    entryPaths(entry).map((p): [string, string] => [host, p]),
  );
}

/** The store paths one entry of a release names. */
function entryPaths(entry: ReleaseHost): string[] {
  return [
    entry.path,
    ...(entry.secrets?.age !== undefined ? [entry.secrets.age] : []),
    ...(entry.deltaTool !== undefined ? [entry.deltaTool] : []),
  ];
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

/** Whether a rollout's entry says what its host ran after the rollout. */
function saysWhatItRuns(entry: RolloutHost): boolean {
  return gotItsSystem(entry) || entry.state === "failed" || entry.state === "rolled-back";
}

/**
 * The systems whose newest event on the host is a failure. The listing shows one report per
 * release, the newest: a failure written over a success hides it, so such a system may well be
 * one the host confirmed, runs, or goes back to.
 */
function failedLast(events: HostHistory): StorePath[] {
  const last = new Map<StorePath, HostEvent["outcome"]>();
  for (const e of events) last.set(e.path, e.outcome);
  return [...last].filter(([, outcome]) => outcome === "failed").map(([path]) => path);
}
