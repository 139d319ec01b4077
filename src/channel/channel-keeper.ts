// The deployer's side of one channel that agent hosts follow: what its next release names for
// each host, and the releases it publishes. The channel is explicit and never names, for a host,
// a system that failed there (host-history.ts): the selected hosts get their fleet file's system
// whether or not they already run it, other hosts keep their entry unless it failed on them, and
// a host that failed is named back to the last system confirmed healthy on it. Watching hosts
// apply a release is not its part (delivery/agent.ts does that).
import { readNarInfo } from "../cache/read.js";
import { OperationError, UsageError } from "../errors.js";
import type { Action } from "../fleet/action.js";
import type { ReleaseSettings } from "../fleet/fleet.js";
import type { RollbackTarget } from "../fleet/rollback-target.js";
import type { HostSecrets } from "../host/activation-session.js";
import { type PublicKey, parsePublicKey, type SecretKey } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import type { Release, ReleaseHost, ReleaseKind, SignedRelease } from "../release/release.js";
import type { Origin } from "../release/release-origin.js";
import { publishRelease } from "../release/release-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { believedHistory, unbelievedNote } from "./believed-history.js";
import { carryOver, statesEntries } from "./carry-over.js";
import { failedMessage, refuseFailed } from "./failed-systems.js";
import { type HistoryRead, readHistory } from "./history-store.js";
import { type EntryChecks, type EntryExtras, hostEntry, releaseChecks } from "./host-entry.js";
import { hasFailed, lastConfirmed } from "./host-history.js";
import { rollbackTarget } from "./rollback-targets.js";
import { carryOverBase, readChannelToUpdate } from "./trusted-release.js";

export interface ChannelKeeperOptions extends EntryChecks {
  readonly store: ObjectStore;
  readonly releases: ReleaseSettings;
  /** Signs the releases; needed to publish, not to read. */
  readonly key: SecretKey | undefined;
  /** `--allow-failed`: the selected hosts may be named a system that failed on them. */
  readonly allowFailed?: boolean;
  /** Releases the per-host history looks back over (default HISTORY_RELEASES). */
  readonly historyReleases?: number;
  /** Who publishes and from what: written beside each release (release-origin.ts). */
  readonly origin?: Origin;
  /**
   * Each agent host's SSH host key as the fleet knows it: such a host's failures count only on
   * reports its key signed (believed-history.ts). A host not named: on any report.
   */
  readonly reportKeys?: ReadonlyMap<string, string>;
  /** What the operator is told with the plan's notes, whatever the channel holds. */
  readonly notes?: readonly string[];
  /**
   * Hosts to leave as they are, each with the system it runs (a rollback's refused hosts,
   * changed since by hand): a release names no entry for one whose entry names another system
   * (unless the deploy gives it one), so that its agent leaves it on what it runs.
   */
  readonly leave?: ReadonlyMap<string, string>;
}

/** A selected host's desired system, and whether the host already runs it. */
export interface ChannelHost {
  readonly host: string;
  readonly path: StorePath;
  readonly runs: boolean;
  /** The host's secrets (undefined: the deploy leaves them alone). */
  readonly secrets?: HostSecrets | undefined;
}

/**
 * A host a wave's release names: its new system, its secrets, how it reboots into it, and the
 * tool it fetches paths as deltas with.
 */
export interface WaveEntry extends EntryExtras {
  readonly host: string;
  readonly path: StorePath;
  /** Undefined: the agent leaves the host's secrets alone. */
  readonly secrets?: HostSecrets | undefined;
  /**
   * The system the channel must still name for the host (a rollback of a rollout: what that
   * rollout gave it); one that names another was changed since by another publisher, and the
   * host is left out, refused. Undefined: whatever it names.
   */
  readonly expect?: StorePath | undefined;
}

/** A wave's release, and the hosts it left out as changed since (WaveEntry.expect), with why. */
export interface WaveRelease {
  /** Undefined: every host was refused, and nothing was published. */
  readonly release: SignedRelease | undefined;
  readonly refused: ReadonlyMap<string, string>;
}

/** A published release as a deploy reports it. */
export interface PublishedRelease {
  readonly channel: string;
  readonly seq: number;
  readonly digest: string;
}

/** What a wave that did not finish well left: the rollback release that answers it. */
export interface WaveLeftovers {
  /** The wave's release's action, which the rollback release keeps. */
  readonly action: Action;
  /** Hosts that failed the wave's system: named back to the last system confirmed on them. */
  readonly failed: readonly { readonly host: string; readonly path: StorePath }[];
  /** Hosts an interrupt left not done: given back what the channel named `before` the wave. */
  readonly withdrawn: readonly string[];
  readonly before: Readonly<Record<string, ReleaseHost>>;
}

/** `nixship rollback`'s release, and the hosts that cannot go back with why. */
export interface RollbackRelease {
  readonly refused: ReadonlyMap<string, string>;
  /** The hosts the release sends back, in order, and where; empty: nothing was published. */
  readonly hosts: readonly { readonly host: string; readonly path: StorePath }[];
  readonly release: SignedRelease | undefined;
}

/** How many times a publish reads the channel again after another publisher's release. */
const PUBLISH_ATTEMPTS = 3;

/** The channel as read for one release: what it names, carried over, and what it held. */
interface ChannelRead {
  readonly trusted: SignedRelease | undefined;
  readonly basis: string | null;
  /** Every host's entry as the next release starts from (the plan's, until one is published). */
  readonly entries: Record<string, ReleaseHost>;
  readonly notes: readonly string[];
}

/**
 * Each release is built on the channel as read just before it, and published only over what was
 * read: a release another publisher made meanwhile (another deploy, `rollback --on`, a refresh)
 * is read again and kept for every host this release does not change, never replaced by entries
 * read minutes earlier.
 */
export class ChannelKeeper {
  readonly #o: ChannelKeeperOptions;
  /** Entries plan() set for hosts that already run their system: in the first release. */
  readonly #planned: Record<string, ReleaseHost> = {};
  /** What this keeper's last release named for each host. */
  #lastNamed: Readonly<Record<string, ReleaseHost>> = {};
  readonly #published: SignedRelease[] = [];
  /** The channel's per-host history, read once and again after a wave with failures. */
  #history: HistoryRead | undefined;
  /** Entries a release replaced because they named a failed system, for the operator. */
  readonly #notes: string[] = [];
  /** The release keys the fleet's agents trust: what the deployer verifies releases with. */
  readonly #trustedKeys: readonly PublicKey[];

  constructor(options: ChannelKeeperOptions) {
    this.#o = options;
    this.#notes.push(...(options.notes ?? []));
    this.#trustedKeys = options.releases.publicKeys.map((k) => parsePublicKey(k));
  }

  /** The releases this keeper published, in order. */
  get published(): readonly SignedRelease[] {
    return this.#published;
  }

  /**
   * Every selected host's desired system, before the first wave: refuses a system that failed on
   * its host (unless allowFailed), and names the hosts that already run theirs. Resolves with
   * notes for the operator (entries carried over as their last confirmed system, or dropped).
   */
  async plan(hosts: readonly ChannelHost[]): Promise<readonly string[]> {
    const history = await this.#readHistory();
    this.#refuseFailed(history, hosts);
    for (const note of (await this.#read()).notes) {
      if (!this.#notes.includes(note)) this.#notes.push(note);
    }
    for (const { host, path, runs, secrets } of hosts) {
      if (runs) this.#planned[host] = await this.#entry(host, path, secrets);
    }
    return [...this.#notes];
  }

  /**
   * Of `hosts`, those whose system failed on them, each with why (failedMessage): what `plan`
   * would refuse. None when the operator allowed them (allowFailed).
   */
  async failedOn(
    hosts: readonly { readonly host: string; readonly path: StorePath }[],
  ): Promise<ReadonlyMap<string, string>> {
    const failed = new Map<string, string>();
    if (this.#o.allowFailed === true || hosts.length === 0) return failed;
    const history = await this.#readHistory();
    for (const { host, path } of hosts) {
      const past = history.hosts.get(host) ?? [];
      if (hasFailed(past, path)) failed.set(host, failedMessage(host, path, past));
    }
    return failed;
  }

  /** Every host's entry as the channel's next release would have it now. */
  async entries(): Promise<Record<string, ReleaseHost>> {
    return (await this.#read()).entries;
  }

  /** Publishes one release naming the wave's hosts' new systems (the others keep theirs). */
  async publishWave(wave: readonly WaveEntry[], action: Action): Promise<SignedRelease> {
    const { release, refused } = await this.publishWaveExpected(wave, action);
    if (release === undefined) {
      throw new Error(`a wave was refused whole: ${[...refused.values()].join("; ")}`);
    }
    return release;
  }

  /**
   * publishWave, where a host whose entry no longer names its `expect` (read with the release
   * it is built on, so that no publisher comes between) is left out and refused; when every
   * host is, nothing is published.
   */
  async publishWaveExpected(wave: readonly WaveEntry[], action: Action): Promise<WaveRelease> {
    this.#refuseFailed(await this.#readHistory(), wave);
    const named: Record<string, ReleaseHost> = {};
    for (const { host, path, secrets, reboot, deltaTool } of wave) {
      named[host] = await this.#entry(host, path, secrets, { reboot, deltaTool });
    }
    return this.#attempt(async () => {
      const read = await this.#read();
      const refused = changedSince(wave, read.trusted?.release.hosts ?? {});
      const kept = Object.entries(named).filter(([host]) => !refused.has(host));
      if (kept.length === 0 && refused.size > 0) return { release: undefined, refused };
      Object.assign(read.entries, Object.fromEntries(kept));
      return { release: await this.#publish(read, "deploy", action), refused };
    });
  }

  /**
   * The rollback release after a wave: hosts that failed went back to what they ran, so the
   * channel names for each the last system confirmed healthy on it (none when none is known: the
   * agent then leaves it be); hosts an interrupt left not done get back the entry the channel had
   * for them before the wave (none when it had none), so an agent that applies late never
   * applies the aborted system. After a first wave whose hosts had nothing to go back to, it
   * names no host at all (the one kind of release that may). A host another publisher has named
   * since the wave keeps what they named.
   */
  async rollBackWave(left: WaveLeftovers): Promise<SignedRelease> {
    this.#history = undefined;
    const history = left.failed.length > 0 ? await this.#readHistory() : undefined;
    const wave = this.#lastNamed;
    return this.#publishOver("rollback", left.action, (entries, named) => {
      const stillOurs = (host: string) => named[host]?.path === wave[host]?.path;
      for (const { host, path } of left.failed) {
        if (!stillOurs(host)) continue;
        // Failed on the system it ran already (new secrets, or the same system again): it runs
        // what its entry before the wave gave it, secrets and all, which the channel names again.
        const earlier = left.before[host];
        if (earlier?.path === path) {
          entries[host] = earlier;
          continue;
        }
        const back = lastConfirmed(history?.hosts.get(host) ?? [], path);
        // A rollback changes the system only; the host keeps the secrets the entry gives it.
        if (back === undefined) delete entries[host];
        else entries[host] = { ...named[host], path: back };
      }
      for (const host of left.withdrawn) {
        if (!stillOurs(host)) continue;
        const earlier = left.before[host];
        if (earlier === undefined) delete entries[host];
        else entries[host] = earlier;
      }
    });
  }

  /**
   * After a rollout that published nothing (every host already ran its system): publishes the
   * planned entries as one release when the channel does not state them yet. Undefined: a
   * release was published already, or the channel states the plan.
   */
  async settle(action: Action): Promise<PublishedRelease | undefined> {
    if (this.#published.length > 0) return undefined;
    return this.#attempt(async () => {
      const read = await this.#read();
      if (statesEntries(read.trusted?.release.hosts ?? {}, read.entries)) return undefined;
      return publishedRelease(await this.#publish(read, "deploy", action));
    });
  }

  /**
   * `release refresh`: the channel's release signed again, as a new release of kind refresh
   * with the same action, health checks and entries (an entry naming a system that failed on
   * its host is replaced, as in every release) and a new `expires`. Hosts already run their
   * entries, so they only report. Resolves with the release it replaced and the new one.
   */
  refresh(): Promise<{ replaced: SignedRelease; release: SignedRelease }> {
    return this.#attempt(async () => {
      const read = await this.#read();
      const current = read.trusted;
      if (current === undefined) {
        throw new UsageError(
          `channel ${this.#o.releases.channel} has no release signed by a release key of the fleet: there is nothing to refresh`,
          "publish one with 'nixship release publish' or 'nixship deploy --via agent'",
        );
      }
      if (Object.keys(read.entries).length === 0) {
        throw new UsageError(
          `channel ${this.#o.releases.channel}'s release ${current.release.seq} names no host to refresh (a rollback that withdrew a first wave, or a dry run whose base cannot be read): its agents have no entry, and leave their hosts as they are${read.notes.length === 0 ? "" : ` (${read.notes.join("; ")})`}`,
          "publish a release that names the hosts ('nixship release publish'), or stop refreshing the channel",
        );
      }
      const { action, health, confirmTimeout, keepGenerations } = current.release;
      const release = await this.#publish(read, "refresh", action, {
        health,
        confirmTimeout,
        ...(keepGenerations ? { keepGenerations } : {}),
      });
      return { replaced: current, release };
    });
  }

  /**
   * `nixship rollback`: one rollback release that names, for each host, the system `to` picks,
   * or else the last system confirmed healthy on it before the one the channel names for it (so
   * repeated rollbacks walk back and never flip). Hosts that cannot go back are refused with
   * why; when none can, nothing is published.
   */
  publishRollback(
    hosts: readonly string[],
    to: RollbackTarget | undefined,
  ): Promise<RollbackRelease> {
    return this.#attempt(() => this.#rollbackOnce(hosts, to));
  }

  async #rollbackOnce(
    hosts: readonly string[],
    to: RollbackTarget | undefined,
  ): Promise<RollbackRelease> {
    const { store, releases, historyReleases } = this.#o;
    const refused = new Map<string, string>();
    const read = await this.#read();
    const current = read.trusted;
    if (current === undefined) {
      for (const name of hosts) {
        refused.set(
          name,
          `channel ${releases.channel} has no release yet: there is nothing to go back to`,
        );
      }
      return { refused, hosts: [], release: undefined };
    }
    const history = await this.#readHistory();
    const { entries } = read;
    const sources = {
      store,
      channel: releases.channel,
      trustedKeys: this.#trustedKeys,
      historyReleases,
      reportKeys: this.#o.reportKeys,
    };
    const wave: string[] = [];
    for (const name of hosts) {
      const target = await rollbackTarget(sources, name, to, current.release, history);
      if ("why" in target) {
        refused.set(name, target.why);
        continue;
      }
      const past = history.hosts.get(name) ?? [];
      if (!this.#o.allowFailed && hasFailed(past, target.path)) {
        refused.set(name, failedMessage(name, target.path, past));
        continue;
      }
      // The agent fetches it from the cache: a release naming a system the cache lacks (a
      // collection took it, or it was never pushed) would fail on every host it names.
      if ((await readNarInfo(store, target.path)) === undefined) {
        refused.set(
          name,
          `${target.path} is not in the cache ${store.url} (a 'cache gc' took it, or it was never pushed): push it first ('nixship push ${target.path} --to ${store.url}', from a machine whose store holds it), then roll back`,
        );
        continue;
      }
      entries[name] = { ...entries[name], path: target.path };
      wave.push(name);
    }
    if (wave.length === 0) return { refused, hosts: [], release: undefined };
    const named = wave.map((host) => ({ host, path: (entries[host] as ReleaseHost).path }));
    const release = await this.#publish(read, "rollback", "switch");
    return { refused, hosts: named, release };
  }

  /** Refuses, naming host, system and flag, a system that failed on its host. */
  #refuseFailed(
    history: HistoryRead,
    hosts: readonly { readonly host: string; readonly path: StorePath }[],
  ): void {
    if (this.#o.allowFailed === true) return;
    refuseFailed(history.hosts, hosts);
  }

  async #readHistory(): Promise<HistoryRead> {
    if (this.#history !== undefined) return this.#history;
    const { store, releases, reportKeys } = this.#o;
    const read = await readHistory(store, {
      channel: releases.channel,
      trustedKeys: this.#trustedKeys,
      ...(this.#o.historyReleases !== undefined ? { releases: this.#o.historyReleases } : {}),
    });
    if (reportKeys === undefined || reportKeys.size === 0) {
      this.#history = read;
      return read;
    }
    const { history, unbelieved } = await believedHistory(
      store,
      releases.channel,
      read,
      reportKeys,
    );
    for (const note of unbelieved.map(unbelievedNote)) {
      if (!this.#notes.includes(note)) this.#notes.push(note);
    }
    this.#history = history;
    return history;
  }

  /**
   * The channel as it stands now: its entries, each carried over unless it names a system that
   * failed on its host, with the plan's entries until this keeper has published a release.
   */
  async #read(): Promise<ChannelRead> {
    const { trusted, basis, replayed } = await readChannelToUpdate(
      this.#o.store,
      this.#o.releases.channel,
      this.#trustedKeys,
    );
    const history = await this.#readHistory();
    // A dry run's entries asked nothing: the next release carries those of the one it was on.
    const { base, note } = await carryOverBase(
      this.#o.store,
      this.#o.releases.channel,
      this.#trustedKeys,
      trusted,
    );
    const carried = carryOver(base?.release, history.hosts);
    const { entries } = carried;
    const notes = [
      ...(replayed === undefined
        ? []
        : [
            `the channel ${this.#o.releases.channel} named release ${replayed.named}, older than release ${replayed.newest}, which is on file and signed: an older release copied over the channel (a replay); built on release ${replayed.newest} instead`,
          ]),
      ...(note === undefined ? [] : [note]),
      ...carried.notes,
    ];
    if (this.#published.length === 0) Object.assign(entries, this.#planned);
    for (const [host, runs] of this.#o.leave ?? []) {
      const entry = entries[host];
      if (entry === undefined || entry.path === runs) continue;
      delete entries[host];
      notes.push(
        `${host}: runs ${runs}, not its channel entry ${entry.path} (changed since, and left as it is): the release names no entry for it, so that its agent leaves it on what it runs; a deploy that selects it gives it one again`,
      );
    }
    return { trusted, basis, entries, notes };
  }

  /**
   * `work` again on a fresh read when another publisher's release came between its read and its
   * publish, up to PUBLISH_ATTEMPTS times; then their release-conflict stands.
   */
  async #attempt<T>(work: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await work();
      } catch (err) {
        const lost = err instanceof OperationError && err.code === "release-conflict";
        if (!lost || attempt >= PUBLISH_ATTEMPTS) throw err;
      }
    }
  }

  /**
   * Reads the channel, lets `change` set this release's hosts (`named`: what the channel names,
   * before carry-over), and publishes over that read.
   */
  #publishOver(
    kind: ReleaseKind,
    action: Action,
    change: (
      entries: Record<string, ReleaseHost>,
      named: Readonly<Record<string, ReleaseHost>>,
    ) => void,
  ): Promise<SignedRelease> {
    return this.#attempt(async () => {
      const read = await this.#read();
      change(read.entries, read.trusted?.release.hosts ?? {});
      return this.#publish(read, kind, action);
    });
  }

  #entry(
    host: string,
    path: StorePath,
    secrets: HostSecrets | undefined,
    extras?: EntryExtras,
  ): Promise<ReleaseHost> {
    return hostEntry(this.#o.store, this.#o, host, path, secrets, extras);
  }

  async #publish(
    read: ChannelRead,
    kind: ReleaseKind,
    action: Action,
    checks: Pick<Release, "health" | "confirmTimeout" | "keepGenerations"> = releaseChecks(this.#o),
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
      hosts: read.entries,
      kind,
      action,
      ...checks,
      key,
      maxAge: this.#o.releases.maxAge,
      ...(this.#o.origin === undefined ? {} : { origin: this.#o.origin }),
      basis: read.basis,
      // Numbered from what a release key signed, never from what a bucket writer planted.
      after: read.trusted?.release.seq ?? 0,
    });
    this.#lastNamed = { ...read.entries };
    this.#published.push(signed);
    return signed;
  }
}

/** The wave's hosts whose entry in `named` (the channel's) is not their `expect`, with why. */
function changedSince(
  wave: readonly WaveEntry[],
  named: Readonly<Record<string, ReleaseHost>>,
): Map<string, string> {
  const refused = new Map<string, string>();
  for (const { host, expect } of wave) {
    const now = named[host]?.path;
    if (expect === undefined || now === expect) continue;
    refused.set(
      host,
      `the channel names ${now ?? "no system"} for it, not ${expect}, which this release expected: changed since, by another publisher; left as it is`,
    );
  }
  return refused;
}

/** A release as a deploy reports it: channel, number and digest. */
export function publishedRelease({ release, digest }: SignedRelease): PublishedRelease {
  return { channel: release.channel, seq: release.seq, digest };
}
