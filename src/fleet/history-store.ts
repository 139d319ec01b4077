// Reads the per-host history (host-history.ts) from a store, bounded: the channel's last
// HISTORY_RELEASES releases, each one GET of its release file (verified: a release no trusted
// key signed was never run by an agent) and LIST pages of its status markers (1,000 keys a
// page). No status body is read.
import { InputError } from "../errors.js";
import type { PublicKey } from "../nix/keys.js";
import type { ObjectStore } from "../store/object-store.js";
import { mapLimit } from "../util/pool.js";
import { type HostEvent, hostHistories, type ReleaseReport } from "./host-history.js";
import { type ParsedRelease, parseRelease, verifyRelease } from "./release.js";
import { highestListed, readRelease, releaseKey } from "./release-store.js";
import { isFinalState, type StatusState } from "./status.js";
import { readProgress } from "./status-store.js";

/** Releases a history looks back over: the channel's newest ones. */
export const HISTORY_RELEASES = 50;
/** Releases read at once. */
const READS = 8;

export interface HistoryRead {
  /** Each host's events, oldest first. */
  readonly hosts: Map<string, HostEvent[]>;
  /** The releases read that a trusted key signed (or that parse, unverified), by number. */
  readonly releases: Map<number, ParsedRelease>;
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
  const reads = await mapLimit(seqs, READS, async (seq) => {
    const read = await readRelease(store, channel, seq);
    getCalls++;
    let signed: ParsedRelease | "absent" | "untrusted" = "absent";
    if (read.status === "found") {
      const source = releaseKey(channel, seq);
      try {
        signed =
          options.trustedKeys === undefined
            ? parseRelease(read.bytes, source)
            : verifyRelease(read.bytes, options.trustedKeys, source);
        // Copied under another number: its markers are not about this content.
        if (signed.release.seq !== seq || signed.release.channel !== channel) signed = "untrusted";
      } catch (err) {
        if (!(err instanceof InputError)) throw err;
        signed = "untrusted";
      }
    }
    let states = new Map<string, StatusState>();
    if (typeof signed !== "string") {
      const progress = await readProgress(store, channel, seq);
      listCalls += progress.listCalls;
      states = new Map(
        [...progress.hosts]
          .filter(([, e]) => isFinalState(e.state))
          .map(([host, e]) => [host, e.state]),
      );
    }
    options.onProgress?.(++done, seqs.length);
    return { seq, signed, states };
  });
  const releases = new Map<number, ParsedRelease>();
  const reports: ReleaseReport[] = [];
  const untrusted: number[] = [];
  for (const { seq, signed, states } of reads) {
    if (signed === "untrusted") untrusted.push(seq);
    if (typeof signed === "string") continue;
    releases.set(seq, signed);
    reports.push({ release: signed.release, states });
  }
  return { hosts: hostHistories(reports), releases, untrusted, listCalls, getCalls };
}
