// Reads the per-host history (host-history.ts) from a store, bounded: the channel's last
// HISTORY_RELEASES releases that are no refresh (HISTORY_READS releases at most), each one GET
// of its release file (verified: a release no trusted key signed was never run by an agent; a
// sharded one's shards too) and LIST pages of its status markers (1,000 keys a page). No status
// body is read.
import { InputError } from "../errors.js";
import type { PublicKey } from "../nix/keys.js";
import type { ParsedRelease, Release, ReleaseHost } from "../release/release.js";
import { isHostTwice } from "../release/release-parse.js";
import { listedSeqs, readRelease, releaseKey } from "../release/release-store.js";
import { loadRelease, loadVerifiedRelease, storedShardKeys } from "../release/shard-store.js";
import { isFinalState, type StatusState } from "../status/status.js";
import { type Progress, readProgress } from "../status/status-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { mapLimit } from "../util/pool.js";
import { type HostEvent, hostHistories, type ReleaseReport } from "./host-history.js";
import { addBundleKeys } from "./secrets-store.js";

/** Releases a history looks back over: the channel's newest ones, refreshes not counted. */
export const HISTORY_RELEASES = 50;
/** Releases a history reads at most, refreshes included. */
export const HISTORY_READS = 250;
/**
 * Releases read at once. A release of 30 MB (100,000 hosts) costs about 300 MB while it is
 * parsed and checked: parses run one at a time, and only this many bodies wait for theirs.
 */
const READS = 2;

export interface HistoryRead {
  /** Each host's events, oldest first. */
  readonly hosts: Map<string, HostEvent[]>;
  /** Release numbers that did not verify (passed over). */
  readonly untrusted: readonly number[];
  /**
   * Of those, the releases every full reader refuses alike (isHostTwice: a host named in two
   * shards, which only a signer could write). With the readers' error. The agents of their
   * sound shards may have applied them (an agent reads its own shard only).
   */
  readonly refused: readonly { readonly seq: number; readonly problem: string }[];
  /**
   * For each host of `entriesOf`: its entry in every release read (newest first), and the key of
   * the status marker it left on each (the record it wrote then), whatever their state.
   */
  readonly entriesOf: Map<string, { entries: ReleaseHost[]; markers: string[] }>;
  /** The key of every secrets bundle an entry of a release read names (secrets-store.ts). */
  readonly bundles: ReadonlySet<string>;
  /** The releases read whole (their numbers), and the key of every shard they have. */
  readonly shards: { readonly read: ReadonlySet<number>; readonly keys: ReadonlySet<string> };
  /** LIST calls of the status markers (the listing of release files comes on top). */
  readonly listCalls: number;
  /** GETs of release files. */
  readonly getCalls: number;
}

export interface HistoryOptions {
  readonly channel: string;
  /**
   * The keys a release must be signed by to count; undefined: releases are only parsed (for
   * display, where the output says nothing was verified).
   */
  readonly trustedKeys: readonly PublicKey[] | undefined;
  /** Releases to look back over (default HISTORY_RELEASES). */
  readonly releases?: number;
  /** A release the caller has already read and checked: used instead of reading it again. */
  readonly known?: ParsedRelease;
  /** Called after each release is read, with how many of how many. */
  readonly onProgress?: (done: number, total: number) => void;
  /** Hosts whose entries and markers are wanted whole (see HistoryRead.entriesOf). */
  readonly entriesOf?: ReadonlySet<string>;
}

export async function readHistory(
  store: ObjectStore,
  options: HistoryOptions,
): Promise<HistoryRead> {
  const { channel } = options;
  // The release files there are, newest first: a number no file has is no release (a publisher
  // that lost a race withdrew it), and costs no read.
  const listed = (await listedSeqs(store, channel)).reverse();
  const count = options.releases ?? HISTORY_RELEASES;
  // Read back, a batch at a time, until `count` releases that are no refresh were read (a
  // refresh repeats its channel's entries: a daily one would push a month's deploys out of
  // any fixed window), HISTORY_READS at most.
  let total = 0;
  let listCalls = 0;
  let getCalls = 0;
  let done = 0;
  const bundles = new Set<string>();
  const shards = { read: new Set<number>(), keys: new Set<string>() };
  /** What the collector needs of a release read whole: its bundles and its shards. */
  const note = (parsed: ParsedRelease) => {
    addBundleKeys(bundles, parsed.release);
    shards.read.add(parsed.release.seq);
    for (const key of storedShardKeys(parsed)) shards.keys.add(key);
  };
  const wanted = options.entriesOf ?? new Set<string>();
  /** What a release and its markers say of the `entriesOf` hosts. */
  const of = (release: Release | undefined, progress: Progress) =>
    [...wanted].map((host) => ({
      host,
      entry:
        release !== undefined && Object.hasOwn(release.hosts, host)
          ? release.hosts[host]
          : undefined,
      marker: progress.hosts.get(host)?.key,
    }));
  // Memory, not only bytes: a release may be tens of MB and hold 100,000 hosts, so each one is
  // cut down to what the history needs (the paths of the hosts that reached a final state on
  // it) as soon as it is parsed, and only READS are read at once.
  const readOne = async (seq: number) => {
    const progress = await readProgress(store, channel, seq);
    listCalls += progress.listCalls;
    const states = new Map(
      [...progress.hosts]
        .filter(([, e]) => isFinalState(e.state))
        .map(([host, e]) => [host, e.state] as const),
    );
    const failedToo = new Set(
      [...progress.hosts].filter(([, e]) => e.failedToo === true).map(([host]) => host),
    );
    const known = options.known;
    if (known?.release.seq === seq && known.release.channel === channel) {
      options.onProgress?.(++done, total);
      note(known);
      return {
        seq,
        report: { release: slim(known.release, states), states, failedToo },
        named: of(known.release, progress),
      };
    }
    const read = await readRelease(store, channel, seq);
    getCalls++;
    let report: ReleaseReport | "absent" | "untrusted" = "absent";
    let refused: string | undefined;
    let whole: Release | undefined;
    if (read.status === "found") {
      const source = releaseKey(channel, seq);
      try {
        const signed =
          options.trustedKeys === undefined
            ? await loadRelease(store, read.bytes, source)
            : await loadVerifiedRelease(store, read.bytes, options.trustedKeys, source);
        // A sharded release's shards: a GET each.
        getCalls += signed.shards?.length ?? 0;
        // Copied under another number: its markers are not about this content.
        const placed = signed.release.seq === seq && signed.release.channel === channel;
        report = placed
          ? { release: slim(signed.release, states), states, failedToo }
          : "untrusted";
        if (placed) {
          whole = signed.release;
          note(signed);
        }
      } catch (err) {
        if (!(err instanceof InputError)) throw err;
        report = "untrusted";
        if (isHostTwice(err)) refused = err.message;
      }
    }
    options.onProgress?.(++done, total);
    return { seq, report, refused, named: of(whole, progress) };
  };
  const reads: Awaited<ReturnType<typeof readOne>>[] = [];
  let counted = 0;
  for (let next = 0; next < listed.length && counted < count && reads.length < HISTORY_READS; ) {
    const size = Math.min(count - counted, HISTORY_READS - reads.length, listed.length - next);
    const batch = listed.slice(next, next + size);
    total += size;
    const got = await mapLimit(batch, READS, readOne);
    reads.push(...got);
    // Only a release that verified counts: a file that did not (one planted by a store writer
    // without the key, numbered above the channel's) must not push the releases the hosts ran
    // out of the window. It costs a read of the HISTORY_READS.
    counted += got.filter(
      (r) => typeof r.report !== "string" && r.report.release.kind !== "refresh",
    ).length;
    next += size;
  }
  const reports: ReleaseReport[] = [];
  const untrusted: number[] = [];
  const refused: { seq: number; problem: string }[] = [];
  type Named = { entries: ReleaseHost[]; markers: string[] };
  const entriesOf = new Map<string, Named>(
    [...wanted].map((h) => [h, { entries: [], markers: [] }]),
  );
  for (const { seq, report, refused: why, named } of reads) {
    if (report === "untrusted") untrusted.push(seq);
    if (why !== undefined) refused.push({ seq, problem: why });
    if (typeof report !== "string") reports.push(report);
    for (const { host, entry, marker } of named) {
      const found = entriesOf.get(host) as Named;
      if (entry !== undefined) found.entries.push(entry);
      if (marker !== undefined) found.markers.push(marker);
    }
  }
  return {
    hosts: hostHistories(reports),
    untrusted,
    refused,
    entriesOf,
    bundles,
    shards,
    listCalls,
    getCalls,
  };
}

/** The release as the history needs it: the entries of the hosts that reached `states`. */
function slim(
  release: Release,
  states: ReadonlyMap<string, StatusState>,
): ReleaseReport["release"] {
  const hosts: Record<string, ReleaseHost> = {};
  // A dry run confirmed nothing: its hosts only tried its systems.
  if (release.action === "dry-activate") return { seq: release.seq, kind: release.kind, hosts };
  for (const host of states.keys()) {
    const entry = Object.hasOwn(release.hosts, host) ? release.hosts[host] : undefined;
    if (entry !== undefined) hosts[host] = { path: entry.path };
  }
  return { seq: release.seq, kind: release.kind, hosts };
}
