// The agent delivery mode: the deployer never reaches a host. Each wave is a signed release of
// the channel, and the deployer watches the wave's status markers (status.ts) with LIST calls
// until every host of the wave reports or the offline timeout passes. The channel is explicit
// and never names, for a host, a system that failed there (channel/host-history.ts): the selected
// hosts get their fleet file's system whether or not they already run it, other hosts keep
// their entry unless it failed on them, and a host that failed is named back to the last system
// confirmed healthy on it by a rollback release. `nixship rollback` is a rollback release too:
// each host goes to the confirmed system before the one the channel names for it.
import { setTimeout as delay } from "node:timers/promises";
import { HISTORY_RELEASES, type HistoryRead, readHistory } from "../channel/history-store.js";
import {
  carryEntry,
  type HostHistory,
  hasFailed,
  lastConfirmed,
  stepBack,
} from "../channel/host-history.js";
import { InputError, UsageError } from "../errors.js";
import type { Action } from "../fleet/action.js";
import type { FleetHost, HealthChecks, ReleaseSettings } from "../fleet/fleet.js";
import type { RollbackTarget } from "../fleet/rollback-target.js";
import type { HostSecrets } from "../host/activation-session.js";
import { type PublicKey, parsePublicKey, type SecretKey } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import {
  canonicalJson,
  checksFor,
  type Release,
  type ReleaseHost,
  type ReleaseHostPolicy,
  type ReleaseKind,
  type ReleaseReboot,
  type SignedRelease,
  verifyRelease,
} from "../release/release.js";
import {
  channelKey,
  highestListed,
  publishRelease,
  readChannel,
  readSignedRelease,
} from "../release/release-store.js";
import { type Heartbeat, livenessOf } from "../status/heartbeat.js";
import { type HostLog, hostStatusKey, progressKey, type StatusRecord } from "../status/status.js";
import { readHeartbeats, readProgress, readRecord, readStatus } from "../status/status-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { interruptReason } from "../util/interrupt-reason.js";
import { mapLimit } from "../util/pool.js";
import type {
  ChannelHost,
  Delivery,
  DeliveryEvent,
  DeployOutcome,
  HostStatus,
  RollbackOutcome,
  WaveContext,
  WaveHost,
} from "./delivery.js";
import { putSecretsBundle } from "./secrets-store.js";

/** How often the deployer says which hosts have not reported yet. */
const WAITING_EVERY_MS = 5000;
/** Milliseconds between two reads of the log lines of the hosts applying a release. */
const LOG_READ_EVERY_MS = 2000;
/** Success records read at once for their outcome's generation and previous system. */
const DETAIL_READS = 32;

export interface AgentDeliveryOptions {
  readonly store: ObjectStore;
  readonly releases: ReleaseSettings;
  /** Signs the releases; needed to deploy, not to read status. */
  readonly key: SecretKey | undefined;
  /** Put in every release: what the agents check after switching (URLs keep {address}). */
  readonly health: HealthChecks;
  readonly confirmTimeout: number;
  /** Put in every release: generations hosts keep after a confirmed activation (0: all). */
  readonly keepGenerations?: number;
  /**
   * A host's own checks (the fleet's policy per role): put in its entry where they differ from
   * the release's. Absent: every host has the release's.
   */
  readonly policyOf?: (host: string, path: StorePath) => ReleaseHostPolicy | undefined;
  /** Milliseconds between the deployer's status reads (default 1000). */
  readonly pollInterval?: number;
  /** Called after each status read with the LIST calls it took (for benchmarks). */
  readonly onPoll?: (listCalls: number) => void;
  /** `--allow-failed`: the selected hosts may be named a system that failed on them. */
  readonly allowFailed?: boolean;
  /** Releases the per-host history looks back over (default HISTORY_RELEASES). */
  readonly historyReleases?: number;
}

export class AgentDelivery implements Delivery {
  readonly #o: AgentDeliveryOptions;
  /** Every host's entry as the channel's next release should have it. */
  #entries: Record<string, ReleaseHost> | undefined;
  readonly #published: SignedRelease[] = [];
  /** The channel's per-host history, read once and again after a wave with failures. */
  #history: HistoryRead | undefined;
  /** Entries a release replaced because they named a failed system, for the operator. */
  readonly #notes: string[] = [];

  /** The release keys the fleet's agents trust: what the deployer verifies releases with. */
  readonly #trustedKeys: readonly PublicKey[];

  constructor(options: AgentDeliveryOptions) {
    this.#o = options;
    this.#trustedKeys = options.releases.publicKeys.map((k) => parsePublicKey(k));
  }

  /** The releases this deploy published, in order. */
  get published(): readonly SignedRelease[] {
    return this.#published;
  }

  async status(host: FleetHost): Promise<HostStatus> {
    const record = await readStatus(this.#o.store, host.name);
    return {
      reachable: true,
      current: record?.current ?? undefined,
      profile: undefined,
      generation: record?.generation ?? undefined,
      generations: [],
      pending: record?.state === "applying" ? (record.desired ?? undefined) : undefined,
      secrets: record?.secrets ?? undefined,
      ...(record?.reboot ? { reboot: record.reboot } : {}),
      reported: record !== undefined,
      // A system that failed and that the host could not leave: it runs it still.
      ...(record?.state === "failed" &&
      record.rolledBack !== true &&
      record.current !== null &&
      record.current === record.desired
        ? {
            failed: {
              path: record.current,
              since: Math.floor(Date.parse(record.updatedAt) / 1000),
              reason: record.error ?? "failed",
            },
          }
        : {}),
    };
  }

  /** The capability: the releases this deploy published, in order. */
  publishedReleases(): { readonly channel: string; readonly seq: number }[] {
    return this.#published.map(({ release }) => ({ channel: release.channel, seq: release.seq }));
  }

  /** The capability: one release with every host, not watched (`deploy --async`). */
  async publishOnly(
    hosts: readonly WaveHost[],
  ): Promise<{ channel: string; seq: number; digest: string }> {
    const { release, digest } = await this.#publishWave(hosts);
    return { channel: release.channel, seq: release.seq, digest };
  }

  /** The capability: refuses failed systems, and names the hosts that run theirs already. */
  async planChannel(hosts: readonly ChannelHost[]): Promise<readonly string[]> {
    const history = await this.#readHistory();
    this.#refuseFailed(history, hosts);
    const entries = await this.#currentEntries();
    for (const { host, path, runs, secrets } of hosts) {
      if (runs) entries[host] = await this.#entry(host, path, secrets);
    }
    return [...this.#notes];
  }

  /** The capability: publishes the planned entries if no release did and the channel differs. */
  async settleChannel(
    action: Action,
  ): Promise<{ channel: string; seq: number; digest: string } | undefined> {
    if (this.#published.length > 0) return undefined;
    const entries = await this.#currentEntries();
    const named = (await this.#channelRelease())?.release.hosts ?? {};
    const same =
      Object.keys(entries).length === Object.keys(named).length &&
      Object.entries(entries).every(([host, e]) => sameEntry(named[host], e));
    if (same) return undefined;
    const { release, digest } = await this.#publish({ ...entries }, "deploy", action);
    return { channel: release.channel, seq: release.seq, digest };
  }

  /**
   * `release refresh`: the channel's release signed again, as a new release of kind refresh
   * with the same action, health checks and entries (an entry naming a system that failed on
   * its host is replaced, as in every release) and a new `expires`. Hosts already run their
   * entries, so they only report. Resolves with the release it replaced and the new one.
   */
  async refreshChannel(): Promise<{ replaced: SignedRelease; release: SignedRelease }> {
    const current = await this.#channelRelease();
    if (current === undefined) {
      throw new UsageError(
        `channel ${this.#o.releases.channel} has no release signed by a release key of the fleet: there is nothing to refresh`,
        "publish one with 'nixship release publish' or 'nixship deploy --via agent'",
      );
    }
    const entries = await this.#currentEntries();
    const { action, health, confirmTimeout, keepGenerations } = current.release;
    const release = await this.#publish({ ...entries }, "refresh", action, {
      health,
      confirmTimeout,
      ...(keepGenerations ? { keepGenerations } : {}),
    });
    return { replaced: current, release };
  }

  /** Publishes one release naming the wave's hosts' new systems. */
  async #publishWave(wave: readonly WaveHost[]): Promise<SignedRelease> {
    this.#refuseFailed(
      await this.#readHistory(),
      wave.map(({ host, request }) => ({ host: host.name, path: request.path, runs: false })),
    );
    const entries = await this.#currentEntries();
    for (const { host, request } of wave) {
      entries[host.name] = await this.#entry(
        host.name,
        request.path,
        request.secrets,
        request.reboot,
      );
    }
    const action = wave[0]?.request.action ?? "switch";
    return this.#publish(entries, "deploy", action);
  }

  async deployWave(
    wave: readonly WaveHost[],
    emit: (event: DeliveryEvent) => void,
    context: WaveContext,
  ): Promise<DeployOutcome[]> {
    // What the channel named before this wave: where an interrupt takes the hosts not done.
    const before = { ...(await this.#currentEntries()) };
    const release = await this.#publishWave(wave);
    const watched = await this.#watch(
      release,
      wave.map((w) => w.host.name),
      emit,
      context.signal,
      // A host that reboots reports after its boot: its reboot timeout on top.
      Math.max(0, ...wave.map((w) => w.request.reboot?.timeout ?? 0)),
    );
    const outcomes = watched.map((w) => w.outcome);
    // Hosts that failed went back to what they ran; the channel names for each the last system
    // confirmed healthy on it (none when none is known: the agent then leaves it be). Hosts an
    // interrupt left not done get back the entry the channel had for them before the wave
    // (none when it had none), so an agent that applies late never applies the aborted system.
    const failed = wave.filter((_, i) => watched[i]?.how === "failed");
    const withdrawn = wave.filter((_, i) => watched[i]?.how === "interrupted");
    if (failed.length === 0 && withdrawn.length === 0) return outcomes;
    this.#history = undefined;
    const history = failed.length > 0 ? await this.#readHistory() : undefined;
    const entries = { ...(this.#entries ?? {}) };
    for (const { host, request } of failed) {
      const back = lastConfirmed(history?.hosts.get(host.name) ?? [], request.path);
      // A rollback changes the system only; the host keeps the secrets the entry gives it.
      if (back === undefined) delete entries[host.name];
      else entries[host.name] = { ...entries[host.name], path: back };
    }
    for (const { host } of withdrawn) {
      const earlier = before[host.name];
      if (earlier === undefined) delete entries[host.name];
      else entries[host.name] = earlier;
    }
    const back = await this.#publish(entries, "rollback", release.release.action);
    return outcomes.map((o, i) => {
      const host = wave[i]?.host.name ?? "";
      if (watched[i]?.how !== "interrupted" || o.status !== "failed") return o;
      const outcome = {
        ...o,
        message: `${o.message}; release ${back.release.seq} withdraws release ${release.release.seq} for it: its agent goes back to what the channel named before (${earlier(before[host])}) when it next polls`,
      };
      emit({ type: "done", host, outcome });
      return outcome;
    });
  }

  /**
   * Publishes one rollback release that names, for each host, the system `to` picks, or else
   * the last system confirmed healthy on it before the one the channel names for it (so
   * repeated rollbacks walk back and never flip), then watches the hosts apply it.
   */
  async rollbackHosts(
    hosts: readonly FleetHost[],
    to: RollbackTarget | undefined,
  ): Promise<RollbackOutcome[]> {
    const { channel } = this.#o.releases;
    const current = await this.#channelRelease();
    if (current === undefined) {
      return hosts.map(() => ({
        status: "failed",
        message: `channel ${channel} has no release yet: there is nothing to go back to`,
      }));
    }
    const history = await this.#readHistory();
    const entries = await this.#currentEntries();
    const outcomes = new Map<string, RollbackOutcome>();
    const wave: string[] = [];
    for (const { name } of hosts) {
      const target = await this.#rollbackTarget(name, to, current.release, history);
      if ("why" in target) {
        outcomes.set(name, { status: "failed", message: target.why });
        continue;
      }
      const past = history.hosts.get(name) ?? [];
      if (!this.#o.allowFailed && hasFailed(past, target.path)) {
        outcomes.set(name, { status: "failed", message: failedMessage(name, target.path, past) });
        continue;
      }
      entries[name] = { ...entries[name], path: target.path };
      wave.push(name);
    }
    if (wave.length > 0) {
      const signed = await this.#publish(entries, "rollback", "switch");
      const results = (await this.#watch(signed, wave, () => {})).map((w) => w.outcome);
      for (const [i, name] of wave.entries()) {
        const result = results[i];
        const path: string = entries[name]?.path ?? "";
        if (result?.status !== "activated") {
          outcomes.set(name, {
            status: "failed",
            message: result?.message ?? "no outcome",
          });
          continue;
        }
        // The success record's generation, as the wave read it (none if it could not be read).
        outcomes.set(name, { status: "rolled-back", generation: result.generation ?? null, path });
      }
    }
    return hosts.map((h) => outcomes.get(h.name) as RollbackOutcome);
  }

  /** The system a rollback sends `name` to, or why there is none. */
  async #rollbackTarget(
    name: string,
    to: RollbackTarget | undefined,
    current: Release,
    history: HistoryRead,
  ): Promise<{ path: StorePath } | { why: string }> {
    const { channel } = current;
    const past = history.hosts.get(name) ?? [];
    const passed =
      history.untrusted.length === 0
        ? ""
        : ` (passed over release${history.untrusted.length === 1 ? "" : "s"} ${history.untrusted.join(", ")}: not signed by a trusted release key)`;
    if (to === undefined) {
      const named = current.hosts[name]?.path;
      if (named === undefined) {
        return {
          why: `release ${current.seq} of channel ${channel} does not name ${name}: it follows no system of this channel yet`,
        };
      }
      const back = stepBack(past, name, named);
      return back.status === "found" ? { path: back.path } : { why: `${back.why}${passed}` };
    }
    switch (to.kind) {
      case "path":
        return { path: to.path };
      case "release": {
        const release = await this.#verifiedRelease(to.seq);
        if (release === "absent") return { why: `channel ${channel} has no release ${to.seq}` };
        if (release === "untrusted") {
          return {
            why: `release ${to.seq} of channel ${channel} is not signed by a trusted release key`,
          };
        }
        const path = release.release.hosts[name]?.path;
        return path !== undefined
          ? { path }
          : { why: `release ${to.seq} of channel ${channel} does not name ${name}` };
      }
      case "generation":
        return this.#generationSystem(name, to.generation, past, channel);
    }
  }

  /**
   * The system of generation `generation` as the host reported it: its latest record, else the
   * success records of the releases in its history (one GET each, newest first, bounded by
   * the history's releases).
   */
  async #generationSystem(
    name: string,
    generation: number,
    past: HostHistory,
    channel: string,
  ): Promise<{ path: StorePath } | { why: string }> {
    const latest = await this.#record(hostStatusKey(name));
    if (latest?.generation === generation && latest.current !== null) {
      return { path: latest.current as StorePath };
    }
    for (const e of [...past].reverse()) {
      if (e.outcome !== "success") continue;
      const record = await this.#record(progressKey(channel, e.seq, name, "success"));
      if (record?.generation === generation) return { path: e.path };
    }
    const last = latest?.generation ?? null;
    return {
      why: `${name} did not report generation ${generation} in the last ${this.#o.historyReleases ?? HISTORY_RELEASES} releases of channel ${channel}${last === null ? "" : ` (it last reported generation ${last})`}; give --to release:N or --to /nix/store/…`,
    };
  }

  /** Refuses, naming host, system and flag, a system that failed on its host. */
  #refuseFailed(history: HistoryRead, hosts: readonly ChannelHost[]): void {
    if (this.#o.allowFailed === true) return;
    const bad = hosts.filter(({ host, path }) => hasFailed(history.hosts.get(host) ?? [], path));
    if (bad.length === 0) return;
    throw new UsageError(
      bad
        .map(({ host, path }) => failedMessage(host, path, history.hosts.get(host) ?? []))
        .join("; "),
      "a release never names, for a host, a system that failed on it: fix the system, or pass --allow-failed to try it there again on purpose",
    );
  }

  async #readHistory(): Promise<HistoryRead> {
    this.#history ??= await readHistory(this.#o.store, {
      channel: this.#o.releases.channel,
      trustedKeys: this.#trustedKeys,
      ...(this.#o.historyReleases !== undefined ? { releases: this.#o.historyReleases } : {}),
    });
    return this.#history;
  }

  async #watch(
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
        const beats = await readHeartbeats(store).catch(() => undefined);
        for (const host of names) {
          if (outcomes.has(host) || applying.has(host)) continue;
          const why = notLive(host, beats?.hosts.get(host), new Date());
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
      const progress = await readProgress(store, channel, seq);
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
          const { outcome, record } = await this.#failed(host, entry.key);
          logs.show(host, record?.log);
          settle(host, outcome, "failed");
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
      const records = await mapLimit(succeeded, DETAIL_READS, ([, key]) => this.#record(key));
      succeeded.forEach(([host], i) => {
        const record = records[i];
        logs.show(host, record?.log);
        const outcome: DeployOutcome = {
          status: "activated",
          generation: record?.generation ?? undefined,
          previous: record?.previous ?? undefined,
          ...(record?.pruned ? { pruned: record.pruned } : {}),
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
            message: applying.has(host)
              ? `the agent started release ${seq} but did not finish within ${releases.offlineTimeout + extraSeconds}s`
              : `no report from the agent within ${releases.offlineTimeout}s: offline, paused, or not following channel ${channel}`,
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
  ): Promise<{ outcome: DeployOutcome; record: StatusRecord | undefined }> {
    // The listing already says the host failed; the record only says why, so one that cannot
    // be read is reported as such rather than failing the wave.
    let unreadable: string | undefined;
    const record = await readRecord(this.#o.store, key).catch((err: unknown) => {
      unreadable = err instanceof Error ? err.message : String(err);
      return undefined;
    });
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
        record?.error ??
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
   * The channel's entries as they stand, each carried over unless it names a system that
   * failed on its host (first call); then as this deploy left them.
   */
  async #currentEntries(): Promise<Record<string, ReleaseHost>> {
    if (this.#entries !== undefined) return this.#entries;
    const current = (await this.#channelRelease())?.release;
    const history = await this.#readHistory();
    const entries: Record<string, ReleaseHost> = {};
    for (const [name, entry] of Object.entries(current?.hosts ?? {})) {
      const carried = carryEntry(history.hosts.get(name), entry);
      if (carried.entry !== undefined) entries[name] = carried.entry;
      if (carried.status === "replaced") {
        this.#notes.push(
          carried.entry === undefined
            ? `${name}: release ${current?.seq} named ${carried.failed}, which failed there, and no system was confirmed on ${name} in the releases read: the new release names none for it (its agent leaves it on what it runs)`
            : `${name}: release ${current?.seq} named ${carried.failed}, which failed there: the new release names its last confirmed system ${carried.entry.path}`,
        );
      }
    }
    this.#entries = entries;
    return entries;
  }

  /**
   * The channel's current release, verified against the fleet's release keys: its entries are
   * signed again into the next release, so what someone who can write the bucket but holds no
   * release key planted there must never be laundered by it. When the channel does not
   * verify, the newest release that does stands in for it (the agents refused the planted
   * one too), so the next release repairs the channel.
   */
  async #channelRelease(): Promise<SignedRelease | undefined> {
    const { store, releases } = this.#o;
    const current = await readChannel(store, releases.channel);
    if (current.status !== "found") return undefined;
    try {
      return verifyRelease(current.bytes, this.#trustedKeys, channelKey(releases.channel));
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      // Planted (the agents refused it too): carry on from the newest release that verifies.
      for (let seq = await highestListed(store, releases.channel); seq >= 1; seq--) {
        const older = await this.#verifiedRelease(seq);
        if (typeof older !== "string") return older;
      }
      return undefined;
    }
  }

  /** Release `seq` of the channel if a trusted release key signed it; else why not. */
  #verifiedRelease(seq: number): Promise<SignedRelease | "absent" | "untrusted"> {
    return readSignedRelease(this.#o.store, this.#o.releases.channel, seq, this.#trustedKeys);
  }

  /**
   * A host's entry: its system, and its secrets bundle (stored first, under its digest, which
   * the entry signs); no secrets: the agent leaves the host's secrets alone.
   */
  async #entry(
    host: string,
    path: StorePath,
    secrets: HostSecrets | undefined,
    reboot?: ReleaseReboot,
  ): Promise<ReleaseHost> {
    const policy = this.#ownPolicy(host, path);
    const own = {
      ...(policy === undefined ? {} : { policy }),
      ...(reboot === undefined
        ? {}
        : { reboot: { timeout: reboot.timeout, rollback: reboot.rollback } }),
    };
    if (secrets === undefined) return { path, ...own };
    const bundle = await putSecretsBundle(this.#o.store, host, secrets.bundle);
    return {
      path,
      secrets: {
        bundle,
        manifest: secrets.digest,
        ...(secrets.age === undefined ? {} : { age: secrets.age }),
      },
      ...own,
    };
  }

  /** The host's checks when they differ from the release's; undefined when they do not. */
  #ownPolicy(host: string, path: StorePath): ReleaseHostPolicy | undefined {
    const policy = this.#o.policyOf?.(host, path);
    if (policy === undefined) return undefined;
    const release = checksFor(this.#releaseChecks(), undefined);
    return canonicalJson(checksFor(policy, undefined)) === canonicalJson(release)
      ? undefined
      : checksFor(policy, undefined);
  }

  /** What every release of this delivery states for the hosts without checks of their own. */
  #releaseChecks(): ReleaseHostPolicy {
    return {
      health: this.#o.health,
      confirmTimeout: this.#o.confirmTimeout,
      ...(this.#o.keepGenerations ? { keepGenerations: this.#o.keepGenerations } : {}),
    };
  }

  async #publish(
    entries: Record<string, ReleaseHost>,
    kind: ReleaseKind,
    action: Action,
    checks: Pick<Release, "health" | "confirmTimeout" | "keepGenerations"> = this.#releaseChecks(),
  ): Promise<SignedRelease> {
    const key = this.#o.key;
    if (key === undefined) {
      throw new UsageError(
        "deploying to agent hosts publishes a signed release: --release-key SECRET_FILE is needed",
        "make one with 'nixship key generate --name NAME-release-1 --out FILE'; the agents trust its public key (fleet releases.publicKeys)",
      );
    }
    const signed = await publishRelease(this.#o.store, {
      channel: this.#o.releases.channel,
      hosts: entries,
      kind,
      action,
      ...checks,
      key,
      maxAge: this.#o.releases.maxAge,
    });
    this.#entries = { ...entries };
    this.#published.push(signed);
    return signed;
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

/** A watched host's outcome, and how it came: the host's report, or the deployer's interrupt. */
interface Watched {
  readonly outcome: DeployOutcome;
  readonly how: "activated" | "failed" | "interrupted";
}

/** Why a host's agent will not take a release now (paused, or its heartbeats stopped), if so. */
function notLive(host: string, beat: Heartbeat | undefined, now: Date): string | undefined {
  // No heartbeat at all says nothing (an agent that never started, or one from before
  // heartbeats): that host is waited for until offlineTimeout.
  if (beat === undefined) return undefined;
  const age = Math.round((now.getTime() - beat.at.getTime()) / 1000);
  switch (livenessOf(beat, now)) {
    case "paused":
      return `${host}'s agent is paused (its heartbeat ${age}s ago says so): it takes no release until resumed ('nixship agent resume' on the host)`;
    case "offline":
      return `${host}'s agent is offline: its last heartbeat is ${age}s old (it beats every ${beat.every}s at most)`;
    case "online":
      return undefined;
  }
}

/** An entry as a message names it. */
function earlier(entry: ReleaseHost | undefined): string {
  return entry === undefined ? "no entry: the agent leaves the host as it is" : entry.path;
}

/** Whether two entries name the same system, the same secrets and the same checks. */
function sameEntry(a: ReleaseHost | undefined, b: ReleaseHost): boolean {
  return (
    a?.path === b.path &&
    a.secrets?.bundle === b.secrets?.bundle &&
    canonicalJson(a.policy ?? null) === canonicalJson(b.policy ?? null)
  );
}

/** `host: path failed there (release N)`. */
function failedMessage(host: string, path: StorePath, past: HostHistory): string {
  const seq = past.findLast((e) => e.path === path && e.outcome === "failed")?.seq;
  return `${host}: ${path} failed on ${host}${seq === undefined ? "" : ` in release ${seq}`}`;
}
