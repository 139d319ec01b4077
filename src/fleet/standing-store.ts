// Reads from a store what standing.ts needs to say where agent hosts stand: every heartbeat (LIST
// pages only) and the channel's current release (one GET), verified with the fleet's release
// keys: a channel the agents refused says nothing about where they should be.
import { parsePublicKey } from "../nix/keys.js";
import type { ObjectStore } from "../store/object-store.js";
import type { Fleet, FleetHost } from "./fleet.js";
import { trustedRelease } from "./release.js";
import { channelKey, readChannel } from "./release-store.js";
import { type AgentStanding, agentStanding, type ChannelHead } from "./standing.js";
import type { StatusRecord } from "./status.js";
import { readHeartbeats } from "./status-store.js";

export async function readStanding(
  store: ObjectStore,
  fleet: Fleet,
  agents: readonly FleetHost[],
  records: ReadonlyMap<string, StatusRecord>,
): Promise<Map<string, AgentStanding>> {
  const beats = await readHeartbeats(store);
  let channel: ChannelHead | undefined;
  if (fleet.releases !== undefined) {
    const read = await readChannel(store, fleet.releases.channel);
    if (read.status === "found") {
      const keys = fleet.releases.publicKeys.map((k) => parsePublicKey(k));
      const signed = trustedRelease(read.bytes, keys, channelKey(fleet.releases.channel));
      if (signed !== undefined) {
        channel = { seq: signed.release.seq, hosts: new Set(Object.keys(signed.release.hosts)) };
      }
    }
  }
  const now = new Date();
  return new Map(
    agents.map((h) => [
      h.name,
      agentStanding(h.name, records.get(h.name), beats.hosts.get(h.name), channel, now),
    ]),
  );
}
