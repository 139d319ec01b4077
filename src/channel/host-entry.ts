// A host's entry in a release: its system, its secrets bundle (stored first, under its digest,
// which the entry signs), its own checks where they differ from the release's, its reboot, and
// the delta tool it fetches paths as deltas with.
import type { HealthChecks } from "../fleet/fleet.js";
import type { HostSecrets } from "../host/activation-session.js";
import type { StorePath } from "../nix/store-path.js";
import {
  checksFor,
  type ReleaseHost,
  type ReleaseHostPolicy,
  type ReleaseReboot,
} from "../release/release.js";
import { canonicalJson } from "../release/release-canonical.js";
import type { ObjectStore } from "../store/object-store.js";
import { putSecretsBundle } from "./secrets-store.js";

/** The checks a deployer's releases carry, for the release and for each host. */
export interface EntryChecks {
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
}

/** What every release states for the hosts without checks of their own. */
export function releaseChecks(checks: EntryChecks): ReleaseHostPolicy {
  return {
    health: checks.health,
    confirmTimeout: checks.confirmTimeout,
    ...(checks.keepGenerations ? { keepGenerations: checks.keepGenerations } : {}),
  };
}

/** What an entry carries beside its system and secrets; each absent: not in the entry. */
export interface EntryExtras {
  readonly reboot?: ReleaseReboot | undefined;
  /** The delta tool (docs/deltas.md), when the host's policy lets it fetch deltas. */
  readonly deltaTool?: StorePath | undefined;
}

/**
 * A host's entry: its system, and its secrets bundle (stored first, under its digest, which
 * the entry signs); no secrets: the agent leaves the host's secrets alone.
 */
export async function hostEntry(
  store: ObjectStore,
  checks: EntryChecks,
  host: string,
  path: StorePath,
  secrets: HostSecrets | undefined,
  { reboot, deltaTool }: EntryExtras = {},
): Promise<ReleaseHost> {
  const policy = ownPolicy(checks, host, path);
  const own = {
    ...(policy === undefined ? {} : { policy }),
    ...(reboot === undefined
      ? {}
      : { reboot: { timeout: reboot.timeout, rollback: reboot.rollback } }),
    ...(deltaTool === undefined ? {} : { deltaTool }),
  };
  if (secrets === undefined) return { path, ...own };
  const bundle = await putSecretsBundle(store, host, secrets.bundle);
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
function ownPolicy(
  checks: EntryChecks,
  host: string,
  path: StorePath,
): ReleaseHostPolicy | undefined {
  const policy = checks.policyOf?.(host, path);
  if (policy === undefined) return undefined;
  const release = checksFor(releaseChecks(checks), undefined);
  return canonicalJson(checksFor(policy, undefined)) === canonicalJson(release)
    ? undefined
    : checksFor(policy, undefined);
}
