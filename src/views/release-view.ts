// The release view: a channel's releases (`release list`) and one release with, per host, what
// it names, what the host last reported running and what last passed there (`release show`), as
// data for the CLI and the dashboard alike. Reads; what it warns of is release-warnings.ts.
import { readHistory } from "../channel/history-store.js";
import { type ReleaseHostView, releaseHostViews } from "../channel/host-history.js";
import type { PublicKey } from "../nix/keys.js";
import { checkExpiry, type ParsedRelease, type Release } from "../release/release.js";
import type { OriginCheck } from "../release/release-origin.js";
import {
  findRelease,
  highestListed,
  listReleases,
  type ReleaseEntry,
  readReleaseOrigin,
  releaseOriginKey,
  requirePlacement,
} from "../release/release-store.js";
import { loadRelease, loadVerifiedRelease } from "../release/shard-store.js";
import { newestSignedRelease } from "../release/signed-release-reads.js";
import type { ObjectStore } from "../store/object-store.js";
import { signatureKeyName } from "../util/text.js";
import { listWarnings, showWarnings } from "./release-warnings.js";
import { StatusReader } from "./status-reader.js";

export interface ReleaseListView {
  /** Every release file of the channel, oldest first. */
  readonly releases: ReleaseEntry[];
  readonly warnings: string[];
}

export async function readReleaseList(
  store: ObjectStore,
  channel: string,
  /** Entries kept across calls, by release key (see listReleases). */
  known?: Map<string, ReleaseEntry>,
): Promise<ReleaseListView> {
  const releases = await listReleases(store, channel, known);
  return { releases, warnings: listWarnings(releases) };
}

/** One release as `release show` gives it (its --json, without the store's URL). */
export interface ReleaseShowView {
  /** The key it was read from. */
  readonly source: string;
  /** Whether the channel names it. */
  readonly current: boolean;
  readonly digest: string;
  /** The name of the key that signed it (null: unsigned), and whether it was verified. */
  readonly signature: { readonly key: string | null; readonly verified: boolean };
  readonly expired: boolean;
  /** A newer release listed in the channel than the one it names (`latest` only). */
  readonly newerRelease: number | null;
  readonly warnings: string[];
  /**
   * Who published it and from what source (release-origin.ts): trusted only when a trusted key
   * signed it for this release; none for releases published before nixship wrote it.
   */
  readonly origin: OriginCheck;
  readonly release: Release;
  readonly hosts: ReleaseHostView[];
}

/**
 * Release `which` of the channel. With `trustedKeys` it is verified first (an InputError unless
 * one of them signed exactly this content), and only releases they signed count in the hosts'
 * histories; without, nothing is verified. Whether it has expired is judged at `now`.
 */
export async function readReleaseShow(
  store: ObjectStore,
  channel: string,
  which: number | "latest",
  trustedKeys: readonly PublicKey[] | undefined,
  now: Date = new Date(),
): Promise<ReleaseShowView> {
  const found = await findRelease(store, channel, which);
  const verified = trustedKeys !== undefined;
  const parsed: ParsedRelease = verified
    ? await loadVerifiedRelease(store, found.bytes, trustedKeys, found.source)
    : await loadRelease(store, found.bytes, found.source);
  const { release, digest, signature } = parsed;
  requirePlacement(found.source, release, channel, which);
  const names = Object.keys(release.hosts);
  const [poll, history, origin] = await Promise.all([
    new StatusReader(store, { hosts: names }).poll(),
    readHistory(store, {
      channel,
      trustedKeys,
      // Shown and checked already (verified when trusted keys were given): not read twice.
      known: parsed,
    }),
    releaseOrigin(store, release, found.bytes, trustedKeys),
  ]);
  const expired = !checkExpiry(release, now).ok;
  // The channel should name the newest release: one that names an older release than a
  // signed file listed above it was replayed (or its publisher was interrupted).
  const newer =
    which === "latest" ? await newerRelease(store, channel, release.seq, trustedKeys) : undefined;
  const unreadable = names.flatMap((n) => {
    const why = poll.unreadable.get(n);
    return why === undefined ? [] : [[n, why] as const];
  });
  return {
    source: found.source,
    current: found.current,
    digest,
    signature: { key: signature === undefined ? null : signatureKeyName(signature), verified },
    expired,
    newerRelease: newer ?? null,
    warnings: [
      ...showWarnings({ release, expired, newer, verified, unreadable }),
      ...(origin.status === "untrusted" && verified
        ? [
            `who published release ${release.seq} is not known: its origin document (${releaseOriginKey(channel, release.seq)}) is not to be believed (${origin.problem})`,
          ]
        : []),
    ],
    origin,
    release,
    hosts: releaseHostViews(
      release,
      new Map(names.map((n) => [n, poll.records.get(n)?.current ?? null])),
      history.hosts,
    ),
  };
}

/** The release's origin; not verified (so not to be believed) without trusted keys. */
async function releaseOrigin(
  store: ObjectStore,
  release: Release,
  bytes: Uint8Array,
  trustedKeys: readonly PublicKey[] | undefined,
): Promise<OriginCheck> {
  const check = await readReleaseOrigin(store, release, bytes, trustedKeys ?? []);
  if (trustedKeys === undefined && check.status === "untrusted") {
    return { status: "untrusted", problem: "not verified: no trusted release key was given" };
  }
  return check;
}

/**
 * A release above `seq` listed in the channel: with keys, the newest one they signed; without,
 * the highest number listed. Undefined when there is none.
 */
async function newerRelease(
  store: ObjectStore,
  channel: string,
  seq: number,
  keys: readonly PublicKey[] | undefined,
): Promise<number | undefined> {
  if (keys !== undefined) return await newestSignedRelease(store, channel, keys, seq);
  const highest = await highestListed(store, channel);
  return highest > seq ? highest : undefined;
}
