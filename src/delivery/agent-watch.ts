// Watching one release of agent hosts: the deployer reads the release's status markers (LIST
// calls) and the agents' heartbeats until every host of the watched ones reports, fails, stays
// silent past the offline timeout, or an interrupt comes; each host's log lines are shown once.
import { setTimeout as delay } from "node:timers/promises";
import type { ReleaseSettings } from "../fleet/fleet.js";
import type { SignedRelease } from "../release/release.js";
import { CrowdedSegments } from "../status/crowded-segments.js";
import { agentNotLive } from "../status/heartbeat.js";
import type { ReportPlace } from "../status/report-signature.js";
import type { HostLog, StatusRecord, StatusState } from "../status/status.js";
import {
  readHeartbeats,
  readJudgedReport,
  readProgress,
  readRecord,
} from "../status/status-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { interruptReason } from "../util/interrupt-reason.js";
import { mapLimit } from "../util/pool.js";
import type { DeliveryEvent, DeployOutcome } from "./delivery.js";

/** How often the deployer says which hosts have not reported yet. */
const WAITING_EVERY_MS = 5000;
/** Milliseconds between two reads of the log lines of the hosts applying a release. */
const LOG_READ_EVERY_MS = 2000;
/** Success records read at once for their outcome's generation and previous system. */
const DETAIL_READS = 32;

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
        if (outcomes.size === names.size) break;
      }
      const progress = await readProgress(store, channel, seq, crowded);
      this.#o.onPoll?.(progress.listCalls);
      const succeeded: [string, string][] = [];
      const applyingKeys: [string, string][] = [];
      for (const [host, entry] of progress.hosts) {
        if (!names.has(host) || outcomes.has(host)) continue;
        if (entry.state === "applying") {
          if (!applying.has(host)) emit({ type: "phase", host, phase: "switch" });
          applying.add(host);
          applyingKeys.push([host, entry.key]);
        } else if (entry.state === "success") succeeded.push([host, entry.key]);
        else {
          const failed = await this.#failed(host, entry.key, entry.state, seq, channel);
          if ("unbelieved" in failed) {
            unbelieved.say(host, entry.state, failed.unbelieved);
            continue;
          }
          logs.show(host, failed.record?.log);
          settle(host, failed.outcome, "failed");
        }
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
      // The generation and the system each host ran before are in its success record: one GET
      // per host, once per release.
      const records = await mapLimit(succeeded, DETAIL_READS, ([host, key]) =>
        this.#report(host, key, { host, channel, seq, state: "success" }),
      );
      succeeded.forEach(([host], i) => {
        const read = records[i];
        if (read !== undefined && "unbelieved" in read) {
          unbelieved.say(host, "success", read.unbelieved);
          return;
        }
        const record = read;
        // A success marker counts when its record is this release's success on the system the
        // release names for the host: whoever can write the store could plant one under the
        // next release's number before it is published. Else the host is waited for still (its
        // agent's own report, newer, wins), and its deadline holds.
        const wanted = signed.release.hosts[host]?.path;
        if (
          record === undefined ||
          record.state !== "success" ||
          record.channel !== channel ||
          record.seq !== seq ||
          (wanted !== undefined && record.desired !== wanted)
        ) {
          return;
        }
        logs.show(host, record?.log);
        const outcome: DeployOutcome = {
          status: "activated",
          generation: record?.generation ?? undefined,
          previous: record?.previous ?? undefined,
          ...(record?.pruned ? { pruned: record.pruned } : {}),
          // What the host fetched by delta to get the system (carried while it runs it).
          ...(record?.delta ? { delta: record.delta } : {}),
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

  async #failed(
    host: string,
    key: string,
    state: StatusState,
    seq: number,
    channel: string,
  ): Promise<
    { outcome: DeployOutcome; record: StatusRecord | undefined } | { unbelieved: string }
  > {
    // The listing already says the host failed; the record only says why, so one that cannot
    // be read is reported as such rather than failing the wave. A host whose key the fleet
    // knows is believed on a report it signed only.
    let unreadable: string | undefined;
    const hostKey = this.#o.reportKeys?.get(host);
    const record = await (hostKey === undefined
      ? readRecord(this.#o.store, key)
      : readJudgedReport(this.#o.store, key, hostKey, { host, channel, seq, state })
    ).catch((err: unknown) => {
      unreadable = err instanceof Error ? err.message : String(err);
      return undefined;
    });
    if (record !== undefined && "trusted" in record) {
      if (!record.trusted) return { unbelieved: record.why };
      return this.#failedOutcome(host, record.record, undefined);
    }
    if (hostKey !== undefined && unreadable !== undefined) return { unbelieved: unreadable };
    return this.#failedOutcome(host, record, unreadable);
  }

  #failedOutcome(
    host: string,
    record: StatusRecord | undefined,
    unreadable: string | undefined,
  ): { outcome: DeployOutcome; record: StatusRecord | undefined } {
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
    return { outcome, record };
  }

  /**
   * A host's record, for details only (its generation, the system it ran before): the outcome
   * itself comes from the progress listing, so a record that cannot be read or parsed (a store
   * error, or a host that wrote garbage) leaves the details out instead of failing the deploy.
   */
  async #record(key: string): Promise<StatusRecord | undefined> {
    return readRecord(this.#o.store, key).catch(() => undefined);
  }

  /**
   * A host's report at `key`: for a host whose key the fleet knows, believed only when signed
   * by it and about `place` (else why not); for another, as #record reads it.
   */
  async #report(
    host: string,
    key: string,
    place: ReportPlace,
  ): Promise<StatusRecord | { unbelieved: string } | undefined> {
    const hostKey = this.#o.reportKeys?.get(host);
    if (hostKey === undefined) return this.#record(key);
    try {
      const judged = await readJudgedReport(this.#o.store, key, hostKey, place);
      if (judged === undefined) return undefined;
      return judged.trusted ? judged.record : { unbelieved: judged.why };
    } catch (err) {
      return { unbelieved: err instanceof Error ? err.message : String(err) };
    }
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
 * report, written over the same marker, may still come.
 */
class Unbelieved {
  readonly #why = new Map<string, string>();

  constructor(
    private readonly emit: (host: string, line: string) => void,
    private readonly seq: number,
  ) {}

  say(host: string, state: StatusState, why: string): void {
    const line = `a report of ${state} on release ${this.seq} is not believed: ${why}; waiting for one its host key signed`;
    if (this.#why.get(host) !== line) this.emit(host, line);
    this.#why.set(host, line);
  }

  /** What the host's failure says when it never sent a report to be believed. */
  of(host: string): string | undefined {
    const line = this.#why.get(host);
    if (line === undefined) return undefined;
    const said = line.replace(/; waiting for one its host key signed$/, "");
    // A host whose key changed (reinstalled) signs with its new key.
    const changed = / host key \(or was edited since\)$/.test(said)
      ? "; if its host key changed, check the new one out of band, then give it as the host's hostKey, or pin it with 'nixship secrets rekey --replace-host-keys'"
      : "";
    return `no report from ${host}'s agent that its host key signed; ${said}${changed}`;
  }
}

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
