// Watching one release of agent hosts: the deployer reads the release's status markers (LIST
// calls) and the agents' heartbeats until every host of the watched ones reports, fails, stays
// silent past the offline timeout, or an interrupt comes; each host's log lines are shown once.

import { setTimeout as delay } from "node:timers/promises";
import { actionActivatesNow } from "../fleet/action.js";
import type { ReleaseSettings } from "../fleet/fleet.js";
import type { SignedRelease } from "../release/release.js";
import { claimedSeq } from "../release/release-sign.js";
import { readChannel } from "../release/release-store.js";
import { CrowdedSegments } from "../status/crowded-segments.js";
import { agentNotLive } from "../status/heartbeat.js";
import {
  type HostLog,
  type ProgressEntry,
  progressKey,
  type StatusRecord,
  type StatusState,
} from "../status/status.js";
import {
  readHeartbeats,
  readJudgedReport,
  readProgress,
  readRecord,
  readStatus,
} from "../status/status-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { interruptReason } from "../util/interrupt-reason.js";
import { mapLimit } from "../util/pool.js";
import type { DeliveryEvent, DeployOutcome } from "./delivery.js";

/** How often the deployer says which hosts have not reported yet. */
const WAITING_EVERY_MS = 5000;
/** Milliseconds between two reads of the log lines of the hosts applying a release. */
const LOG_READ_EVERY_MS = 2000;
/** Final reports read at once: a success's generation and previous system, a failure's why. */
const DETAIL_READS = 32;
/** Milliseconds before a marker not believed is judged again, unchanged (see Unbelieved). */
const REJUDGE_MS = 5000;

export interface WatchSettings {
  readonly store: ObjectStore;
  /** `offlineTimeout`: seconds a host may stay silent before it counts as offline. */
  readonly releases: Pick<ReleaseSettings, "offlineTimeout">;
  /** Milliseconds between the deployer's status reads (default 1000). */
  readonly pollInterval?: number;
  /** Called after each status read with the LIST calls it took (for benchmarks). */
  readonly onPoll?: (listCalls: number) => void;
  /**
   * Each agent host's SSH host key (`ssh-ed25519 BASE64`) as the fleet knows it (its
   * `hostKey`, or its pinned published key): a host named here is believed only on reports its
   * key signed (status/report-signature.ts). A host not named is believed on any report.
   */
  readonly reportKeys?: ReadonlyMap<string, string>;
}

export class ReleaseWatcher {
  readonly #o: WatchSettings;

  constructor(settings: WatchSettings) {
    this.#o = settings;
  }

  /**
   * Watches `hosts` apply `signed` and resolves with each one's outcome, in order. A host
   * that reboots reports after its boot: `extraSeconds` on top of the offline timeout.
   */
  async watch(
    signed: SignedRelease,
    hosts: readonly string[],
    emit: (event: DeliveryEvent) => void,
    signal?: AbortSignal,
    extraSeconds = 0,
  ): Promise<Watched[]> {
    const { store, releases } = this.#o;
    const { channel, seq } = signed.release;
    const names = new Set(hosts);
    const outcomes = new Map<string, DeployOutcome>();
    const how = new Map<string, Watched["how"]>();
    const applying = new Set<string>();
    const started = Date.now();
    const deadline = started + (releases.offlineTimeout + extraSeconds) * 1000;
    const interval = this.#o.pollInterval ?? 1000;
    let told = started;
    let lastLiveness = 0;
    let lastLogRead = 0;
    const logs = new LogFollower((host, line) => emit({ type: "log", host, line }));
    const unbelieved = new Unbelieved((host, line) => emit({ type: "log", host, line }), seq);
    // A page of the junk a host writes under its own prefixes is read once, not at every round.
    const crowded = new CrowdedSegments();
    // An interrupted host is reported by the caller, once it knows where the host goes.
    const settle = (host: string, outcome: DeployOutcome, kind: Watched["how"]) => {
      outcomes.set(host, outcome);
      how.set(host, kind);
      if (kind !== "interrupted") emit({ type: "done", host, outcome });
    };
    for (const host of hosts) emit({ type: "phase", host, phase: "waiting" });
    while (outcomes.size < names.size) {
      if (signal?.aborted) {
        for (const host of names) {
          if (outcomes.has(host)) continue;
          const where = applying.has(host)
            ? `while its agent applied release ${seq}`
            : `before its agent took release ${seq}`;
          settle(
            host,
            {
              status: "failed",
              phase: applying.has(host) ? "switch" : "waiting",
              message: `${interruptReason(signal)} ${where}`,
              rolledBack: false,
            },
            "interrupted",
          );
        }
        break;
      }
      // A host whose agent is paused, or whose heartbeats stopped, is reported at once rather
      // than waited for until offlineTimeout (the LIST pages of the heartbeats: hosts/1,000).
      if (Date.now() - lastLiveness >= WAITING_EVERY_MS) {
        lastLiveness = Date.now();
        const beats = await readHeartbeats(store, crowded).catch(() => undefined);
        for (const host of names) {
          if (outcomes.has(host) || applying.has(host)) continue;
          const why = agentNotLive(host, beats?.hosts.get(host), new Date());
          if (why !== undefined) {
            settle(
              host,
              { status: "failed", phase: "waiting", message: why, rolledBack: false },
              "failed",
            );
          }
        }
        const waiting = [...names].filter((h) => !outcomes.has(h) && !applying.has(h));
        for (const [host, outcome] of await this.#overtaken(channel, seq, waiting)) {
          settle(host, outcome, "failed");
        }
        if (outcomes.size === names.size) break;
      }
      const progress = await readProgress(store, channel, seq, crowded);
      this.#o.onPoll?.(progress.listCalls);
      const finals: [string, ProgressEntry][] = [];
      const applyingKeys: [string, string][] = [];
      for (const [host, entry] of progress.hosts) {
        if (!names.has(host) || outcomes.has(host)) continue;
        if (entry.state === "applying") {
          if (!applying.has(host)) emit({ type: "phase", host, phase: "switch" });
          applying.add(host);
          applyingKeys.push([host, entry.key]);
        } else if (!unbelieved.known(entry)) finals.push([host, entry]);
      }
      // The log lines of hosts still applying, from their applying records: every
      // LOG_READ_EVERY_MS at most, DETAIL_READS hosts a round (the longest unread first).
      if (applyingKeys.length > 0 && Date.now() - lastLogRead >= LOG_READ_EVERY_MS) {
        lastLogRead = Date.now();
        const round = logs.pick(applyingKeys, DETAIL_READS);
        const read = await mapLimit(round, DETAIL_READS, ([, key]) => this.#record(key));
        round.forEach(([host], i) => {
          logs.show(host, read[i]?.log);
        });
      }
      // Each final report: its state, and the record (a success's generation and the system it
      // ran before, a failure's why): one GET per host, once per release (more for a host whose
      // report is not believed).
      const reports = await mapLimit(finals, DETAIL_READS, ([host, entry]) =>
        this.#final(host, entry, channel, seq),
      );
      finals.forEach(([host, entry], i) => {
        const report = reports[i] as FinalReport;
        if (report.kind === "unbelieved") {
          unbelieved.say(host, entry, report.why);
          return;
        }
        const { record } = report;
        // A refusal names the document it refused: one that only claimed this release's number
        // (a channel file written by someone without the release key) is not this release.
        const refused = report.state === "rejected" ? record?.refused : undefined;
        if (refused !== undefined && refused !== signed.digest) {
          unbelieved.say(
            host,
            entry,
            `it refused another document that claimed release ${seq} (${refused}), not this release (${signed.digest})`,
          );
          return;
        }
        if (report.state !== "success") {
          const outcome = this.#failedOutcome(host, record, report.unreadable);
          logs.show(host, record?.log);
          settle(host, outcome, "failed");
          return;
        }
        // A success marker counts when its record is this release's success on the system the
        // release names for the host: whoever can write the store could plant one under the
        // next release's number before it is published. Of an action that runs the system now
        // (switch, test), it must say the host runs it too. Else the host is waited for still
        // (its agent's own report, newer, wins), and its deadline holds.
        const wanted = signed.release.hosts[host]?.path;
        const runs = !actionActivatesNow(signed.release.action) || record?.current === wanted;
        if (
          record === undefined ||
          record.state !== "success" ||
          record.channel !== channel ||
          record.seq !== seq ||
          (wanted !== undefined && (record.desired !== wanted || !runs))
        ) {
          return;
        }
        logs.show(host, record.log);
        const outcome: DeployOutcome = {
          status: "activated",
          generation: record.generation ?? undefined,
          previous: record.previous ?? undefined,
          ...(record.pruned ? { pruned: record.pruned } : {}),
          // What the host fetched by delta to get the system (carried while it runs it).
          ...(record.delta ? { delta: record.delta } : {}),
        };
        settle(host, outcome, "activated");
      });
      if (outcomes.size === names.size) break;
      const now = Date.now();
      if (now >= deadline) {
        for (const host of names) {
          if (outcomes.has(host)) continue;
          const outcome: DeployOutcome = {
            status: "failed",
            phase: applying.has(host) ? "switch" : "waiting",
            message:
              unbelieved.of(host) ??
              (applying.has(host)
                ? `the agent started release ${seq} but did not finish within ${releases.offlineTimeout + extraSeconds}s`
                : `no report from the agent within ${releases.offlineTimeout}s: offline, paused, or not following channel ${channel}`),
            rolledBack: false,
          };
          settle(host, outcome, "failed");
        }
        break;
      }
      if (now - told >= WAITING_EVERY_MS) {
        told = now;
        const silent = hosts.filter((h) => !outcomes.has(h) && !applying.has(h));
        if (silent.length > 0) {
          emit({ type: "waiting", hosts: silent, elapsed: Math.round((now - started) / 1000) });
        }
      }
      await delay(interval, undefined, signal ? { signal } : {}).catch(() => {});
    }
    return hosts.map((name) => ({
      outcome: outcomes.get(name) as DeployOutcome,
      how: how.get(name) ?? "failed",
    }));
  }

  /**
   * The hosts of `waiting` whose agent took a release of the channel newer than `seq` (another
   * deploy or publisher's, published after this one) without reporting on this one: it never
   * will, and waiting for it until the offline timeout would call a live agent offline. Their
   * records say so; read only once the channel names a newer release (one GET, then one a host).
   * Each is refused, not failed: nothing is rolled back, and the newer release stays.
   */
  async #overtaken(
    channel: string,
    seq: number,
    waiting: readonly string[],
  ): Promise<Map<string, DeployOutcome>> {
    const found = new Map<string, DeployOutcome>();
    if (waiting.length === 0) return found;
    const head = await readChannel(this.#o.store, channel).catch(() => undefined);
    const newest = head?.status === "found" ? claimedSeq(head.bytes) : undefined;
    if (newest === undefined || newest <= seq) return found;
    const records = await mapLimit(waiting, DETAIL_READS, (host) =>
      readStatus(this.#o.store, host).catch(() => undefined),
    );
    waiting.forEach((host, i) => {
      const record = records[i];
      if (record?.channel !== channel || record.seq === null || record.seq <= seq) return;
      found.set(host, {
        status: "skipped",
        reason: "refused",
        message: `its agent took release ${record.seq} of channel ${channel}, published after this one (release ${seq}), and never applied this one: another deploy or publisher got there first`,
      });
    });
    return found;
  }

  /**
   * A host's final report (success, failed, rejected) as the listing names it. For a host whose
   * key the fleet knows, only a report that key signed about this release and state counts:
   * when the marker the listing chose is not one (a newer marker someone else wrote over it,
   * or one that is gone), the host's other final reports are judged, and the newest believed
   * one counts; none: why not. For another host, its record as it reads; one that cannot be
   * read leaves a failure's why out (the listing already says it failed) instead of failing
   * the wave.
   */
  async #final(
    host: string,
    entry: ProgressEntry,
    channel: string,
    seq: number,
  ): Promise<FinalReport> {
    const hostKey = this.#o.reportKeys?.get(host);
    if (hostKey === undefined) {
      let unreadable: string | undefined;
      const record = await readRecord(this.#o.store, entry.key).catch((err: unknown) => {
        unreadable = err instanceof Error ? err.message : String(err);
        return undefined;
      });
      return { kind: "report", state: entry.state, record, unreadable };
    }
    type Judged = { readonly record: StatusRecord } | { readonly why: string };
    const judge = async (state: StatusState, key: string): Promise<Judged> => {
      try {
        const read = await readJudgedReport(this.#o.store, key, hostKey, {
          host,
          channel,
          seq,
          state,
        });
        if (read === undefined) return { why: "the report is gone" };
        return read.trusted ? { record: read.record } : { why: read.why };
      } catch (err) {
        return { why: err instanceof Error ? err.message : String(err) };
      }
    };
    const chosen = await judge(entry.state, entry.key);
    if ("record" in chosen) return { kind: "report", state: entry.state, record: chosen.record };
    const others = FINAL_STATES.filter((s) => s !== entry.state);
    const read = await Promise.all(
      others.map((state) => judge(state, progressKey(channel, seq, host, state))),
    );
    const believed = read
      .flatMap((r) => ("record" in r ? [r.record] : []))
      .sort((a, b) => Date.parse(b.updatedAt) - Date.parse(a.updatedAt))[0];
    return believed === undefined
      ? { kind: "unbelieved", why: chosen.why }
      : { kind: "report", state: believed.state, record: believed };
  }

  /** A failed host's outcome, from its record (undefined: it could not be read, `unreadable`). */
  #failedOutcome(
    host: string,
    record: StatusRecord | undefined,
    unreadable: string | undefined,
  ): DeployOutcome {
    const refused = record?.state === "rejected";
    const said = refused ? "rejected" : "failed";
    const outcome: DeployOutcome = {
      status: "failed",
      // A release refused on verifying it failed at the door; one refused for its secrets, there.
      phase:
        record?.phase === "verify" || (refused && record?.phase == null)
          ? "connect"
          : (record?.phase ?? "switch"),
      message:
        olderThanDeltas(record?.error) ??
        (unreadable === undefined
          ? `${host} reported ${said} with no reason`
          : `${host} reported ${said}; its record cannot be read: ${unreadable.slice(0, 400)}`),
      rolledBack: !refused && record?.rolledBack === true,
    };
    return outcome;
  }

  /**
   * A host's record, for details only (its generation, the system it ran before): the outcome
   * itself comes from the progress listing, so a record that cannot be read or parsed (a store
   * error, or a host that wrote garbage) leaves the details out instead of failing the deploy.
   */
  async #record(key: string): Promise<StatusRecord | undefined> {
    return readRecord(this.#o.store, key).catch(() => undefined);
  }
}

/**
 * Shows each host's log lines once, from the tails its records carry (status.ts `log`): a line
 * is shown when its number is past the last shown for that host.
 */
class LogFollower {
  readonly #next = new Map<string, number>();
  readonly #read = new Map<string, number>();

  constructor(private readonly emit: (host: string, line: string) => void) {}

  show(host: string, log: HostLog | undefined): void {
    if (log === undefined) return;
    const next = this.#next.get(host) ?? 0;
    log.lines.forEach((line, i) => {
      if (log.from + i >= next) this.emit(host, line);
    });
    this.#next.set(host, Math.max(next, log.from + log.lines.length));
  }

  /** Of `hosts`, the `count` read longest ago (never read first). */
  pick<T extends readonly [string, ...unknown[]]>(hosts: readonly T[], count: number): T[] {
    const order = [...hosts].sort(
      (a, b) => (this.#read.get(a[0]) ?? 0) - (this.#read.get(b[0]) ?? 0),
    );
    const picked = order.slice(0, count);
    for (const [host] of picked) this.#read.set(host, Date.now());
    return picked;
  }
}

/**
 * Reports not believed (not signed by their host's key, or copied from elsewhere): each is said
 * once among the host's lines, and the newest one's why names the host's failure if no report
 * it signed comes before the deadline. The host is waited for meanwhile: its agent's own
 * report may still come. A marker judged so is judged again only when it changes, or after
 * REJUDGE_MS (its host may have written another final report meanwhile, which the listing
 * shows only when it is the newest).
 */
class Unbelieved {
  readonly #why = new Map<string, string>();
  /** Marker key → its time when judged, and when it was judged. */
  readonly #judged = new Map<string, { at: number; when: number }>();

  constructor(
    private readonly emit: (host: string, line: string) => void,
    private readonly seq: number,
  ) {}

  say(host: string, entry: ProgressEntry, why: string): void {
    const line = `a report of ${entry.state} on release ${this.seq} is not believed: ${why}; waiting for one to believe`;
    if (this.#why.get(host) !== line) this.emit(host, line);
    this.#why.set(host, line);
    this.#judged.set(entry.key, { at: entry.at.getTime(), when: Date.now() });
  }

  /** Whether the marker was judged not to be believed as it is now, a moment ago. */
  known(entry: ProgressEntry): boolean {
    const judged = this.#judged.get(entry.key);
    return (
      judged !== undefined &&
      judged.at === entry.at.getTime() &&
      Date.now() - judged.when < REJUDGE_MS
    );
  }

  /** What the host's failure says when it never sent a report to be believed. */
  of(host: string): string | undefined {
    const line = this.#why.get(host);
    if (line === undefined) return undefined;
    const said = line.replace(/; waiting for one to believe$/, "");
    // A host whose key changed (reinstalled) signs with its new key.
    const changed = / host key \(or was edited since\)$/.test(said)
      ? "; if its host key changed, check the new one out of band, then give it as the host's hostKey, or pin it with 'nixship secrets rekey --replace-host-keys'"
      : "";
    return `no report from ${host}'s agent to be believed; ${said}${changed}`;
  }
}

/** A host's final report as the watch takes it: believed (its state and record), or why not. */
type FinalReport =
  | {
      readonly kind: "report";
      readonly state: StatusState;
      readonly record: StatusRecord | undefined;
      /** Why the record could not be read (a host whose key the fleet does not know). */
      readonly unreadable?: string | undefined;
    }
  | { readonly kind: "unbelieved"; readonly why: string };

/** The states a report ends an apply with. */
const FINAL_STATES: readonly StatusState[] = ["success", "failed", "rejected"];

/** A watched host's outcome, and how it came: the host's report, or the deployer's interrupt. */
export interface Watched {
  readonly outcome: DeployOutcome;
  readonly how: "activated" | "failed" | "interrupted";
}

/**
 * A refusal as the deploy shows it: an agent older than deltas refuses a release whose entries
 * carry the delta tool (an unknown key to it), which is said, with the way past it.
 */
function olderThanDeltas(error: string | null | undefined): string | undefined {
  if (error === null || error === undefined || !/deltaTool: unknown key/.test(error)) {
    return error ?? undefined;
  }
  return `${error}: this host's agent is older than deltas (docs/agent.md, "Deltas"): update it with releases that carry no delta tool (deploy --no-delta the channel's hosts, or the policy's "deltas": false), then deltas reach it`;
}
