// The agent delivery mode: the deployer never reaches a host. Each wave is a signed release of
// the channel (the hosts of earlier waves and hosts outside this deploy keep their entries),
// and the deployer watches the wave's status markers (status.ts) with LIST calls until every
// host of the wave reports or the offline timeout passes. A host that failed is named back to
// the system it rolled back to by a rollback release, so the channel never tells a newcomer to
// run what just failed. `nixship rollback` is a rollback release too: each host goes back to the
// last different system an earlier release named for it.
import { InputError, UsageError } from "../errors.js";
import type { Action } from "../fleet/action.js";
import type { FleetHost, HealthChecks, ReleaseSettings } from "../fleet/fleet.js";
import {
  type Release,
  type ReleaseHost,
  type SignedRelease,
  verifyRelease,
} from "../fleet/release.js";
import {
  channelKey,
  highestListed,
  publishRelease,
  readChannel,
  readRelease,
  releaseKey,
} from "../fleet/release-store.js";
import type { StatusRecord } from "../fleet/status.js";
import { readProgress, readRecord, readStatus } from "../fleet/status-store.js";
import { type PublicKey, parsePublicKey, type SecretKey } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import type { ObjectStore } from "../store/object-store.js";
import type {
  Delivery,
  DeliveryEvent,
  DeployOutcome,
  HostStatus,
  RollbackOutcome,
  WaveContext,
  WaveHost,
} from "./delivery.js";

export interface AgentDeliveryOptions {
  readonly store: ObjectStore;
  readonly releases: ReleaseSettings;
  /** Signs the releases; needed to deploy, not to read status. */
  readonly key: SecretKey | undefined;
  /** Put in every release: what the agents check after switching (URLs keep {address}). */
  readonly health: HealthChecks;
  readonly confirmTimeout: number;
  /** Milliseconds between the deployer's status reads (default 1000). */
  readonly pollInterval?: number;
  /** Called after each status read with the LIST calls it took (for benchmarks). */
  readonly onPoll?: (listCalls: number) => void;
}

export class AgentDelivery implements Delivery {
  readonly #o: AgentDeliveryOptions;
  /** Every host's entry as the channel's next release should have it. */
  #entries: Record<string, ReleaseHost> | undefined;
  readonly #published: SignedRelease[] = [];

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
    };
  }

  /** The capability: the releases this deploy published, in order. */
  publishedReleases(): { readonly channel: string; readonly seq: number }[] {
    return this.#published.map(({ release }) => ({ channel: release.channel, seq: release.seq }));
  }

  /** The capability: one release with every host, not watched (`deploy --async`). */
  async publishOnly(hosts: readonly WaveHost[]): Promise<{ channel: string; seq: number }> {
    const { release } = await this.#publishWave(hosts);
    return { channel: release.channel, seq: release.seq };
  }

  /** Publishes one release naming the wave's hosts' new systems. */
  async #publishWave(wave: readonly WaveHost[]): Promise<SignedRelease> {
    const entries = await this.#currentEntries();
    for (const { host, request } of wave) entries[host.name] = { path: request.path };
    const action = wave[0]?.request.action ?? "switch";
    return this.#publish(entries, "deploy", action);
  }

  async deployWave(
    wave: readonly WaveHost[],
    emit: (event: DeliveryEvent) => void,
    _context: WaveContext,
  ): Promise<DeployOutcome[]> {
    const previous = { ...(await this.#currentEntries()) };
    const release = await this.#publishWave(wave);
    for (const { host } of wave) emit({ type: "phase", host: host.name, phase: "connect" });
    const outcomes = await this.#watch(
      release,
      wave.map((w) => w.host.name),
      emit,
    );
    // Hosts that failed went back to what they ran; the channel says so too.
    const failed = wave.filter((_, i) => outcomes[i]?.status === "failed");
    if (failed.length > 0) {
      const entries = { ...(this.#entries ?? {}) };
      for (const { host } of failed) {
        const before = previous[host.name];
        if (before === undefined) delete entries[host.name];
        else entries[host.name] = before;
      }
      await this.#publish(entries, "rollback", release.release.action);
    }
    return outcomes;
  }

  /**
   * Publishes one rollback release that names, for each host, the last system an earlier
   * release of the channel gave it that differs from what the channel names now, then watches
   * the hosts apply it. Agent hosts have releases, not generations: `generation` must be
   * undefined.
   */
  async rollbackHosts(
    hosts: readonly FleetHost[],
    generation: number | undefined,
  ): Promise<RollbackOutcome[]> {
    if (generation !== undefined) {
      throw new UsageError(
        "rollback --to picks a generation on ssh and ssm hosts; agent hosts go back by release",
        "leave out --to: each agent host goes back to the last different system an earlier release of its channel named for it",
      );
    }
    const { channel } = this.#o.releases;
    const current = await this.#channelRelease();
    if (current === undefined) {
      return hosts.map(() => ({
        status: "failed",
        message: `channel ${channel} has no release yet: there is nothing to go back to`,
      }));
    }
    const found = await this.#earlierPaths(
      current.release,
      hosts.map((h) => h.name),
    );
    const entries = { ...current.release.hosts };
    const outcomes = new Map<string, RollbackOutcome>();
    const wave: string[] = [];
    for (const { name } of hosts) {
      const target = found.get(name);
      if (target?.path !== undefined) {
        entries[name] = { path: target.path };
        wave.push(name);
      } else outcomes.set(name, { status: "failed", message: target?.why ?? "no earlier system" });
    }
    if (wave.length > 0) {
      const signed = await this.#publish(entries, "rollback", "switch");
      const results = await this.#watch(signed, wave, () => {});
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
        const record = await readStatus(this.#o.store, name).catch(() => undefined);
        outcomes.set(name, { status: "rolled-back", generation: record?.generation ?? 0, path });
      }
    }
    return hosts.map((h) => outcomes.get(h.name) as RollbackOutcome);
  }

  /**
   * For each host, the system an earlier release named for it that differs from what `current`
   * names, walking back one release at a time (each verified like the channel) until every
   * host has one or the first release is reached; otherwise why there is none.
   */
  async #earlierPaths(
    current: Release,
    names: readonly string[],
  ): Promise<Map<string, { path?: StorePath; why?: string }>> {
    const found = new Map<string, { path?: StorePath; why?: string }>();
    const pending = new Set<string>();
    for (const name of names) {
      if (current.hosts[name] === undefined) {
        found.set(name, {
          why: `release ${current.seq} of channel ${current.channel} does not name ${name}: it follows no system of this channel yet`,
        });
      } else pending.add(name);
    }
    const skipped: number[] = [];
    for (let seq = current.seq - 1; seq >= 1 && pending.size > 0; seq--) {
      const older = await this.#verifiedRelease(seq);
      if (older === "absent") continue;
      // Not signed by a release key: the agents refused it, so no host ever ran its systems,
      // and they are not signed now either.
      if (older === "untrusted") {
        skipped.push(seq);
        continue;
      }
      for (const name of pending) {
        const path = older.release.hosts[name]?.path;
        if (path !== undefined && path !== current.hosts[name]?.path) {
          found.set(name, { path });
          pending.delete(name);
        }
      }
    }
    const passed =
      skipped.length === 0
        ? ""
        : ` (passed over release${skipped.length === 1 ? "" : "s"} ${skipped.join(", ")}: not signed by a trusted release key)`;
    for (const name of pending) {
      found.set(name, {
        why: `no earlier release of channel ${current.channel} names another system for ${name}${passed}`,
      });
    }
    return found;
  }

  async #watch(
    signed: SignedRelease,
    hosts: readonly string[],
    emit: (event: DeliveryEvent) => void,
  ): Promise<DeployOutcome[]> {
    const { store, releases } = this.#o;
    const { channel, seq } = signed.release;
    const names = new Set(hosts);
    const outcomes = new Map<string, DeployOutcome>();
    const applying = new Set<string>();
    const deadline = Date.now() + releases.offlineTimeout * 1000;
    const interval = this.#o.pollInterval ?? 1000;
    while (outcomes.size < names.size) {
      const progress = await readProgress(store, channel, seq);
      this.#o.onPoll?.(progress.listCalls);
      for (const [host, entry] of progress.hosts) {
        if (!names.has(host) || outcomes.has(host)) continue;
        if (entry.state === "applying") {
          if (!applying.has(host)) emit({ type: "phase", host, phase: "switch" });
          applying.add(host);
          continue;
        }
        const outcome =
          entry.state === "success"
            ? ({ status: "activated", generation: undefined, previous: undefined } as const)
            : await this.#failed(host, entry.key);
        outcomes.set(host, outcome);
        emit({ type: "done", host, outcome });
      }
      if (outcomes.size === names.size) break;
      if (Date.now() >= deadline) {
        for (const host of names) {
          if (outcomes.has(host)) continue;
          const outcome: DeployOutcome = {
            status: "failed",
            phase: applying.has(host) ? "switch" : "connect",
            message: applying.has(host)
              ? `the agent started release ${seq} but did not finish within ${releases.offlineTimeout}s`
              : `no report from the agent within ${releases.offlineTimeout}s: offline, paused, or not following channel ${channel}`,
            rolledBack: false,
          };
          outcomes.set(host, outcome);
          emit({ type: "done", host, outcome });
        }
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, interval));
    }
    return hosts.map((name) => outcomes.get(name) as DeployOutcome);
  }

  async #failed(host: string, key: string): Promise<DeployOutcome> {
    const record = await this.#record(key);
    const refused = record?.state === "rejected";
    return {
      status: "failed",
      phase: refused || record?.phase === "verify" ? "connect" : (record?.phase ?? "switch"),
      message:
        record?.error ?? `${host} reported ${refused ? "rejected" : "failed"} with no reason`,
      rolledBack: !refused && record?.rolledBack === true,
    };
  }

  async #record(key: string): Promise<StatusRecord | undefined> {
    return readRecord(this.#o.store, key).catch(() => undefined);
  }

  /** The channel's entries as they stand (first call), then as this deploy left them. */
  async #currentEntries(): Promise<Record<string, ReleaseHost>> {
    this.#entries ??= { ...(await this.#channelRelease())?.release.hosts };
    return this.#entries;
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
  async #verifiedRelease(seq: number): Promise<SignedRelease | "absent" | "untrusted"> {
    const { store, releases } = this.#o;
    const read = await readRelease(store, releases.channel, seq);
    // Absent: withdrawn by a publisher that lost a race, never a release hosts followed.
    if (read.status === "absent") return "absent";
    try {
      return verifyRelease(read.bytes, this.#trustedKeys, releaseKey(releases.channel, seq));
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      return "untrusted";
    }
  }

  async #publish(
    entries: Record<string, ReleaseHost>,
    kind: "deploy" | "rollback",
    action: Action,
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
      health: this.#o.health,
      confirmTimeout: this.#o.confirmTimeout,
      key,
    });
    this.#entries = { ...entries };
    this.#published.push(signed);
    return signed;
  }
}
