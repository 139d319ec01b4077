// Agent liveness: each agent writes a small heartbeat object every few polls, laid out so that a
// reader learns every host's liveness from LIST pages (1,000 keys each) without reading a body:
//
//   status/heartbeats/<host>/<state>/<every>   state: running | paused; every: the longest time,
//                                              in seconds, between two heartbeats of a live agent
//
// The object's LastModified is the heartbeat's time. A host has one key per state (two at most,
// more only if its interval changes), rewritten in place, so the listing stays one key or two per
// host; of a host's keys the newest says where it is. Readers take the first HOST_KEYS_READ keys
// of a host's prefix and skip the rest (host-listing.ts): what a host writes there beyond its
// own keys costs readers nothing more. The body (a few hundred bytes of JSON) is for people
// reading the store; nothing needs it.
import { NAME_PATTERN } from "../fleet/fleet.js";

export const HEARTBEAT_PREFIX = "status/heartbeats/";

export const HEARTBEAT_STATES = ["running", "paused"] as const;
export type HeartbeatState = (typeof HEARTBEAT_STATES)[number];

/** Polls between two heartbeats of an agent unless its config says otherwise. */
export const DEFAULT_HEARTBEAT_EVERY = 10;

/**
 * Heartbeat periods a host may miss before it reads as offline: a host is offline when its
 * newest heartbeat is older than OFFLINE_AFTER × `every`, that is, after 2 × heartbeatEvery
 * polls (at their longest, pollInterval × (1 + jitter)) without one.
 */
export const OFFLINE_AFTER = 2;

export type Liveness = "online" | "offline" | "paused";

export interface Heartbeat {
  readonly host: string;
  readonly state: HeartbeatState;
  /** Seconds: the longest a live agent waits between two heartbeats. */
  readonly every: number;
  readonly at: Date;
}

/**
 * The longest period a heartbeat may claim, in seconds: two days, one poll at its longest (the
 * agent's config allows a poll a day, with up to 100 % jitter). Readers take a key that claims
 * more as claiming this: the store's writers are not authenticated (docs/dashboard.md, "Trust"),
 * and one forged key must not keep a dead agent "online" for years.
 */
export const MAX_HEARTBEAT_PERIOD = 2 * 86_400;

/**
 * Polls between two heartbeats as the agent beats: `heartbeatEvery`, or fewer when that many
 * polls would take longer than MAX_HEARTBEAT_PERIOD (at least one).
 */
export function heartbeatPolls(pollInterval: number, jitter: number, heartbeatEvery: number) {
  const longestPoll = pollInterval * (1 + jitter);
  return Math.max(1, Math.min(heartbeatEvery, Math.floor(MAX_HEARTBEAT_PERIOD / longestPoll)));
}

/** Seconds between two heartbeats at most: heartbeatPolls polls of the longest wait. */
export function heartbeatPeriod(pollInterval: number, jitter: number, heartbeatEvery: number) {
  const polls = heartbeatPolls(pollInterval, jitter, heartbeatEvery);
  // Rounded first: 86,400 × 1.1 is 95,040.00000000001 in floating point.
  return Math.ceil(Number((polls * pollInterval * (1 + jitter)).toFixed(6)));
}

export function heartbeatKey(host: string, state: HeartbeatState, every: number): string {
  return `${HEARTBEAT_PREFIX}${host}/${state}/${every}`;
}

export function parseHeartbeatKey(key: string): Omit<Heartbeat, "at"> | undefined {
  if (!key.startsWith(HEARTBEAT_PREFIX)) return undefined;
  const [host, state, every, ...rest] = key.slice(HEARTBEAT_PREFIX.length).split("/");
  if (rest.length > 0 || host === undefined || !NAME_PATTERN.test(host)) return undefined;
  if (!(HEARTBEAT_STATES as readonly string[]).includes(state ?? "")) return undefined;
  if (!/^[1-9][0-9]{0,8}$/.test(every ?? "")) return undefined;
  const claimed = Number(every);
  return { host, state: state as HeartbeatState, every: Math.min(claimed, MAX_HEARTBEAT_PERIOD) };
}

/** Each host's newest heartbeat, from a listing of HEARTBEAT_PREFIX. */
export function summariseHeartbeats(
  objects: readonly { readonly key: string; readonly lastModified: Date }[],
): Map<string, Heartbeat> {
  const hosts = new Map<string, Heartbeat>();
  for (const o of objects) {
    const parsed = parseHeartbeatKey(o.key);
    if (parsed === undefined) continue;
    const known = hosts.get(parsed.host);
    if (known === undefined || o.lastModified.getTime() >= known.at.getTime()) {
      hosts.set(parsed.host, { ...parsed, at: o.lastModified });
    }
  }
  return hosts;
}

/**
 * Seconds a heartbeat may be dated ahead of the reader's clock (clocks differ a little). One
 * dated further ahead is no heartbeat: a directory store's times are its files' (touch -d), and
 * a heartbeat of 2099 would keep a dead agent online for good.
 */
export const HEARTBEAT_AHEAD = 300;

/** Whether the agent lives, from its newest heartbeat (none: offline, or never started). */
export function livenessOf(heartbeat: Heartbeat | undefined, now: Date): Liveness {
  if (heartbeat === undefined) return "offline";
  const age = (now.getTime() - heartbeat.at.getTime()) / 1000;
  if (age > OFFLINE_AFTER * heartbeat.every || age < -HEARTBEAT_AHEAD) return "offline";
  return heartbeat.state === "paused" ? "paused" : "online";
}

/**
 * Why a host's agent will not take a release now (paused, or its heartbeats stopped), if so.
 * No heartbeat at all says nothing (an agent that never started, or one from before
 * heartbeats): such a host is waited for.
 */
export function agentNotLive(
  host: string,
  beat: Heartbeat | undefined,
  now: Date,
): string | undefined {
  if (beat === undefined) return undefined;
  const age = Math.round((now.getTime() - beat.at.getTime()) / 1000);
  switch (livenessOf(beat, now)) {
    case "paused":
      return `${host}'s agent is paused (its heartbeat ${age}s ago says so): it takes no release until resumed ('nixship agent resume' on the host)`;
    case "offline":
      return age < 0
        ? `${host}'s agent is offline: its last heartbeat is dated ${-age}s ahead of this machine's clock: a clock is wrong (this machine's, the host's or the store's: check their time sync)`
        : `${host}'s agent is offline: its last heartbeat is ${age}s old (it beats every ${beat.every}s at most)`;
    case "online":
      return undefined;
  }
}

/** What a heartbeat object says (its key holds host, state and every; the body all of it). */
export interface HeartbeatBody {
  readonly host: string;
  readonly channel: string;
  readonly state: HeartbeatState;
  readonly every: number;
  readonly lastSeq: number | null;
  readonly at: string;
}

/** The body of a heartbeat object. */
export function formatHeartbeat(fields: HeartbeatBody): Uint8Array {
  return Buffer.from(`${JSON.stringify({ version: 1, ...fields })}\n`);
}
