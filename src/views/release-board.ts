// The releases of every channel, kept up to date poll by poll for a long-running reader (the
// dashboard): a poll LISTs `channels/`, `releases/` and the markers of each channel's newest
// releases, and GETs only what it has not read: a release file once (they are never replaced),
// a channel file when its etag moved. A poll where nothing changed costs LIST calls only. Each
// file is verified against the fleet's release keys when it is read (a sharded release's every
// shard too, as each agent checks its own), so a release that nixship refuses, and the agents of
// a shard at fault with it, is shown as such, never as a plain current release.
import { InputError } from "../errors.js";
import type { PublicKey } from "../nix/keys.js";
import { releaseDigest } from "../release/release-canonical.js";
import { parseReleaseHead } from "../release/release-parse.js";
import { verifyReleaseHead } from "../release/release-sign.js";
import {
  channelKey,
  isChannelName,
  listReleaseSeqs,
  missingRelease,
  type ReleaseEntry,
  type ReleaseFileEntry,
  readRelease,
  releaseEntryOf,
  releaseKey,
  releaseNumbers,
} from "../release/release-store.js";
import { checkShards } from "../release/shard-store.js";
import { CrowdedSegments } from "../status/crowded-segments.js";
import { isFinalState } from "../status/status.js";
import { readProgress } from "../status/status-store.js";
import { listAll, readBody } from "../store/helpers.js";
import type { ObjectStore } from "../store/object-store.js";
import { mapLimit } from "../util/pool.js";

/** Releases of a channel a board shows (the newest). */
export const BOARD_RELEASES = 20;
/** Of those, the newest whose hosts' markers are counted at every poll. */
export const COUNTED_RELEASES = 3;
const READS = 8;

/**
 * Whether a release file is one the fleet's agents would follow: signed by a key of the fleet's
 * releases.publicKeys, for the channel (and number) it is filed under.
 */
export type ReleaseTrust =
  | { readonly status: "trusted"; readonly key: string }
  /** Unsigned, signed by a key the fleet does not trust, changed after signing, or misfiled. */
  | { readonly status: "untrusted"; readonly problem: string }
  /**
   * Signed by a key of the fleet, but refused by every full reader: a sharded release whose
   * shards are missing, changed or laid out wrong (a host named in two shards). An agent reads
   * its own shard only: the agents of a shard at fault refuse it, the others apply their entries.
   */
  | { readonly status: "refused"; readonly key: string; readonly problem: string }
  /** The fleet names no release keys: nothing to verify it with. */
  | { readonly status: "unverified"; readonly problem: string };

/** A release whose file is missing has nothing to verify. */
const NO_FILE: ReleaseTrust = { status: "untrusted", problem: "its file is missing" };

/** One release as the board shows it: `release list`'s entry, its expiry and its hosts' states. */
export type BoardRelease = ReleaseEntry & {
  readonly trust: ReleaseTrust;
  /** When it expires (undefined: a malformed file). */
  readonly expires?: string;
  readonly expired?: boolean;
  /** Hosts that reached each final state for it, from its markers; null: not counted. */
  readonly counts: {
    readonly applied: number;
    readonly failed: number;
    readonly pending: number;
  } | null;
};

export interface BoardChannel {
  readonly channel: string;
  /** The seq the channel file names (null: no channel file, or one that does not parse). */
  readonly currentSeq: number | null;
  /** When the current release expires. */
  readonly expires: string | null;
  /** Whether the release the channel file holds verifies (null: no channel file). */
  readonly currentTrust: ReleaseTrust | null;
  /** Newest first, at most BOARD_RELEASES. */
  readonly releases: readonly BoardRelease[];
  /** Release files the channel has in all. */
  readonly total: number;
}

/** What the board keeps of a release file (not its bytes: a release can name 100,000 hosts). */
interface KnownRelease {
  /** As `release list` shows it, its `current` to be set from the channel's digest. */
  readonly entry: ReleaseFileEntry;
  readonly expires: string | undefined;
  readonly names: number;
  readonly trust: ReleaseTrust;
}

/** What the board keeps of a channel file. */
interface KnownChannel {
  readonly etag: string;
  readonly digest: string | undefined;
  readonly trust: ReleaseTrust;
}

export class ReleaseBoard {
  readonly #store: ObjectStore;
  /** By release key: files never change once written. */
  #releases = new Map<string, KnownRelease>();
  readonly #keys: readonly PublicKey[] | undefined;
  /** By channel: the channel file's etag, digest and trust. */
  #channels = new Map<string, KnownChannel>();
  /** The crowded hosts of the counted releases' markers, from poll to poll. */
  readonly #crowded = new CrowdedSegments();

  /** `trustedKeys`: the fleet's releases.publicKeys (undefined: it has none). */
  constructor(store: ObjectStore, trustedKeys?: readonly PublicKey[]) {
    this.#store = store;
    this.#keys = trustedKeys;
  }

  async poll(): Promise<BoardChannel[]> {
    const [seqs, channelFiles] = await Promise.all([
      listReleaseSeqs(this.#store),
      this.#listChannelFiles(),
    ]);
    const names = [...new Set([...seqs.keys(), ...channelFiles.keys()])].sort();
    const channels = await mapLimit(names, READS, async (channel) => {
      const file = await this.#channelFile(channel, channelFiles.get(channel));
      const digest = file?.digest;
      // Newest first, a number with no file shown as missing (release list's rule).
      const shown = releaseNumbers(seqs.get(channel) ?? [])
        .reverse()
        .slice(0, BOARD_RELEASES);
      const releases = await mapLimit(
        shown,
        READS,
        async ({ seq, isListed }, i): Promise<BoardRelease> =>
          isListed
            ? this.#release(channel, seq, digest, i < COUNTED_RELEASES)
            : { ...missingRelease(channel, seq, "not listed"), trust: NO_FILE, counts: null },
      );
      const current = releases.find((r) => r.current);
      return {
        channel,
        currentSeq: current?.seq ?? null,
        expires: current?.expires ?? null,
        currentTrust: file?.trust ?? null,
        releases,
        total: seqs.get(channel)?.length ?? 0,
      };
    });
    // What a poll no longer lists is forgotten, so memory follows the store.
    const keep = new Set(
      channels.flatMap((c) => c.releases.map((r) => releaseKey(c.channel, r.seq))),
    );
    for (const key of this.#releases.keys()) if (!keep.has(key)) this.#releases.delete(key);
    for (const c of this.#channels.keys()) if (!names.includes(c)) this.#channels.delete(c);
    return channels;
  }

  /** Each channel file's etag, from LIST pages of `channels/`. */
  async #listChannelFiles(): Promise<Map<string, string>> {
    const files = new Map<string, string>();
    for await (const info of listAll(this.#store, "channels/")) {
      const name = /^channels\/([^/]+)\.json$/.exec(info.key)?.[1];
      // A file no channel could be named by is no channel: passed over, as `release list` does.
      if (name !== undefined && isChannelName(name)) files.set(name, info.etag);
    }
    return files;
  }

  async #channelFile(channel: string, etag: string | undefined): Promise<KnownChannel | undefined> {
    if (etag === undefined) {
      this.#channels.delete(channel);
      return undefined;
    }
    const known = this.#channels.get(channel);
    if (known?.etag === etag) return known;
    const key = channelKey(channel);
    const got = await this.#store.get(key);
    if (got === undefined) return undefined;
    let file: KnownChannel;
    try {
      const bytes = new Uint8Array(await readBody(got.body, key));
      file = {
        etag: got.info.etag,
        digest: releaseDigest(bytes),
        trust: await releaseTrust(this.#store, bytes, this.#keys, channel, undefined, key),
      };
    } catch (err) {
      // Too large to be a release: shown as such, and not read again until it changes.
      if (!(err instanceof InputError)) throw err;
      file = {
        etag: got.info.etag,
        digest: undefined,
        trust: { status: "untrusted", problem: err.message },
      };
    }
    this.#channels.set(channel, file);
    return file;
  }

  async #release(
    channel: string,
    seq: number,
    currentDigest: string | undefined,
    counted: boolean,
  ): Promise<BoardRelease> {
    const key = releaseKey(channel, seq);
    let known = this.#releases.get(key);
    if (known === undefined) {
      const read = await readRelease(this.#store, channel, seq).catch((err: unknown) => {
        if (!(err instanceof InputError)) throw err;
        return { status: "unreadable" as const, problem: err.message };
      });
      // Listed, then gone: shown as missing, and read again at the next poll.
      if (read.status === "absent") {
        return {
          ...missingRelease(channel, seq, "listed, then gone when read"),
          trust: NO_FILE,
          counts: null,
        };
      }
      // Too large to be a release: shown as malformed, and never read again (files never change
      // once written).
      known =
        read.status === "unreadable"
          ? {
              entry: {
                status: "malformed",
                seq,
                digest: "",
                current: false,
                problem: read.problem,
              },
              expires: undefined,
              names: 0,
              trust: { status: "untrusted", problem: read.problem },
            }
          : summarise(
              read.bytes,
              seq,
              key,
              await releaseTrust(this.#store, read.bytes, this.#keys, channel, seq, key),
            );
      this.#releases.set(key, known);
    }
    const entry = { ...known.entry, current: known.entry.digest === currentDigest };
    const expires = known.expires;
    const counts = counted ? await this.#counts(channel, seq, known.names) : null;
    return {
      ...entry,
      ...(expires === undefined ? {} : { expires, expired: Date.now() >= Date.parse(expires) }),
      trust: known.trust,
      counts,
    };
  }

  async #counts(channel: string, seq: number, names: number): Promise<BoardRelease["counts"]> {
    const { hosts } = await readProgress(this.#store, channel, seq, this.#crowded);
    let applied = 0;
    let failed = 0;
    for (const entry of hosts.values()) {
      if (!isFinalState(entry.state)) continue;
      if (entry.state === "success") applied++;
      else failed++;
    }
    return { applied, failed, pending: Math.max(0, names - applied - failed) };
  }
}

function summarise(
  bytes: Uint8Array,
  seq: number,
  source: string,
  trust: ReleaseTrust,
): KnownRelease {
  const entry = releaseEntryOf(bytes, seq, source, undefined);
  if (entry.status !== "ok") return { entry, expires: undefined, names: 0, trust };
  // The release file alone: a sharded release's head counts its hosts; no shard is read.
  const { head } = parseReleaseHead(bytes, source);
  return { entry, expires: head.expires, names: entry.hosts, trust };
}

/**
 * Whether `bytes` (read from `source`) are a release the keys signed, filed where it belongs,
 * that nixship reads as sound: of a sharded release every shard is read and checked as each
 * agent checks its own (checkShards; none of their entries kept), so a release with a shard at
 * fault is refused here with the error that shard's agents give. `seq` undefined: a channel file, which may hold any number of the
 * channel.
 */
export async function releaseTrust(
  store: ObjectStore,
  bytes: Uint8Array,
  keys: readonly PublicKey[] | undefined,
  channel: string,
  seq: number | undefined,
  source: string,
): Promise<ReleaseTrust> {
  if (keys === undefined) {
    return {
      status: "unverified",
      problem: "the fleet file lists no releases.publicKeys, so nothing verifies this release",
    };
  }
  try {
    const verified = verifyReleaseHead(bytes, keys, source);
    const { head, signature } = verified;
    if (head.channel !== channel || (seq !== undefined && head.seq !== seq)) {
      return {
        status: "untrusted",
        problem: `${source} holds release ${head.seq} of channel ${head.channel}: a release copied to another place`,
      };
    }
    const key = signature.slice(0, signature.indexOf(":"));
    try {
      await checkShards(store, verified);
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      return { status: "refused", key, problem: err.message };
    }
    return { status: "trusted", key };
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    return { status: "untrusted", problem: err.message };
  }
}
