// The deploy's first reading of the world: the selected hosts' systems built once, their closures
// pushed signed into the fleet's cache (to execute), the cache served when asked, each host's secrets.

import { requireCacheInfo } from "../cache/cache-info.js";
import { type ServedRequest, serveStoreWhileRunning } from "../cache/serve.js";
import { deployHostKeys } from "../delivery/host-keys.js";
import { namedDeltaTool } from "../fleet/delta-tool.js";
import type { FleetHost, HealthChecks } from "../fleet/fleet.js";
import type { HostSecrets } from "../host/activation-session.js";
import type { PathInfo } from "../nix/closure.js";
import { parsePublicKey } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import { openStore } from "../store/url.js";
import { type BuildResult, buildSystems } from "./build.js";
import { choosePusher } from "./build-host-push.js";
import { resolveBuildPlace } from "./build-place.js";
import { reportBuildProgress } from "./build-progress.js";
import type { DeployOptions } from "./deploy-options.js";
import { hostSecrets } from "./host-secrets.js";
import { throwIfInterrupted } from "./interrupts.js";
import { pushSystems } from "./push-systems.js";
import { localSystemFiles, type SystemFiles } from "./system-files.js";

// --- prepare --------------------------------------------------------------------------------

/** What the prepare stage leaves for the rest: the systems, and where the hosts fetch them. */
export interface Prepared {
  readonly built: BuildResult;
  /** The checks systems declare themselves (system-health.ts), by system. */
  readonly systemHealth: ReadonlyMap<StorePath, HealthChecks>;
  /** Where the hosts substitute from; none: the delivery brings the closure (ssh copy). */
  readonly substituters: readonly string[];
  /** The keys the hosts trust for those substituters. */
  readonly trustedKeys: readonly string[];
  /** Each host's secrets (none when the fleet has no secrets section). */
  readonly secrets: ReadonlyMap<string, HostSecrets>;
  /**
   * The closures the push read from this machine's store, by path (empty without a push): the
   * survey takes the desired systems' closures from it instead of asking Nix again.
   */
  readonly pushed: ReadonlyMap<StorePath, PathInfo>;
  /** Stops serving the cache (when `serveCache` started it). */
  close(): Promise<void>;
}

/**
 * Builds the selected hosts' systems (one evaluation, one build); to execute, pushes their
 * closures signed into the fleet's cache (with a key) and serves it when asked to.
 * `whilePushing` is told the systems built and the closure the push read from this machine's
 * store as soon as it has read it, before any upload (not told when there is no such push):
 * the hosts can be asked what they run while the push goes on.
 */
export async function prepare(
  options: Pick<
    DeployOptions,
    "fleet" | "fleetDir" | "key" | "serveCache" | "emit" | "nix" | "signal" | "buildHost"
  > &
    Partial<Pick<DeployOptions, "fleetArg">>,
  hosts: readonly FleetHost[],
  execute: boolean,
  whilePushing?: (built: BuildResult, closure: ReadonlyMap<StorePath, PathInfo>) => void,
): Promise<Prepared> {
  const { fleet, emit } = options;
  // A cache URL with a typo fails now, not after the build (deploy never makes a cache).
  if (fleet.cache !== undefined && options.key !== undefined && execute) {
    const store = await openStore(fleet.cache.url);
    await requireCacheInfo(store).finally(() => store.close());
  }
  // So does a secret that is missing, or not encrypted to a host that gets it.
  const secrets =
    fleet.secrets === undefined
      ? new Map<string, HostSecrets>()
      : await hostSecrets(
          fleet,
          hosts,
          await deployHostKeys(fleet, hosts, options.fleetDir),
          options.fleetArg,
        );
  const where = await resolveBuildPlace(fleet, options.buildHost);
  // A build host pushes the closures it built itself when it has nixship, for a deploy that
  // pushes to a cache its hosts substitute from; else they come back here for the push.
  const pusher =
    where.hostSsh === undefined ||
    fleet.cache === undefined ||
    options.key === undefined ||
    !execute
      ? undefined
      : await choosePusher(where.hostSsh, fleet.cache, options.serveCache !== undefined);
  emit({
    type: "build-start",
    systems: new Set(hosts.map((h) => JSON.stringify(h.system))).size,
    hosts: hosts.length,
    ...(where.builders.length === 0 ? {} : { builders: where.builders.map((b) => b.uri) }),
    ...(where.host === undefined ? {} : { buildHost: where.host }),
  });
  const buildStart = performance.now();
  const progress = reportBuildProgress(emit);
  const built = await buildSystems(hosts, options.fleetDir, {
    ...(options.nix ? { nix: options.nix } : {}),
    where,
    leaveOnHost: pusher?.kind === "nixship",
    onProgress: progress.onProgress,
    ...(options.signal ? { signal: options.signal } : {}),
  }).finally(progress.stop);
  emit({
    type: "build-done",
    seconds: (performance.now() - buildStart) / 1000,
    systems: built.systems,
    ...(built.builtOn.length === 0 ? {} : { builtOn: built.builtOn }),
    ...(built.host === undefined ? {} : { buildHost: built.host }),
    ...(built.host === undefined
      ? {}
      : {
          closures:
            built.leftOnHost !== undefined && pusher?.kind === "nixship"
              ? { way: "from-host", nixship: pusher.version }
              : {
                  way: "copied-back",
                  ...(pusher?.kind === "copy-back" ? { why: pusher.why } : {}),
                },
        }),
    ...(built.unusable.length === 0
      ? {}
      : { unusable: built.unusable.map(({ builder, kind, said }) => ({ builder, kind, said })) }),
  });
  // The checks each system declares itself (nixship/health.json), read once per system.
  const systemHealth = new Map<StorePath, HealthChecks>();
  for (const path of new Set(built.byHost.values())) {
    const health = await systemFiles(built, path).health(path);
    if (health !== undefined) systemHealth.set(path, health);
  }
  const nothingServed = {
    built,
    systemHealth,
    substituters: [],
    trustedKeys: [],
    secrets,
    pushed: new Map<StorePath, PathInfo>(),
    close: async () => {},
  };
  if (fleet.cache === undefined || options.key === undefined || !execute) return nothingServed;
  throwIfInterrupted(options.signal);

  const store = await openStore(fleet.cache.url);
  try {
    // The age package the hosts decrypt secrets with, when the fleet names one, is realised
    // from the cache like the systems; so is the delta tool the fleet names (a zstd of a
    // host's own system, the default, is on the host already).
    const tool = namedDeltaTool(fleet.deltas);
    const roots = [
      ...new Set([
        ...built.byHost.values(),
        ...(fleet.secrets?.age === undefined ? [] : [fleet.secrets.age]),
        ...(tool === undefined ? [] : [tool]),
      ]),
    ];
    const { closure: pushed } = await pushSystems({
      cacheUrl: fleet.cache.url,
      store,
      roots,
      key: options.key,
      trustedKeys: fleet.cache.publicKeys.map((k) => parsePublicKey(k)),
      built,
      pusher,
      hostSsh: where.hostSsh,
      emit,
      ...(options.nix ? { nix: options.nix } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      ...(whilePushing === undefined
        ? {}
        : { onClosureRead: (closure) => whilePushing(built, closure) }),
    });
    if (options.serveCache === undefined) {
      await store.close();
      const { substituter } = fleet.cache;
      return substituter === undefined
        ? { ...nothingServed, pushed }
        : {
            ...nothingServed,
            pushed,
            substituters: [substituter],
            trustedKeys: fleet.cache.publicKeys,
          };
    }
    const { host, port } = options.serveCache;
    const served = await serveStoreWhileRunning(store, host, port, refusalsOf(emit));
    return {
      built,
      systemHealth,
      substituters: [served.url],
      trustedKeys: fleet.cache.publicKeys,
      secrets,
      pushed,
      close: served.close,
    };
  } catch (err) {
    await store.close();
    throw err;
  }
}

/** Where a built system's own files are read: the build host's store when it stayed there. */
export function systemFiles(
  built: Partial<Pick<BuildResult, "leftOnHost">>,
  path: StorePath,
): SystemFiles {
  return built.leftOnHost?.paths.has(path) ? built.leftOnHost.files : localSystemFiles;
}

/** The most refusals of the served cache a deploy reports (Nix retries each a few times). */
const REFUSALS_REPORTED = 20;

/**
 * What the served cache refused or cut (a NAR past its signed size, a narinfo that does not
 * parse, a store that failed), each object once, up to REFUSALS_REPORTED: a host that then
 * fails in its realise has the deployer's log say why.
 */
function refusalsOf(emit: DeployOptions["emit"]): (entry: ServedRequest) => void {
  const told = new Set<string>();
  return ({ method, key, status, error }) => {
    if (error === undefined || told.has(key) || told.size >= REFUSALS_REPORTED) return;
    told.add(key);
    emit({ type: "cache-refused", method, key: key.slice(0, 300), status, error });
  };
}
