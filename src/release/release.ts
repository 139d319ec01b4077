// Signed releases: the manifest that tells a channel's hosts which system to run. Its types,
// constants and sequence rules; the stored form is release-canonical.ts, reading it back
// release-read.ts and release-parse.ts, signatures release-sign.ts. Pure.
import type { Action } from "../fleet/action.js";
import type { HealthChecks } from "../fleet/fleet.js";
import type { StorePath } from "../nix/store-path.js";

/** The version of a release that holds its hosts map (every release of at most SHARD_HOSTS hosts). */
export const RELEASE_VERSION = 1;

/**
 * The version of a sharded release: its file (the head) names, instead of the hosts map, the
 * digest and host count of each shard (release-shard.ts), which holds the entries of its hosts.
 * An agent older than it refuses it (the version is not one it knows).
 */
export const SHARDED_RELEASE_VERSION = 2;

export type ReleaseVersion = typeof RELEASE_VERSION | typeof SHARDED_RELEASE_VERSION;

/**
 * The most hosts a release names in one file: one naming more is published sharded, so that an
 * agent's work for a release does not grow with the fleet (one head of a few kB, one shard).
 */
export const SHARD_HOSTS = 256;

/** How many shards a sharded release of `hosts` hosts has. */
export function shardCount(hosts: number): number {
  return Math.ceil(hosts / SHARD_HOSTS);
}

/**
 * Put before the canonical JSON in the signed message, so a release signature can never pass as
 * a narinfo signature (whose fingerprint starts "1;/nix/store/"), nor the reverse.
 */
export const RELEASE_SIGNATURE_CONTEXT = "nixship-release-v1\n";

export const RELEASE_KINDS = ["deploy", "rollback", "refresh"] as const;

/**
 * rollback: a new, higher-numbered release that points hosts back at older paths; refresh: the
 * channel's release signed again with a later `expires` (`nixship release refresh`).
 */
export type ReleaseKind = (typeof RELEASE_KINDS)[number];

export interface ReleaseHost {
  readonly path: StorePath;
  /** The host's secrets; absent: the agent leaves the host's secrets as they are. */
  readonly secrets?: ReleaseSecrets;
  /**
   * The host's own checks (the fleet's policy per role), where they differ from the
   * release's; absent: the release's.
   */
  readonly policy?: ReleaseHostPolicy;
  /**
   * Reboot into the system (`deploy --reboot`): the agent sets it for the next boot, reboots,
   * and judges it after the boot; absent: a switch.
   */
  readonly reboot?: ReleaseReboot;
  /**
   * A store path whose bin/zstd rebuilds, from the cache's deltas, the paths of `path` the host
   * can (`nixship-activate --delta-tool`, docs/deltas.md), realised from the cache with the
   * cache's signatures required; absent: every path whole. An agent older than this field
   * refuses a release whose entries carry it (an unknown key): docs/agent.md, "Deltas".
   */
  readonly deltaTool?: StorePath;
}

/** How an agent reboots into its entry's system. */
export interface ReleaseReboot {
  /** Seconds the host has to come back on the new system. */
  readonly timeout: number;
  /** A host that fails after the reboot is rebooted into the previous system too. */
  readonly rollback: boolean;
}

/** A host's checks and limits in place of the release's (`Release` holds the same fields). */
export interface ReleaseHostPolicy {
  readonly health: HealthChecks;
  readonly confirmTimeout: number;
  readonly keepGenerations?: number;
}

/** The checks an agent applies for `host`: its entry's own, else the release's. */
export function checksFor(
  release: Pick<Release, "health" | "confirmTimeout" | "keepGenerations">,
  host: Pick<ReleaseHost, "policy"> | undefined,
): ReleaseHostPolicy {
  const from = host?.policy ?? release;
  return {
    health: from.health,
    confirmTimeout: from.confirmTimeout,
    ...(from.keepGenerations ? { keepGenerations: from.keepGenerations } : {}),
  };
}

/**
 * A host's secrets bundle, kept in the store at `secrets/HOST/BUNDLE` (ciphertexts only): the
 * release signs its digest, so a bundle changed in the store is refused.
 */
export interface ReleaseSecrets {
  /** sha256 (hex) of the bundle. */
  readonly bundle: string;
  /** The bundle's manifest digest: what the host's status reports once it is installed. */
  readonly manifest: string;
  /** A store path whose bin/age decrypts them; absent: age from the host's PATH. */
  readonly age?: StorePath;
}

export interface Release {
  /** 1: stored whole; 2: stored as a head and its shards (the hosts map is theirs, joined). */
  readonly version: ReleaseVersion;
  readonly channel: string;
  /** ≥ 1; a channel's releases are numbered in the order they were published. */
  readonly seq: number;
  /** ISO-8601 UTC with milliseconds, as `Date.prototype.toISOString` prints it. */
  readonly created: string;
  /**
   * When the release stops being valid, in the same form: hosts refuse it from then on, so a
   * channel frozen on an old release (by someone who can write the bucket but holds no release
   * key) stops being followed. Later than `created`.
   */
  readonly expires: string;
  /** The digest of the channel's release this one replaced; null for the first. */
  readonly previous: string | null;
  readonly kind: ReleaseKind;
  readonly action: Action;
  readonly health: HealthChecks;
  /** Seconds a host waits for confirmation before it rolls back; 0 disables. */
  readonly confirmTimeout: number;
  /**
   * After a confirmed activation, hosts keep their newest N generations (and the rollback
   * target), remove the rest and collect garbage; absent: they keep everything.
   */
  readonly keepGenerations?: number;
  /** Host name → what it runs. */
  readonly hosts: Readonly<Record<string, ReleaseHost>>;
}

/** One shard of a sharded release, as its head names it: the digest of its bytes, its hosts. */
export interface ShardRef {
  /** `sha256-<base64>` (SRI) of the shard's stored bytes. */
  readonly digest: string;
  /** How many hosts the shard names. */
  readonly hosts: number;
}

/**
 * A release file as stored, parsed but not checked against any key: a whole release (version 1,
 * `hosts`), or a sharded release's head (version 2, `shards`), whose hosts are in its shards.
 */
export interface ParsedHead {
  readonly head: ReleaseHead;
  /** Version 1: every host's entry. Undefined for a sharded release. */
  readonly hosts: Release["hosts"] | undefined;
  /** Version 2: the shards, in order of their index. Empty for version 1. */
  readonly shards: readonly ShardRef[];
  readonly signature: string | undefined;
  /** `sha256-<base64>` (SRI) of `bytes`: what the next release names as `previous`. */
  readonly digest: string;
  /** The stored form, byte for byte. */
  readonly bytes: Uint8Array;
  /** What a signature covers (see releaseSignedMessage). */
  readonly message: string;
}

export interface SignedHead extends ParsedHead {
  readonly signature: string;
}

/** A shard as stored (release-shard.ts): its place, its digest and its bytes. */
export interface StoredShard extends ShardRef {
  readonly index: number;
  readonly bytes: Uint8Array;
}

/**
 * A release as stored, parsed but not (yet) checked against any key, with its whole hosts map
 * (for a sharded release, joined from its shards, each checked against its digest).
 */
export interface ParsedRelease {
  readonly release: Release;
  /** Version 2: its shards (bytes included, each matching its digest); empty for version 1. */
  readonly shards?: readonly StoredShard[];
  /** `keyname:base64`; undefined when the stored form carries none. */
  readonly signature: string | undefined;
  /** `sha256-<base64>` (SRI) of `bytes`: what the next release names as `previous`. */
  readonly digest: string;
  /** The stored form, byte for byte. */
  readonly bytes: Uint8Array;
  /** What a signature covers (see releaseSignedMessage). */
  readonly message: string;
}

export interface SignedRelease extends ParsedRelease {
  readonly signature: string;
}

/** A release without its hosts map: what one host keeps of a release it applies. */
export type ReleaseHead = Omit<Release, "hosts">;

export function headOf(release: Release): ReleaseHead {
  const { hosts: _hosts, ...head } = release;
  return head;
}

export type SequenceCheck =
  | { readonly ok: true }
  | {
      readonly ok: false;
      /** stale: older than the release last applied; same: that very release. */
      readonly reason: "stale" | "same";
      readonly seq: number;
      readonly lastApplied: number;
    };

/** Whether a host that last applied `lastAppliedSeq` should apply `release`. */
export function checkSequence(
  release: ReleaseHead,
  lastAppliedSeq: number | undefined,
): SequenceCheck {
  if (lastAppliedSeq === undefined || release.seq > lastAppliedSeq) return { ok: true };
  return {
    ok: false,
    reason: release.seq === lastAppliedSeq ? "same" : "stale",
    seq: release.seq,
    lastApplied: lastAppliedSeq,
  };
}

export type ExpiryCheck = { readonly ok: true } | { readonly ok: false; readonly message: string };

/** Whether `release` is still valid at `now` (before its `expires`). */
export function checkExpiry(release: ReleaseHead, now: Date): ExpiryCheck {
  if (now.getTime() < Date.parse(release.expires)) return { ok: true };
  return {
    ok: false,
    message: `release ${release.seq} of channel ${release.channel} expired at ${release.expires} (it is ${now.toISOString()}): a channel that is not renewed may be frozen on an old release; the publisher renews it with 'nixship release refresh'`,
  };
}

/** Whether `release` comes after `other` (or there is no other) in its channel. */
export function isNewer(release: Release, other: Release | undefined): boolean {
  return checkSequence(release, other?.seq).ok;
}
