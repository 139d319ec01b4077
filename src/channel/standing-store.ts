// Reads from a store what standing.ts needs to say where agent hosts stand: every heartbeat (LIST
// pages only) and the channel's current release (one GET), verified with the fleet's release
// keys: a channel the agents refused says nothing about where they should be.

import type { Fleet } from "../fleet/fleet.js";
import { parsePublicKey } from "../nix/keys.js";
import { trustedRelease } from "../release/release.js";
import { channelKey, readChannel } from "../release/release-store.js";
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
}

export async function readAgentSignals(store: ObjectStore, fleet: Fleet): Promise<AgentSignals> {
  const beats = await readHeartbeats(store);
  const none = { heartbeats: beats.hosts, channel: undefined, entries: new Map() };
  if (fleet.releases === undefined) return none;
  const read = await readChannel(store, fleet.releases.channel);
  if (read.status !== "found") return none;
  const keys = fleet.releases.publicKeys.map((k) => parsePublicKey(k));
  const signed = trustedRelease(read.bytes, keys, channelKey(fleet.releases.channel));
  if (signed === undefined) return none;
  const entries = new Map(Object.entries(signed.release.hosts).map(([h, e]) => [h, e.path]));
  return {
    heartbeats: beats.hosts,
    channel: { seq: signed.release.seq, hosts: new Set(entries.keys()) },
    entries,
  };
}
