// The agent delivery mode: the deployer never reaches a host. Each wave is a signed release of
// the channel (the hosts of earlier waves and hosts outside this deploy keep their entries),
// and the deployer watches the wave's status markers (status.ts) with LIST calls until every
// host of the wave reports or the offline timeout passes. A host that failed is named back to
// the system it rolled back to by a rollback release, so the channel never tells a newcomer to
// run what just failed.
import { UsageError } from "../errors.js";
import type { Action } from "../fleet/action.js";
import type { FleetHost, HealthChecks, ReleaseSettings } from "../fleet/fleet.js";
import { parseRelease, type ReleaseHost, type SignedRelease } from "../fleet/release.js";
import { publishRelease, readChannel } from "../fleet/release-store.js";
import type { StatusRecord } from "../fleet/status.js";
import { readProgress, readRecord, readStatus } from "../fleet/status-store.js";
import type { SecretKey } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import type { ObjectStore } from "../store/object-store.js";
import type {
  Delivery,
  DeliveryEvent,
  DeployOutcome,
  HostPhase,
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

  constructor(options: AgentDeliveryOptions) {
    this.#o = options;
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

  /** Publishes one release with the whole wave, without watching (`deploy --async`). */
  async publish(wave: readonly WaveHost[]): Promise<SignedRelease> {
    const entries = await this.#currentEntries();
    for (const { host, request } of wave) entries[host.name] = { path: request.path as StorePath };
    const action = wave[0]?.request.action ?? "switch";
    return this.#publish(entries, "deploy", action);
  }

  async deployWave(
    wave: readonly WaveHost[],
    emit: (event: DeliveryEvent) => void,
    _context: WaveContext,
  ): Promise<DeployOutcome[]> {
    const previous = { ...(await this.#currentEntries()) };
    const release = await this.publish(wave);
    for (const { host } of wave) emit({ type: "phase", host: host.name, phase: "connect" });
    const outcomes = await this.#watch(release, wave, emit);
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

  async rollback(host: FleetHost): Promise<RollbackOutcome> {
    return {
      status: "failed",
      message: `${host.name} follows signed releases: to roll it back, deploy its older system with 'nixship deploy --via agent' (a new, higher-numbered release that names the old path)`,
    };
  }

  async #watch(
    signed: SignedRelease,
    wave: readonly WaveHost[],
    emit: (event: DeliveryEvent) => void,
  ): Promise<DeployOutcome[]> {
    const { store, releases } = this.#o;
    const { channel, seq } = signed.release;
    const names = new Set(wave.map((w) => w.host.name));
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
    return wave.map((w) => outcomes.get(w.host.name) as DeployOutcome);
  }

  async #failed(host: string, key: string): Promise<DeployOutcome> {
    const record = await this.#record(key);
    const refused = record?.state === "rejected";
    return {
      status: "failed",
      phase: refused ? "connect" : toPhase(record?.phase),
      message:
        record?.error ?? `${host} reported ${refused ? "rejected" : "failed"} with no reason`,
      rolledBack: !refused && (record?.error?.includes("rolled back") ?? false),
    };
  }

  async #record(key: string): Promise<StatusRecord | undefined> {
    return readRecord(this.#o.store, key).catch(() => undefined);
  }

  /** The channel's entries as they stand (first call), then as this deploy left them. */
  async #currentEntries(): Promise<Record<string, ReleaseHost>> {
    if (this.#entries === undefined) {
      const { store, releases } = this.#o;
      const current = await readChannel(store, releases.channel);
      this.#entries =
        current.status === "found"
          ? { ...parseRelease(current.bytes, `channels/${releases.channel}.json`).release.hosts }
          : {};
    }
    return this.#entries;
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

const PHASES: readonly HostPhase[] = ["realise", "profile", "switch", "health", "confirm"];

function toPhase(phase: string | null | undefined): HostPhase {
  return PHASES.find((p) => p === phase) ?? "switch";
}
