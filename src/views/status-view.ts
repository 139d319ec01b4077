// The status view: what the selected hosts run, as rows (status-rows.ts). ssh hosts are asked
// live unless `stored`; every other host is read from its status record in the fleet's cache
// store, agent hosts with their heartbeats and the channel. Each host is judged for drift against
// its record, so the records are read for ssh hosts asked live too (a store that cannot be read
// then costs those hosts their drift judgement, not the view: a warning says so).

import { requireCacheInfo } from "../cache/cache-info.js";
import { agentStanding } from "../channel/standing.js";
import {
  type AgentSignals,
  type AgentSignalsReader,
  readAgentSignals,
  type UntrustedChannel,
} from "../channel/standing-store.js";
import { SshDelivery } from "../delivery/ssh.js";
import { NixshipError, UsageError } from "../errors.js";
import type { Fleet, FleetHost } from "../fleet/fleet.js";
import type { HostStatus } from "../host/script-outcomes.js";
import { parsePublicKey } from "../nix/keys.js";
import { failureUndone } from "../status/behind.js";
import type { Ask, UndoneFailure } from "../status/fleet-asks.js";
import { type FutureRollout, firstFutureRollout } from "../status/future-rollouts.js";
import { HOST_KEYS_READ } from "../status/host-listing.js";
import {
  ASK_BYTES,
  ASK_LOOKBACK,
  type DisbelievedRollout,
  disbelievedWarning,
} from "../status/rollout-store.js";
import type { StatusRecord } from "../status/status.js";
import { openStore } from "../store/url.js";
import { namesShown } from "../util/names-shown.js";
import { mapLimit } from "../util/pool.js";
import { type OriginCache, readHostOrigins, type ShownOrigin } from "./host-origins.js";
import { withRolloutApplying } from "./rollout-applying.js";
import {
  type PausedRollout,
  type RolloutRead,
  RolloutWatch,
  withAnswers,
} from "./rollout-watch.js";
import { type StatusPoll, StatusReader } from "./status-reader.js";
import { liveRow, type StatusRow, type StoredRow, storedRow } from "./status-rows.js";

/**
 * Rows made of a record alone, by the record they were made of (records are never changed),
 * with what else they were made of.
 */
const ROWS_OF_RECORDS = new WeakMap<
  StatusRecord,
  {
    readonly row: StoredRow;
    readonly host: string;
    readonly mode: string;
    readonly origin: ShownOrigin | undefined;
    readonly ask: Ask | undefined;
    readonly undone: string | undefined;
  }
>();

/** ssh hosts asked at once. */
const LIVE_ASKS = 32;

export interface StatusViewOptions {
  /** Every host from its status record, ssh hosts too (`status --stored`). */
  readonly stored?: boolean;
  /**
   * A reader of the fleet's cache store kept across views (a dashboard's), so that each view
   * GETs only the records that changed; default: the store opened and read once.
   */
  readonly reader?: StatusReader;
  /** Kept with `reader`: agent hosts' signals, the channel read only when it changed. */
  readonly signals?: AgentSignalsReader;
  /** Kept with `reader`: who put each host's system there, each rollout or release read once. */
  readonly origins?: OriginCache;
  /** Kept with `reader`: the recent rollout records, each read once while its etag holds. */
  readonly rollouts?: RolloutWatch;
}

export interface StatusView {
  readonly rows: StatusRow[];
  /** The agents' channel, when its current release has expired (a warning says so too). */
  readonly expiredChannel?: ExpiredChannel;
  /**
   * The agents' channel, when its current document is not signed by a key of
   * releases.publicKeys (a warning says so too): agents that trust only those refuse it, and
   * one that still trusts a key dropped from them (a leaked one) may run it.
   */
  readonly untrustedChannel?: { readonly channel: string } & UntrustedChannel;
  /** Rollouts that wait at a pause for an operator's answer, among the recent ones. */
  readonly paused: PausedRollout[];
  /** What the view could not judge, beyond what its rows say. */
  readonly warnings: string[];
  /**
   * The first rollout record dated too far ahead to be taken (future-rollouts.ts), which every
   * ask passed over: `status` warns of it, the dashboard's rollout page names it.
   */
  readonly futureRollout?: FutureRollout;
  /** The newest rollout record (none without a store read), whose running hosts are applying. */
  readonly rollout: RolloutRead;
}

/** A channel whose current release has expired. */
export interface ExpiredChannel {
  readonly channel: string;
  readonly seq: number;
  readonly expires: string;
}

/** The fleet's channel when the agents' signals read its current release expired at `now`. */
function expiredChannel(
  fleet: Fleet,
  head: { readonly seq: number; readonly expires?: string } | undefined,
  now: Date,
): ExpiredChannel | undefined {
  if (fleet.releases === undefined || head?.expires === undefined) return undefined;
  if (now.getTime() < Date.parse(head.expires)) return undefined;
  return { channel: fleet.releases.channel, seq: head.seq, expires: head.expires };
}

export async function readStatusView(
  fleet: Fleet,
  hosts: readonly FleetHost[],
  options: StatusViewOptions = {},
): Promise<StatusView> {
  const fromStore = (h: FleetHost) => options.stored === true || h.delivery !== "ssh";
  const needStore = hosts.some(fromStore);
  if (needStore && fleet.cache === undefined) {
    throw new UsageError(
      "status: status objects live in the fleet's cache store, and the fleet has no cache",
    );
  }
  const warnings: string[] = [];
  let stored: StoreFacts | undefined;
  if (fleet.cache !== undefined) {
    const read = readStore(fleet.cache.url, fleet, hosts, options);
    // Hosts asked live need their records only to judge drift: a store that fails says so.
    stored = needStore
      ? await read
      : await read.catch((err: unknown) => {
          if (!(err instanceof NixshipError)) throw err;
          warnings.push(`drift not judged: the status records could not be read: ${err.message}`);
          return undefined;
        });
  }
  const unjudged = stored?.unjudged ?? [];
  if (unjudged.length > 0) {
    warnings.push(
      `${namesShown(unjudged, 5)}: ${unjudged.length === 1 ? "its record is" : "their records are"} older than the newest ${stored?.lookedBack ?? 0} rollouts (${lookBackLimits()}), none of which names ${unjudged.length === 1 ? "it" : "them"}: whether an older rollout left ${unjudged.length === 1 ? "it" : "them"} behind is not judged (deploy ${unjudged.length === 1 ? "it" : "them"}, or read 'nixship status --on HOST' live)`,
    );
  }
  const passedOver = disbelievedWarning(stored?.disbelieved ?? []);
  if (passedOver !== undefined) warnings.push(passedOver);
  const expired = expiredChannel(fleet, stored?.agents?.channel, new Date());
  if (expired !== undefined) {
    warnings.push(
      `channel ${expired.channel}'s current release ${expired.seq} expired at ${expired.expires}: its hosts keep what they applied, but an agent that starts afresh (a new or reimaged host, one whose state was lost) refuses it; 'nixship release refresh' renews it (docs/agent.md, "Freeze protection")`,
    );
  }
  const untrusted = stored?.agents?.untrusted;
  const untrustedChannel =
    untrusted === undefined || fleet.releases === undefined
      ? undefined
      : { channel: fleet.releases.channel, ...untrusted };
  if (untrustedChannel !== undefined) {
    warnings.push(
      `channel ${untrustedChannel.channel}'s current document${untrustedChannel.seq === null ? "" : ` (release ${untrustedChannel.seq})`} is not to be believed: ${untrustedChannel.problem}; agents that trust only releases.publicKeys refuse it, and one still trusting a key dropped from them runs it: publish a release signed by a trusted key ('nixship release refresh'), and check the agents' releaseKeys (docs/keys.md)`,
    );
  }
  const crowded = stored?.agents?.crowded ?? [];
  if (crowded.length > 0) {
    warnings.push(
      `more heartbeat keys than an agent writes under ${crowded.join(", ")}: the first ${HOST_KEYS_READ} of each were read, the rest skipped (remove them; that host's liveness may be wrong)`,
    );
  }
  const ssh = new SshDelivery(fleet.ssh);
  const live = await mapLimit(
    hosts,
    LIVE_ASKS,
    async (h): Promise<HostStatus | undefined> => (fromStore(h) ? undefined : ssh.status(h)),
  );
  const now = new Date();
  const rows = hosts.map((h, i): StatusRow => {
    const record = stored?.poll.records.get(h.name);
    const origin = stored?.origins.get(h.name);
    const ask = stored?.asks.get(h.name);
    const undone = failureUndone(record, stored?.undone.get(h.name));
    const status = live[i];
    if (status !== undefined) return liveRow(h, status, record, origin, ask, undone);
    const signals = h.delivery === "agent" ? stored?.agents : undefined;
    // A host without agent signals is its record alone: a reader that polls keeps the record
    // object while its etag holds, and so the row (10,000 rows cost 80 ms a poll to rebuild).
    if (signals === undefined && record !== undefined && !stored?.poll.unreadable.has(h.name)) {
      const kept = ROWS_OF_RECORDS.get(record);
      if (
        kept !== undefined &&
        kept.host === h.name &&
        kept.mode === h.delivery &&
        kept.origin === origin &&
        kept.ask === ask &&
        kept.undone === undone
      ) {
        return kept.row;
      }
      const row = storedRow(h, { record, origin, ask, failureUndone: undone });
      ROWS_OF_RECORDS.set(record, { row, host: h.name, mode: h.delivery, origin, ask, undone });
      return row;
    }
    return storedRow(h, {
      record,
      unreadable: stored?.poll.unreadable.get(h.name),
      agent:
        signals &&
        agentStanding(h.name, record, signals.heartbeats.get(h.name), signals.channel, now),
      channelEntry: signals?.entries.get(h.name),
      origin,
      ask,
      failureUndone: undone,
    });
  });
  const future = stored?.future === undefined ? {} : { futureRollout: stored.future };
  return {
    // The running rollout's hosts, which their records name only once it ends, as applying.
    rows: stored === undefined ? rows : [...withRolloutApplying(rows, stored.newest, now)],
    warnings,
    paused: stored?.paused ?? [],
    rollout: stored?.newest ?? { status: "none" },
    ...future,
    ...(expired === undefined ? {} : { expiredChannel: expired }),
    ...(untrustedChannel === undefined ? {} : { untrustedChannel }),
  };
}

interface StoreFacts {
  readonly poll: StatusPoll;
  /** Who put each host's system there, by host (hosts with a known origin). */
  readonly origins: ReadonlyMap<string, ShownOrigin>;
  /** Read when an agent host is selected. */
  readonly agents: AgentSignals | undefined;
  /** What the fleet last asked of each host (status/fleet-asks.ts). */
  readonly asks: ReadonlyMap<string, Ask>;
  /** Each host's failure in a rollout a rollback undid since (AsksRead). */
  readonly undone: ReadonlyMap<string, UndoneFailure>;
  /** Hosts whose records are older than every rollout read for the asks (AsksRead). */
  readonly unjudged: readonly string[];
  /** How many rollout records the asks looked back over (AsksRead). */
  readonly lookedBack: number;
  /** Rollout records passed over as not to be believed (AsksRead). */
  readonly disbelieved: readonly DisbelievedRollout[];
  readonly paused: PausedRollout[];
  /** The first rollout record passed over for being dated in the future. */
  readonly future: FutureRollout | undefined;
  /** The newest rollout record. */
  readonly newest: RolloutRead;
}

/** The selected hosts' records (and the agents' signals) from the fleet's cache store. */
async function readStore(
  cacheUrl: string,
  fleet: Fleet,
  hosts: readonly FleetHost[],
  options: StatusViewOptions,
): Promise<StoreFacts> {
  const kept = options.reader;
  const store = kept?.store ?? (await openStore(cacheUrl));
  try {
    const reader = kept ?? new StatusReader(store, { hosts: hosts.map((h) => h.name) });
    const poll = await reader.poll();
    const agents = hosts.some((h) => h.delivery === "agent")
      ? await (options.signals?.read() ?? readAgentSignals(store, fleet))
      : undefined;
    const releaseKeys = fleet.releases?.publicKeys.map((k) => parsePublicKey(k));
    const rolloutKeys = (fleet.cache?.publicKeys ?? []).map(parsePublicKey);
    const origins = await readHostOrigins(
      store,
      poll.records,
      { release: releaseKeys, rollout: rolloutKeys },
      options.origins,
    );
    const rollouts = options.rollouts ?? new RolloutWatch(store, rolloutKeys);
    // A host's own record, newer than a rollout, is the newer word: no need to read back past it.
    const since = new Map(
      [...poll.records].flatMap(([host, record]) =>
        record === undefined ? [] : [[host, record.startedAt] as const],
      ),
    );
    const [{ asks, unjudged, undone, disbelieved, lookedBack }, future, newest] = await Promise.all(
      [
        rollouts.asks(
          hosts.map((h) => h.name),
          since,
        ),
        firstFutureRollout(store, Date.now()),
        rollouts.poll(),
      ],
    );
    // A store with no record of any host and no rollout may be no store at all (a directory
    // gone or unmounted, a URL mistyped): one that holds no binary cache is refused, not shown
    // as a fleet that never reported.
    const noRecord = [...poll.records.values()].every((r) => r === undefined);
    if (newest.status === "none" && noRecord && poll.unreadable.size === 0) {
      await requireCacheInfo(store);
    }
    const paused = await withAnswers(store, rollouts.pausedNow());
    return {
      poll,
      agents,
      origins,
      asks,
      unjudged,
      lookedBack,
      undone,
      disbelieved,
      paused,
      future,
      newest,
    };
  } finally {
    if (kept === undefined) await store.close();
  }
}

/** What a view reads of the rollout records, at most, to judge who is behind. */
function lookBackLimits(): string {
  return `a view reads the newest ${ASK_LOOKBACK} at most, and ${ASK_BYTES / (1024 * 1024)} MiB of records`;
}
