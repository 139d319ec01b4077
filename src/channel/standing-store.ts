// Reads from a store what standing.ts needs to say where agent hosts stand: every heartbeat (LIST
// pages only) and the channel's current release (one GET), verified with the fleet's release
// keys: a channel the agents refused says nothing about where they should be.

import { InputError } from "../errors.js";
import { actionIsDryRun } from "../fleet/action.js";
import type { Fleet } from "../fleet/fleet.js";
import { type PublicKey, parsePublicKey } from "../nix/keys.js";
import { claimedSeq, verifyReleaseHead } from "../release/release-sign.js";
import { channelKey, readChannel } from "../release/release-store.js";
import { loadTrustedRelease } from "../release/shard-store.js";
import { CrowdedSegments } from "../status/crowded-segments.js";
import type { Heartbeat } from "../status/heartbeat.js";
import { readHeartbeats } from "../status/status-store.js";
import type { ObjectStore } from "../store/object-store.js";
import type { ChannelHead } from "./standing.js";

export interface AgentSignals {
  /** Each host's newest heartbeat. */
  readonly heartbeats: ReadonlyMap<string, Heartbeat>;
  /** The channel's current release, when it verifies. */
  readonly channel: ChannelHead | undefined;
  /** The system that release names for each host it names. */
  readonly entries: ReadonlyMap<string, string>;
  /** Hosts whose heartbeat prefix holds more keys than are read: the rest were skipped. */
  readonly crowded: readonly string[];
  /**
   * The channel's current document when it does not verify with the fleet's release keys (a
   * release signed by a key dropped from them, or a stranger's): why.
   */
  readonly untrusted?: UntrustedChannel;
}

/** A channel document that no key of `releases.publicKeys` signed (or whose shards fail). */
export interface UntrustedChannel {
  /** The release it claims to be, when it names one. */
  readonly seq: number | null;
  readonly problem: string;
}

type ChannelSignals = Pick<AgentSignals, "channel" | "entries" | "untrusted">;

const NO_CHANNEL: ChannelSignals = { channel: undefined, entries: new Map() };

export async function readAgentSignals(store: ObjectStore, fleet: Fleet): Promise<AgentSignals> {
  const beats = await readHeartbeats(store);
  const seen = { heartbeats: beats.hosts, crowded: beats.skipped };
  if (fleet.releases === undefined) return { ...seen, ...NO_CHANNEL };
  const read = await readChannel(store, fleet.releases.channel);
  const found = read.status === "found" ? read.bytes : undefined;
  return { ...seen, ...(await channelSignals(store, fleet, found)) };
}

/**
 * readAgentSignals for a reader that polls (the dashboard): the channel file is found by a LIST
 * of its own key, and read only when its etag moved, so a poll where nothing changed costs LIST
 * calls only; the heartbeat listing remembers its crowded hosts from poll to poll.
 */
export class AgentSignalsReader {
  readonly #store: ObjectStore;
  readonly #fleet: Fleet;
  readonly #crowded = new CrowdedSegments();
  #kept: { readonly etag: string; readonly signals: ChannelSignals } | undefined;

  constructor(store: ObjectStore, fleet: Fleet) {
    this.#store = store;
    this.#fleet = fleet;
  }

  async read(): Promise<AgentSignals> {
    const beats = await readHeartbeats(this.#store, this.#crowded);
    const seen = { heartbeats: beats.hosts, crowded: beats.skipped };
    const releases = this.#fleet.releases;
    if (releases === undefined) return { ...seen, ...NO_CHANNEL };
    const key = channelKey(releases.channel);
    const listed = (await this.#store.list(key, { limit: 1 })).objects.find((o) => o.key === key);
    if (listed === undefined) this.#kept = undefined;
    else if (this.#kept?.etag !== listed.etag) {
      const read = await readChannel(this.#store, releases.channel);
      this.#kept =
        read.status === "found"
          ? { etag: read.etag, signals: await channelSignals(this.#store, this.#fleet, read.bytes) }
          : undefined;
    }
    return { ...seen, ...(this.#kept?.signals ?? NO_CHANNEL) };
  }
}

/**
 * What the channel's current release (when it verifies, and its shards with it) says of agent
 * hosts.
 */
async function channelSignals(
  store: ObjectStore,
  fleet: Fleet,
  bytes: Uint8Array | undefined,
): Promise<ChannelSignals> {
  if (fleet.releases === undefined || bytes === undefined) return NO_CHANNEL;
  const keys = fleet.releases.publicKeys.map((k) => parsePublicKey(k));
  const source = channelKey(fleet.releases.channel);
  const signed = await loadTrustedRelease(store, bytes, keys, source);
  if (signed === undefined)
    return { ...NO_CHANNEL, untrusted: untrustedChannel(bytes, keys, source) };
  const entries = new Map(Object.entries(signed.release.hosts).map(([h, e]) => [h, e.path]));
  const { seq, expires, action } = signed.release;
  const hosts = new Set(entries.keys());
  const channel = {
    seq,
    expires,
    hosts,
    ...(actionIsDryRun(action) ? { dryRun: true as const } : {}),
  };
  return { channel, entries };
}

/** Why the channel's document `bytes` is not believed, and the release it claims to be. */
function untrustedChannel(
  bytes: Uint8Array,
  keys: readonly PublicKey[],
  source: string,
): UntrustedChannel {
  let seq: number | null = null;
  try {
    seq = verifyReleaseHead(bytes, keys, source).head.seq;
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    return { seq: claimedSeq(bytes) ?? null, problem: err.message };
  }
  // The head verifies: a shard is what failed.
  return { seq, problem: `${source}: a shard of release ${seq} is missing or does not match` };
}
