// The agent delivery mode: the deployer never reaches a host. Each wave is a signed release of
// the channel (channel/channel-keeper.ts says what it names), and the deployer watches the
// wave's status markers (status.ts) with LIST calls until every host of the wave reports or the
// offline timeout passes. A host that failed is named back to the last system confirmed healthy
// on it by a rollback release; `nixship rollback` is a rollback release too, watched the same way.
import {
  ChannelKeeper,
  type ChannelKeeperOptions,
  publishedRelease,
  type WaveEntry,
} from "../channel/channel-keeper.js";
import type { Action } from "../fleet/action.js";
import type { FleetHost, ReleaseSettings } from "../fleet/fleet.js";
import { decideRollback } from "../fleet/rollback-decision.js";
import type { RollbackTarget } from "../fleet/rollback-target.js";
import type { ReleaseHost, SignedRelease } from "../release/release.js";
import { agentNotLive } from "../status/heartbeat.js";
import { hostStatusKey, type StatusRecord } from "../status/status.js";
import {
  type Heartbeats,
  readHeartbeats,
  readJudgedReport,
  readStatus,
} from "../status/status-store.js";
import { ReleaseWatcher, type Watched, type WatchSettings } from "./agent-watch.js";
import type {
  ChannelCapability,
  Delivery,
  DeliveryEvent,
  DeployOutcome,
  HostStatus,
  RollbackOutcome,
  WaveContext,
  WaveHost,
} from "./delivery.js";

/** The channel's settings (what its releases name, signed by which key), and the watching's. */
export interface AgentDeliveryOptions extends ChannelKeeperOptions, WatchSettings {
  /** The channel, and how long the deployer waits for an agent to report (offlineTimeout). */
  readonly releases: ReleaseSettings;
}

/** Ms a read of the heartbeats answers the asks that follow it. */
const HEARTBEATS_FRESH_MS = 5000;

export class AgentDelivery implements Delivery {
  readonly #o: AgentDeliveryOptions;
  /** The channel the hosts follow: everything read from it and published to it. */
  readonly #keeper: ChannelKeeper;
  /** Watches the hosts apply each release the keeper publishes. */
  readonly #watcher: ReleaseWatcher;
  /** The capability: the channel, as the deploy and `release refresh` use it. */
  readonly channel: ChannelCapability;

  constructor(options: AgentDeliveryOptions) {
    this.#o = options;
    const keeper = new ChannelKeeper(options);
    this.#keeper = keeper;
    this.#watcher = new ReleaseWatcher(options);
    this.channel = {
      // One release with every host, not watched (`deploy --async`).
      publishOnly: async (hosts) =>
        publishedRelease(await keeper.publishWave(hosts.map(waveEntry), waveAction(hosts))),
      plan: (hosts) => keeper.plan(hosts),
      failedOn: (hosts) => keeper.failedOn(hosts),
      settle: (action) => keeper.settle(action),
      published: () =>
        keeper.published.map(({ release }) => ({ channel: release.channel, seq: release.seq })),
      refresh: () => keeper.refresh(),
    };
  }

  /** The releases this deploy published, in order. */
  get published(): readonly SignedRelease[] {
    return this.#keeper.published;
  }

  /** The agents' heartbeats, read once for a burst of asks (a survey asks every host at once). */
  #beats: { readonly at: number; readonly read: Promise<Heartbeats | undefined> } | undefined;

  #heartbeats(): Promise<Heartbeats | undefined> {
    const now = Date.now();
    if (this.#beats === undefined || now - this.#beats.at > HEARTBEATS_FRESH_MS) {
      // Unreadable: the hosts are judged by their records alone, as before heartbeats.
      this.#beats = { at: now, read: readHeartbeats(this.#o.store).catch(() => undefined) };
    }
    return this.#beats.read;
  }

  async status(host: FleetHost): Promise<HostStatus> {
    // A paused or offline agent takes no release: the plan says so, and the deploy publishes
    // nothing for it (it is counted as a host not reached, as an ssh host that does not answer).
    const notLive = agentNotLive(
      host.name,
      (await this.#heartbeats())?.hosts.get(host.name),
      new Date(),
    );
    const record = await this.#record(host.name);
    if (notLive !== undefined) {
      const lastKnown = record?.current ?? undefined;
      return { reachable: false, error: notLive, ...(lastKnown ? { lastKnown } : {}) };
    }
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

  /**
   * The host's status record. A host whose key the fleet knows is known by a record it signed
   * only: another (written by whoever can write the store) could make the plan leave it out as
   * up to date.
   */
  async #record(host: string): Promise<StatusRecord | undefined> {
    const hostKey = this.#o.reportKeys?.get(host);
    return hostKey === undefined
      ? await readStatus(this.#o.store, host)
      : await readJudgedReport(this.#o.store, hostStatusKey(host), hostKey, { host }).then((r) =>
          r?.trusted ? r.record : undefined,
        );
  }

  async deployWave(
    wave: readonly WaveHost[],
    emit: (event: DeliveryEvent) => void,
    context: WaveContext,
  ): Promise<DeployOutcome[]> {
    // What the channel named before this wave: where an interrupt takes the hosts not done.
    const before = await this.#keeper.entries();
    const published = await this.#keeper.publishWaveExpected(wave.map(waveEntry), waveAction(wave));
    if (published.refused.size === 0 && published.release !== undefined) {
      return this.#watchWave(wave, published.release, before, emit, context);
    }
    // Hosts changed since (WaveEntry.expect) are left as they are; the others are watched.
    const refused = (host: string): DeployOutcome | undefined => {
      const why = published.refused.get(host);
      return why === undefined ? undefined : { status: "skipped", reason: "refused", message: why };
    };
    for (const w of wave) {
      const outcome = refused(w.host.name);
      if (outcome !== undefined) emit({ type: "done", host: w.host.name, outcome });
    }
    const kept = wave.filter((w) => !published.refused.has(w.host.name));
    const watched =
      published.release === undefined
        ? []
        : await this.#watchWave(kept, published.release, before, emit, context);
    const outcomes = new Map(kept.map((w, i) => [w.host.name, watched[i] as DeployOutcome]));
    return wave.map((w) => refused(w.host.name) ?? (outcomes.get(w.host.name) as DeployOutcome));
  }

  /** Watches `wave` apply `release`, and answers the hosts that failed it or were not done. */
  async #watchWave(
    wave: readonly WaveHost[],
    release: SignedRelease,
    before: Readonly<Record<string, ReleaseHost>>,
    emit: (event: DeliveryEvent) => void,
    context: WaveContext,
  ): Promise<DeployOutcome[]> {
    const watched = await this.#watcher.watch(
      release,
      wave.map((w) => w.host.name),
      emit,
      context.signal,
      // A host that reboots reports after its boot: its reboot timeout on top.
      Math.max(0, ...wave.map((w) => w.request.reboot?.timeout ?? 0)),
    );
    const outcomes = watched.map((w) => w.outcome);
    // Hosts that failed went back to what they ran, and hosts an interrupt left not done must not
    // apply the aborted system late: one rollback release answers both (ChannelKeeper.rollBackWave),
    // for the hosts fleet/rollback-decision.ts sends back.
    const back = (how: Watched["how"]) =>
      wave.filter((_, i) => {
        const w = watched[i];
        if (w?.how !== how || w.outcome.status !== "failed") return false;
        const message = w.outcome.message;
        return decideRollback(
          how === "interrupted" ? { kind: "withdrawn", message } : { kind: "host-failed", message },
        ).rollBack;
      });
    const failed = back("failed");
    const withdrawn = back("interrupted");
    if (failed.length === 0 && withdrawn.length === 0) return outcomes;
    const rollback = await this.#keeper.rollBackWave({
      action: release.release.action,
      failed: failed.map(({ host, request }) => ({ host: host.name, path: request.path })),
      withdrawn: withdrawn.map(({ host }) => host.name),
      before,
    });
    // The deploy ends once the failed hosts applied the rollback release (bounded, as any
    // watch), so that it never ends with hosts still on the withdrawn release unsaid.
    const applied = context.signal?.aborted ? new Map() : await this.#applied(rollback, failed);
    return outcomes.map((o, i) => {
      const host = wave[i]?.host.name ?? "";
      if (o.status !== "failed") return o;
      if (watched[i]?.how !== "interrupted") {
        const after = applied.get(host);
        return after === undefined ? o : { ...o, message: `${o.message}; ${after}` };
      }
      const outcome = {
        ...o,
        message: `${o.message}; release ${rollback.release.seq} withdraws release ${release.release.seq} for it: its agent goes back to what the channel named before (${earlier(before[host])}) when it next polls`,
      };
      emit({ type: "done", host, outcome });
      return outcome;
    });
  }

  /**
   * Watches the failed hosts that the rollback release `back` names apply it, and says of each
   * what became of it: applied (it runs that system again), or not within the watch's deadline.
   */
  async #applied(back: SignedRelease, failed: readonly WaveHost[]): Promise<Map<string, string>> {
    const named = failed.map((w) => w.host.name).filter((h) => back.release.hosts[h] !== undefined);
    const said = new Map<string, string>();
    if (named.length === 0) return said;
    const watched = await this.#watcher.watch(back, named, () => {});
    for (const [i, host] of named.entries()) {
      const w = watched[i];
      const path = back.release.hosts[host]?.path;
      said.set(
        host,
        w?.how === "activated"
          ? `it applied rollback release ${back.release.seq} (it runs ${path} again)`
          : `it did not apply rollback release ${back.release.seq} (${w?.outcome.status === "failed" ? w.outcome.message : "no answer"}): check it with 'nixship status --stored'`,
      );
    }
    return said;
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
    const rollback = await this.#keeper.publishRollback(
      hosts.map((h) => h.name),
      to,
    );
    const outcomes = new Map<string, RollbackOutcome>();
    for (const [name, why] of rollback.refused) {
      outcomes.set(name, { status: "failed", message: why });
    }
    if (rollback.release !== undefined) {
      const wave = rollback.hosts.map((h) => h.host);
      const watched = await this.#watcher.watch(rollback.release, wave, () => {});
      for (const [i, { host: name, path }] of rollback.hosts.entries()) {
        const result = watched[i]?.outcome;
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
}

/** A wave host as the channel's release names it. */
function waveEntry({ host, request }: WaveHost): WaveEntry {
  return {
    host: host.name,
    path: request.path,
    secrets: request.secrets,
    reboot: request.reboot,
    deltaTool: request.deltaTool,
    expect: request.expect,
  };
}

/** The action a wave's release carries: its first host's. */
function waveAction(wave: readonly WaveHost[]): Action {
  return wave[0]?.request.action ?? "switch";
}

/** An entry as a message names it. */
function earlier(entry: ReleaseHost | undefined): string {
  return entry === undefined ? "no entry: the agent leaves the host as it is" : entry.path;
}
