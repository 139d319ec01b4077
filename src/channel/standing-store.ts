// Reads from a store what standing.ts needs to say where agent hosts stand: every heartbeat (LIST
// pages only) and the channel's current release (one GET), verified with the fleet's release
// keys: a channel the agents refused says nothing about where they should be.

import type { Fleet } from "../fleet/fleet.js";
import { parsePublicKey } from "../nix/keys.js";
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
}

type ChannelSignals = Pick<AgentSignals, "channel" | "entries">;

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
  const signed = await loadTrustedRelease(store, bytes, keys, channelKey(fleet.releases.channel));
  if (signed === undefined) return NO_CHANNEL;
  const entries = new Map(Object.entries(signed.release.hosts).map(([h, e]) => [h, e.path]));
  const { seq, expires } = signed.release;
  return { channel: { seq, expires, hosts: new Set(entries.keys()) }, entries };
}
