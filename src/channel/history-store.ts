// Reads the per-host history (host-history.ts) from a store, bounded: the channel's last
// HISTORY_RELEASES releases, each one GET of its release file (verified: a release no trusted
// key signed was never run by an agent; a sharded one's shards too) and LIST pages of its status markers (1,000 keys a
// page). No status body is read.
import { InputError } from "../errors.js";
import type { PublicKey } from "../nix/keys.js";
import type { ParsedRelease, Release, ReleaseHost } from "../release/release.js";
import { highestListed, readRelease, releaseKey } from "../release/release-store.js";
import { loadRelease, loadVerifiedRelease } from "../release/shard-store.js";
import { isFinalState, type StatusState } from "../status/status.js";
import { readProgress } from "../status/status-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { mapLimit } from "../util/pool.js";
import { type HostEvent, hostHistories, type ReleaseReport } from "./host-history.js";

/** Releases a history looks back over: the channel's newest ones. */
export const HISTORY_RELEASES = 50;
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
}

export async function readHistory(
  store: ObjectStore,
  options: HistoryOptions,
): Promise<HistoryRead> {
  const { channel } = options;
  const newest = await highestListed(store, channel);
  const count = Math.min(newest, options.releases ?? HISTORY_RELEASES);
  const seqs = Array.from({ length: count }, (_, i) => newest - i);
  let listCalls = 0;
  let getCalls = 0;
  let done = 0;
  // Memory, not only bytes: a release may be tens of MB and hold 100,000 hosts, so each one is
  // cut down to what the history needs (the paths of the hosts that reached a final state on
  // it) as soon as it is parsed, and only READS are read at once.
  const reads = await mapLimit(seqs, READS, async (seq) => {
    const progress = await readProgress(store, channel, seq);
    listCalls += progress.listCalls;
    const states = new Map(
      [...progress.hosts]
        .filter(([, e]) => isFinalState(e.state))
        .map(([host, e]) => [host, e.state] as const),
    );
    const known = options.known;
    if (known?.release.seq === seq && known.release.channel === channel) {
      options.onProgress?.(++done, seqs.length);
      return { seq, report: { release: slim(known.release, states), states } };
    }
    const read = await readRelease(store, channel, seq);
    getCalls++;
    let report: ReleaseReport | "absent" | "untrusted" = "absent";
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
        report =
          signed.release.seq !== seq || signed.release.channel !== channel
            ? "untrusted"
            : { release: slim(signed.release, states), states };
      } catch (err) {
        if (!(err instanceof InputError)) throw err;
        report = "untrusted";
      }
    }
    options.onProgress?.(++done, seqs.length);
    return { seq, report };
  });
  const reports: ReleaseReport[] = [];
  const untrusted: number[] = [];
  for (const { seq, report } of reads) {
    if (report === "untrusted") untrusted.push(seq);
    if (typeof report !== "string") reports.push(report);
  }
  return { hosts: hostHistories(reports), untrusted, listCalls, getCalls };
}

/** The release as the history needs it: the entries of the hosts that reached `states`. */
function slim(
  release: Release,
  states: ReadonlyMap<string, StatusState>,
): ReleaseReport["release"] {
  const hosts: Record<string, ReleaseHost> = {};
  for (const host of states.keys()) {
    const entry = Object.hasOwn(release.hosts, host) ? release.hosts[host] : undefined;
    if (entry !== undefined) hosts[host] = { path: entry.path };
  }
  return { seq: release.seq, kind: release.kind, hosts };
}
