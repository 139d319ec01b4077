// `nixship plan` and `nixship deploy`, as stages: prepare (build the selected hosts' systems
// once, push the closures signed into the cache, serve it), survey (ask every host what it
// runs), plan (pure; then each host's closure diff, read by closure-diffs.ts), execute (roll
// out, then record the results).
import { setTimeout as delay } from "node:timers/promises";
import { requireCacheInfo } from "../cache/cache-info.js";
import { CacheLease } from "../cache/gc-lease.js";
import type { NixOptions } from "../cache/local-nix.js";
import { queryClosure, validPaths } from "../cache/local-nix.js";
import { serveStoreWhileRunning } from "../cache/serve.js";
import type {
  ChannelCapability,
  Delivery,
  DeployRequest,
  HostStatus,
  WaveHost,
} from "../delivery/delivery.js";
import { collectHostKeys } from "../delivery/host-keys.js";
import { InterruptedError, UsageError } from "../errors.js";
import type { Action } from "../fleet/action.js";
import {
  DEFAULT_MAX_CONNECTIONS,
  type DeliveryMode,
  type Fleet,
  type FleetHost,
  type HealthChecks,
  type RolloutPolicy,
} from "../fleet/fleet.js";
import { hostPolicy, type PolicyOverride, roleOf } from "../fleet/host-policy.js";
import {
  type ClosureInfo,
  connectionsOf,
  type DeployPlan,
  type HostPlan,
  type HostState,
  type Pinning,
  type PlannedHost,
  planDeploy,
} from "../fleet/plan.js";
import { planDeltaPairs } from "../fleet/plan-deltas.js";
import { selectHosts } from "../fleet/select.js";
import { countsBoots } from "../host/activation.js";
import { buildDeployRequest, type HostSecrets } from "../host/activation-session.js";
import type { SecretKey } from "../nix/keys.js";
import { parseStorePath, type StorePath } from "../nix/store-path.js";
import { runningGeneration } from "../status/next-record.js";
import { openStore } from "../store/url.js";
import { interruptReason } from "../util/interrupt-reason.js";
import { mapLimit } from "../util/pool.js";
import { type bootParts, rebootChanges } from "./boot-parts.js";
import { type BuildResult, buildSystems } from "./build.js";
import { choosePusher } from "./build-host-push.js";
import { resolveBuildPlace } from "./build-place.js";
import { reportBuildProgress } from "./build-progress.js";
import { readPlanClosures } from "./closure-diffs.js";
import { cacheKeys, deltaToolFor, planDeltas, publishPlanDeltas } from "./deltas.js";
import { type DeployOrigin, deployOrigin } from "./deploy-origin.js";
import type { DeployEvent, HostResult } from "./events.js";
import { hostSecrets } from "./host-secrets.js";
import { deliveryMode, openDelivery } from "./open-delivery.js";
import { judgeBootRequest, pendingBootOf } from "./pending-boot.js";
import { refuseUnpinnedHosts } from "./pinned-hosts.js";
import { withBehindRollouts } from "./plan-behind.js";
import { recordResults } from "./push-records.js";
import { pushSystems } from "./push-systems.js";
import { type RolloutRecorderOptions, recordRollout } from "./rollout-recorder.js";
import { rolloutSucceeded, runRollout } from "./run-rollout.js";
import { checkServedAddress } from "./served-cache.js";
import { localSystemFiles, type SystemFiles } from "./system-files.js";
import { withSystemHealth } from "./system-health.js";

export interface DeployOptions {
  readonly fleet: Fleet;
  /** The fleet file's directory: relative flake references are resolved against it. */
  readonly fleetDir: string;
  readonly selector: string | undefined;
  readonly action: Action;
  /** The fleet's policy with the flags laid over it: the rollout's own numbers. */
  readonly policy: RolloutPolicy;
  /** The policy flags given: they win over every role's policy too (host-policy.ts). */
  readonly policyFlags?: PolicyOverride;
  /** Signs what is pushed into the fleet's cache; without it nothing is pushed. */
  readonly key: SecretKey | undefined;
  /** Serve the fleet's cache on this host:port for the hosts while deploying. */
  readonly serveCache: { readonly host: string; readonly port: number } | undefined;
  readonly emit: (event: DeployEvent) => void;
  readonly nix?: NixOptions;
  /** `--build-host`: build the systems in this host's store (over `build.host`). */
  readonly buildHost?: string | undefined;
  /** `--via`: the delivery mode the selected hosts must have (default: theirs). */
  readonly via?: DeliveryMode | undefined;
  /** Signs the release (agent hosts). */
  readonly releaseKey?: SecretKey | undefined;
  /**
   * Publish one release for every selected host and return without watching; only for modes
   * whose delivery can (`Delivery.channel.publishOnly`: agent).
   */
  readonly async?: boolean;
  /** Milliseconds between the deployer's reads of agent status. */
  readonly agentPollInterval?: number;
  /** `--skip-unreachable`: hosts that cannot be reached are listed, not counted as failed. */
  readonly skipUnreachable?: boolean;
  /** `--allow-failed` (agent): a release may name a system that failed on its host. */
  readonly allowFailed?: boolean;
  /**
   * `--wait-reachable S`: seconds the survey waits for hosts that cannot be reached yet (ssh:
   * sshd, ssm: the instance's registration, agent: its first report), asking again every few
   * seconds; 0 or undefined: hosts are asked once.
   */
  readonly waitReachable?: number;
  /** A rollback of a rollout: its record names the rollout it undoes and the hosts it leaves. */
  readonly rollback?: RolloutRecorderOptions["rollback"];
  /**
   * Aborted on an interrupt. Before the rollout the deploy ends with an InterruptedError (no
   * host changed); during it, no new wave starts, the wave in flight is aborted and waited
   * for a bounded time, and the deploy ends with its summary.
   */
  readonly signal?: AbortSignal;
}

export interface DeployReport {
  readonly plan: DeployPlan;
  readonly results: readonly HostResult[];
  readonly ok: boolean;
  /** Agent hosts: the releases the deploy published (sequence numbers, in order). */
  readonly releases: readonly number[];
  /**
   * Agent hosts: channel entries the deploy replaced because they named a system that failed
   * on their host (one line each, for the operator).
   */
  readonly channelNotes: readonly string[];
}

/** How many hosts are asked for their state at once. */
const STATUS_CONCURRENCY = 32;
/**
 * Paths a host's store is asked about at most (about 80 bytes each, sent with the status
 * query); past it the plan counts from the system the host runs.
 */
const MAX_ASKED_PATHS = 20_000;

/** Builds, pushes and plans; with `execute`, rolls out. */
export async function deploy(options: DeployOptions, execute: boolean): Promise<DeployReport> {
  const { fleet, signal } = options;
  const hosts = selectHosts(fleet, options.selector);
  const mode = deliveryMode(hosts, options.via);
  // Before anything is built or any host changes, as doctor checks it.
  if (execute) checkServedAddress(options.serveCache, hosts);
  if (mode === "agent" && execute && options.releaseKey === undefined) {
    throw new UsageError(
      "deploying to agent hosts publishes a signed release: --release-key SECRET_FILE is needed",
    );
  }
  const started = performance.now();
  // The agent delivery asks for a host's checks when it publishes, after the build, which
  // reads the checks the systems declare themselves.
  let prepared: Prepared | undefined;
  // Who runs it and from what: named by its rollout record, and by the releases it publishes.
  const origin = execute ? await deployOrigin(hosts, options.fleetDir) : undefined;
  const opened = await openDelivery(fleet, hosts, {
    via: mode,
    releaseKey: options.releaseKey,
    ...(origin === undefined ? {} : { origin }),
    policy: options.policy,
    policyOf: (host, path) => policyOf(options, host, prepared?.systemHealth.get(path)),
    storedStatus: !execute,
    ...(options.agentPollInterval !== undefined
      ? { agentPollInterval: options.agentPollInterval }
      : {}),
    allowFailed: options.allowFailed === true,
  });
  // A deploy that pushes holds a lease on the cache from before its push until its status
  // records are written (they root what it deployed): no collection sweeps in between.
  const lease =
    execute && fleet.cache !== undefined && options.key !== undefined
      ? await leaseCache(fleet.cache.url, options).catch(async (err: unknown) => {
          await opened.close();
          throw err;
        })
      : undefined;
  try {
    // Refused before anything is built.
    if (execute && options.async === true) publisherOf(opened.delivery, mode);
    const ready = await prepare(options, hosts, execute).catch(interruptedBefore(signal));
    prepared = ready;
    try {
      throwIfInterrupted(signal);
      const found = await survey(opened.delivery, hosts, ready.built, options).catch(
        interruptedBefore(signal),
      );
      throwIfInterrupted(signal);
      const surveyed = planFromSurvey(
        options.action,
        hosts,
        ready,
        found,
        (host, desired) => ({
          ...policyOf(options, host, ready.systemHealth.get(desired)),
          role: roleOf(fleet.policies, host),
        }),
        options.policy,
      );
      const planned = await withBehindRollouts(fleet.cache?.url, surveyed).catch(
        interruptedBefore(signal),
      );
      // Where neither the deployer nor the cache has a running system, a mode that can ask
      // its hosts at once (ssh) asks one host that runs it.
      const hostClosure = opened.delivery.closure?.bind(opened.delivery);
      const byName = new Map(hosts.map((h) => [h.name, h]));
      const { diffs, closures } = await readPlanClosures(planned, found.pathInfos, {
        cacheUrl: fleet.cache?.url,
        signal,
        onRead: (read) => options.emit({ type: "diff-read", ...read }),
        ...(hostClosure !== undefined
          ? {
              askHost: (name: string, system: StorePath) =>
                hostClosure(byName.get(name) as FleetHost, system, signal),
            }
          : {}),
      }).catch(interruptedBefore(signal));
      throwIfInterrupted(signal);
      const connections =
        opened.mode === "ssh"
          ? connectionsOf(planned, fleet.ssh.maxConnections ?? DEFAULT_MAX_CONNECTIONS)
          : undefined;
      // Hosts that substitute from the cache can use deltas (a copy over ssh brings paths whole);
      // a plan alone takes it that the deploy will let them (a substituter, --serve-cache).
      const substitute = execute ? substitutesFromCache(mode, ready) : fleet.cache !== undefined;
      const deltaPairs =
        substitute && fleet.cache !== undefined
          ? planDeltaPairs(
              planned.hosts,
              closures,
              (name) =>
                deltaToolFor(fleet, policyOf(options, byName.get(name) as FleetHost)) !== undefined,
            )
          : undefined;
      const deltas =
        deltaPairs !== undefined && fleet.cache !== undefined
          ? await planDeltas(
              { url: fleet.cache.url, trusted: cacheKeys(fleet.cache) },
              deltaPairs,
              signal,
            ).catch(interruptedBefore(signal))
          : undefined;
      throwIfInterrupted(signal);
      const plan: DeployPlan = {
        ...planned,
        diffs,
        ...(connections === undefined ? {} : { connections }),
        ...(deltas === undefined ? {} : { deltas }),
      };
      options.emit({ type: "plan", plan });
      if (!execute) return { plan, results: [], ok: true, releases: [], channelNotes: [] };
      refuseUnpinnedHosts({
        plan,
        hosts,
        ssh: fleet.ssh,
        policyFor: (host, desired) => policyOf(options, host, ready.systemHealth.get(desired)),
        systemHealth: ready.systemHealth,
      });
      if (deltaPairs !== undefined && fleet.cache !== undefined && options.key !== undefined) {
        if (deltaPairs.hosts.length > 0 || deltaPairs.unread.length > 0) {
          await publishPlanDeltas({
            cacheUrl: fleet.cache.url,
            key: options.key,
            trusted: cacheKeys(fleet.cache),
            planned: deltaPairs,
            emit: options.emit,
            signal,
          }).catch(interruptedBefore(signal));
          throwIfInterrupted(signal);
        }
      }
      return await executePlan({
        options,
        hosts,
        plan,
        mode: opened.mode,
        delivery: opened.delivery,
        request: (host, planned) => deployRequest(options, ready, host, planned, substitute),
        started,
        ...(origin === undefined ? {} : { origin }),
      });
    } finally {
      await ready.close();
    }
  } finally {
    await lease?.release();
    await opened.close();
  }
}

/** The deploy's lease on the fleet's cache (gc-lease.ts), its waits told as events. */
async function leaseCache(
  url: string,
  options: Pick<DeployOptions, "emit" | "signal">,
): Promise<{ release(): Promise<void> }> {
  const store = await openStore(url);
  try {
    // A cache URL with a typo fails here, before a lease is written into it.
    await requireCacheInfo(store);
    const lease = await CacheLease.take(store, "deploy", {
      ...(options.signal ? { signal: options.signal } : {}),
      onEvent: (e) =>
        options.emit(
          e.type === "waiting-for-gc"
            ? {
                type: "gc-wait",
                by: e.holder.by,
                since: e.holder.since,
                until: e.until.toISOString(),
              }
            : { type: "lease-renew-failed", message: e.message },
        ),
    });
    return {
      release: async () => {
        await lease.release();
        await store.close();
      },
    };
  } catch (err) {
    await store.close();
    throw err;
  }
}

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
  /** Stops serving the cache (when `serveCache` started it). */
  close(): Promise<void>;
}

/**
 * Builds the selected hosts' systems (one evaluation, one build); to execute, pushes their
 * closures signed into the fleet's cache (with a key) and serves it when asked to.
 */
export async function prepare(
  options: Pick<
    DeployOptions,
    "fleet" | "fleetDir" | "key" | "serveCache" | "emit" | "nix" | "signal" | "buildHost"
  >,
  hosts: readonly FleetHost[],
  execute: boolean,
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
      : await hostSecrets(fleet, hosts, await collectHostKeys(fleet, hosts));
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
  const built = await buildSystems(
    hosts,
    options.fleetDir,
    options.nix,
    where,
    pusher?.kind === "nixship",
    progress.onProgress,
  ).finally(progress.stop);
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
    close: async () => {},
  };
  if (fleet.cache === undefined || options.key === undefined || !execute) return nothingServed;
  throwIfInterrupted(options.signal);

  const store = await openStore(fleet.cache.url);
  try {
    // The age package the hosts decrypt secrets with, when the fleet names one, is realised
    // from the cache like the systems.
    const roots = [
      ...new Set([
        ...built.byHost.values(),
        ...(fleet.secrets?.age === undefined ? [] : [fleet.secrets.age]),
        // The delta tool hosts apply deltas with, realised like the systems.
        ...(fleet.deltas === undefined ? [] : [fleet.deltas.tool]),
      ]),
    ];
    await pushSystems({
      cacheUrl: fleet.cache.url,
      store,
      roots,
      key: options.key,
      built,
      pusher,
      hostSsh: where.hostSsh,
      emit,
      ...(options.nix ? { nix: options.nix } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    if (options.serveCache === undefined) {
      await store.close();
      const { substituter } = fleet.cache;
      return substituter === undefined
        ? nothingServed
        : { ...nothingServed, substituters: [substituter], trustedKeys: fleet.cache.publicKeys };
    }
    const { host, port } = options.serveCache;
    const served = await serveStoreWhileRunning(store, host, port);
    return {
      built,
      systemHealth,
      substituters: [served.url],
      trustedKeys: fleet.cache.publicKeys,
      secrets,
      close: served.close,
    };
  } catch (err) {
    await store.close();
    throw err;
  }
}

/** The policy `host` is deployed with: the fleet's, its role's (`policies`), then the flags. */
export function policyOf(
  options: Pick<DeployOptions, "fleet" | "policy" | "policyFlags">,
  host: FleetHost,
  systemHealth?: HealthChecks,
): RolloutPolicy {
  const policy = hostPolicy(options.policy, options.fleet.policies, host, options.policyFlags);
  return { ...policy, health: withSystemHealth(policy.health, systemHealth) };
}

/**
 * Whether the deploy's hosts substitute from the fleet's cache: agent hosts always (through
 * their agent's proxy), the others when the deploy gives them substituters (else the closure
 * is copied to them whole).
 */
export function substitutesFromCache(
  mode: DeliveryMode,
  prepared: Pick<Prepared, "substituters">,
): boolean {
  return mode === "agent" || prepared.substituters.length > 0;
}

/**
 * What a host is asked to do: its system, from where, and its policy's checks and limits;
 * `fromCache`: the host substitutes from the cache (substitutesFromCache), so it may be given
 * the delta tool.
 */
export function deployRequest(
  options: Pick<DeployOptions, "action" | "fleet" | "policy" | "policyFlags">,
  prepared: Pick<Prepared, "substituters" | "trustedKeys" | "secrets" | "systemHealth">,
  host: FleetHost,
  planned: PlannedHost,
  fromCache: boolean,
): DeployRequest {
  const { desired } = planned;
  const policy = policyOf(options, host, prepared.systemHealth.get(desired));
  const reboot = { timeout: policy.rebootTimeout, rollback: policy.rebootRollback };
  const judgeBoot = judgeBootRequest(planned, reboot);
  return buildDeployRequest({
    path: desired,
    action: options.action,
    substituters: prepared.substituters,
    trustedKeys: prepared.trustedKeys,
    checks: policy,
    host,
    activationTimeout: policy.activationTimeout,
    secrets: prepared.secrets.get(host.name),
    ...(planned.rebooting ? { reboot } : {}),
    ...(judgeBoot === undefined ? {} : { judgeBoot }),
    // The next deploy judges the boot this one sets (docs/reboots.md).
    recordBoot: true,
    deltaTool: fromCache ? deltaToolFor(options.fleet, policy) : undefined,
  });
}

/** Where a built system's own files are read: the build host's store when it stayed there. */
function systemFiles(
  built: Partial<Pick<BuildResult, "leftOnHost">>,
  path: StorePath,
): SystemFiles {
  return built.leftOnHost?.paths.has(path) ? built.leftOnHost.files : localSystemFiles;
}

// --- survey ---------------------------------------------------------------------------------

/** What the survey found: each host's state, and the closures the planner needs. */
export interface Survey {
  /** In the order of the hosts surveyed. */
  readonly states: readonly HostState[];
  /** The desired closures, and the current ones the deployer has too. */
  readonly pathInfos: ReadonlyMap<StorePath, ClosureInfo>;
}

/**
 * Asks the local store what the systems involved hold, and every host what it runs and which of
 * the desired closures' paths its store lacks (where its mode can tell).
 */
export async function survey(
  delivery: Pick<Delivery, "status">,
  hosts: readonly FleetHost[],
  built: Pick<BuildResult, "byHost"> & Partial<Pick<BuildResult, "leftOnHost">>,
  options: Pick<DeployOptions, "nix" | "signal" | "waitReachable" | "emit">,
): Promise<Survey> {
  const pathInfos = new Map<StorePath, ClosureInfo>();
  const desired = [...new Set(built.byHost.values())];
  // Systems left on the build host are described by its Nix; the others by the local one.
  const onHost = built.leftOnHost;
  const here = desired.filter((p) => !onHost?.paths.has(p));
  for (const info of await queryClosure(here, options.nix)) pathInfos.set(info.path, info);
  if (onHost !== undefined) {
    const there = desired.filter((p) => onHost.paths.has(p));
    for (const info of await queryClosure(there, onHost.nix)) pathInfos.set(info.path, info);
  }
  // Every host is asked about the union of the desired closures: one list, however many
  // systems; the planner keeps what each host's own closure needs.
  const asked = pathInfos.size <= MAX_ASKED_PATHS ? [...pathInfos.keys()] : [];
  // Each desired system's kernel, initrd and modules, read once.
  const parts = new Map<StorePath, ReturnType<typeof bootParts>>();
  const partsOf = (path: StorePath) => {
    const known = parts.get(path) ?? systemFiles(built, path).bootParts(path);
    parts.set(path, known);
    return known;
  };
  const ask = async (host: FleetHost): Promise<Asked> => {
    // A tag target stands for instances unknown until SSM runs the command on them.
    if (host.delivery === "ssm" && host.targets !== undefined) {
      return {
        state: { kind: "reported", current: undefined, generation: undefined },
        ready: true,
      };
    }
    const s = await delivery.status(host, options.signal, asked);
    const desired = built.byHost.get(host.name);
    const pendingBoot = pendingBootOf(s);
    const rebootFor =
      s.reachable && s.reboot && desired !== undefined
        ? rebootChanges(await partsOf(desired), s.reboot.booted)
        : undefined;
    return s.reachable
      ? {
          state: {
            kind: "reported",
            current: s.current ? parseStorePath(s.current).path : undefined,
            // Its generation only when the profile holds the system it runs (a pending boot's
            // belongs to another): the number the plan shows and the record keeps with it.
            generation: runningGeneration(s) ?? undefined,
            ...(s.missing ? { missing: new Set(s.missing) } : {}),
            ...(s.secrets ? { secrets: s.secrets } : {}),
            ...(s.stored ? { stored: s.stored } : {}),
            ...(s.failed ? { failed: s.failed.reason } : {}),
            ...(rebootFor ? { rebootFor } : {}),
            ...(countsBoots(s.boot) === undefined ? {} : { countsBoots: countsBoots(s.boot) }),
            ...(pendingBoot === undefined ? {} : { pendingBoot }),
            ...pinningOf(host, s),
          },
          ready: s.reported !== false,
        }
      : {
          state: {
            kind: "unreachable",
            error: s.error,
            ...(s.hostKey ? { hostKey: true as const } : {}),
          },
          ready: false,
        };
  };
  const answers = await mapLimit(hosts, STATUS_CONCURRENCY, ask);
  if (options.waitReachable) await awaitReachable(hosts, answers, ask, options);
  const states = answers.map((a) => a.state);
  // What the hosts run now is known here only if the deployer has it too; otherwise the
  // planner counts the whole closure as to be transferred (for hosts whose store was not asked).
  const currents = states.flatMap((s) => (s.kind === "reported" && s.current ? [s.current] : []));
  const local = await validPaths([...new Set(currents)], options.nix);
  for (const info of await queryClosure([...local], options.nix)) pathInfos.set(info.path, info);
  return { states, pathInfos };
}

/** Whose trust decides what `host` realises, from its answer (see `Pinning`). */
function pinningOf(
  host: FleetHost,
  s: Extract<HostStatus, { reachable: true }>,
): { pinning?: Pinning } {
  if (host.delivery === "agent") return { pinning: { pinned: true, by: "agent" } };
  // An ssm host answers through the document, which runs the installed script where there is
  // one; a tag target or a record stands in for hosts not asked.
  if (s.pinned === undefined) {
    return host.delivery === "ssm" ? { pinning: { pinned: false, activator: undefined } } : {};
  }
  return s.pinned === null
    ? { pinning: { pinned: false, activator: s.pinnedActivator } }
    : { pinning: { pinned: true, by: "nixship-activate", keys: s.pinned.keys } };
}

/** A host's answer to the survey; not ready: unreachable, or an agent that never reported. */
export interface Asked {
  readonly state: HostState;
  readonly ready: boolean;
}

/** Seconds between two rounds of asking the hosts not ready yet. */
export const REACHABLE_POLL = 2;
/** Seconds between two "awaiting" events naming the same hosts. */
const AWAITING_EVERY = 5;

/**
 * `--wait-reachable`: asks the hosts not ready yet again every REACHABLE_POLL seconds until
 * each is or `options.waitReachable` seconds have passed, naming those still awaited (when
 * the list changes, and every AWAITING_EVERY seconds). Updates `answers` in place; an
 * interrupt ends the wait (the caller then stops).
 */
export async function awaitReachable(
  hosts: readonly FleetHost[],
  answers: Asked[],
  ask: (host: FleetHost) => Promise<Asked>,
  options: Pick<DeployOptions, "waitReachable" | "signal" | "emit">,
): Promise<void> {
  const started = performance.now();
  const limit = options.waitReachable ?? 0;
  let told = "";
  let toldAt = Number.NEGATIVE_INFINITY;
  for (;;) {
    const awaited = hosts.flatMap((_h, i) => (answers[i]?.ready === false ? [i] : []));
    const elapsed = (performance.now() - started) / 1000;
    const names = awaited.map((i) => (hosts[i] as FleetHost).name);
    if (names.length > 0 && (names.join() !== told || elapsed - toldAt >= AWAITING_EVERY)) {
      options.emit({ type: "awaiting", hosts: names, elapsed: Math.round(elapsed), limit });
      told = names.join();
      toldAt = elapsed;
    }
    if (awaited.length === 0 || elapsed >= limit || options.signal?.aborted) return;
    const pause = Math.min(REACHABLE_POLL, limit - elapsed) * 1000;
    await delay(pause, undefined, options.signal ? { signal: options.signal } : {}).catch(() => {});
    if (options.signal?.aborted) return;
    const again = await mapLimit(awaited, STATUS_CONCURRENCY, (i) => ask(hosts[i] as FleetHost));
    awaited.forEach((i, k) => {
      answers[i] = again[k] as Asked;
    });
  }
}

// --- plan -----------------------------------------------------------------------------------

/** The plan from what was built and what the survey found. Pure. */
export function planFromSurvey(
  action: Action,
  hosts: readonly FleetHost[],
  prepared: {
    readonly built: Pick<BuildResult, "byHost">;
    readonly secrets: ReadonlyMap<string, HostSecrets>;
  },
  found: Survey,
  policyFor?: (host: FleetHost, desired: StorePath) => RolledOutAs,
  rollout?: Pick<RolloutPolicy, "canary" | "parallel">,
): DeployPlan {
  return planDeploy({
    action,
    targets: hosts.map((h, i) => {
      const desired = desiredSystem(prepared.built, h.name);
      const policy = policyFor?.(h, desired);
      return {
        host: h.name,
        desired,
        secrets: prepared.secrets.get(h.name)?.digest,
        state: found.states[i],
        ...(policy === undefined
          ? {}
          : {
              reboot: policy.reboot,
              checks: policy.health,
              shape: { canary: policy.canary, parallel: policy.parallel, role: policy.role },
            }),
      };
    }),
    pathInfos: found.pathInfos,
    ...(rollout === undefined ? {} : { rollout }),
  });
}

/** What the plan needs of a host's policy: its checks, reboots and place in the waves. */
export type RolledOutAs = Pick<RolloutPolicy, "health" | "reboot" | "canary" | "parallel"> & {
  readonly role: string;
};

function desiredSystem(built: Pick<BuildResult, "byHost">, host: string): StorePath {
  const path = built.byHost.get(host);
  if (path === undefined) throw new Error(`the build has no system for ${host}`);
  return path;
}

// --- execute --------------------------------------------------------------------------------

export interface ExecuteInput {
  readonly options: Pick<
    DeployOptions,
    | "fleet"
    | "policy"
    | "policyFlags"
    | "emit"
    | "async"
    | "skipUnreachable"
    | "signal"
    | "rollback"
  > &
    Partial<Pick<DeployOptions, "fleetDir">>;
  readonly hosts: readonly FleetHost[];
  readonly plan: DeployPlan;
  readonly mode: DeliveryMode;
  readonly delivery: Delivery;
  readonly request: (host: FleetHost, planned: PlannedHost) => DeployRequest;
  /** performance.now() when the deploy started: the summary's time. */
  readonly started: number;
  /** Who runs the deploy and from what (default: found from the hosts and the fleet's folder). */
  readonly origin?: DeployOrigin;
}

/**
 * Rolls the plan out (or with `async`, publishes it in one release) and records the results
 * where `nixship status` reads them.
 */
export async function executePlan(input: ExecuteInput): Promise<DeployReport> {
  const { options, plan, delivery } = input;
  const { emit } = options;
  const hostNamed = new Map(input.hosts.map((h) => [h.name, h]));
  const requestFor = (planned: HostPlan) => {
    const host = hostNamed.get(planned.host);
    return host === undefined ? undefined : input.request(host, planned);
  };
  // The channel states the fleet file: every selected host's system, whether it runs it yet.
  const channelNotes =
    (await delivery.channel?.plan(
      plan.hosts.flatMap((p) =>
        p.action === "unreachable"
          ? []
          : [
              {
                host: p.host,
                path: p.desired,
                runs: p.action === "skip",
                secrets: requestFor(p)?.secrets,
              },
            ],
      ),
    )) ?? [];
  if (options.async === true) {
    const publishOnly = publisherOf(delivery, input.mode);
    const wave = plan.hosts.flatMap((p): WaveHost[] => {
      const host = hostNamed.get(p.host);
      return p.action !== "unreachable" && host !== undefined
        ? [{ host, request: input.request(host, p) }]
        : [];
    });
    if (wave.length === 0) return { plan, results: [], ok: true, releases: [], channelNotes };
    const released = await publishOnly(wave);
    emit({ type: "released", ...released });
    return { plan, results: [], ok: true, releases: [released.seq], channelNotes };
  }
  // What the dashboard shows of the rollout as it runs, in every mode.
  const record = await recordRollout(options.fleet.cache?.url, {
    mode: input.mode,
    action: plan.action,
    origin: input.origin ?? (await deployOrigin(input.hosts, options.fleetDir ?? process.cwd())),
    ...(options.rollback === undefined ? {} : { rollback: options.rollback }),
    onWarning: (message) => emit({ type: "record-failed", message }),
  });
  record?.recorder.onEvent({ type: "plan", plan });
  const ended = (ok: boolean) =>
    options.signal?.aborted ? "interrupted" : ok ? "succeeded" : "failed";
  const results = await runRollout({
    plan,
    hosts: input.hosts,
    policy: options.policy,
    delivery,
    request: input.request,
    emit: (event) => {
      record?.recorder.onEvent(event);
      emit(event);
    },
    skipUnreachable: options.skipUnreachable === true,
    ...(options.signal !== undefined ? { signal: options.signal } : {}),
  }).catch(async (err: unknown) => {
    await record?.finish(ended(false));
    throw err;
  });
  const ok = rolloutSucceeded(results);
  await record?.finish(ended(ok));
  // Every host ran its system already: the channel still states the fleet file.
  if (!options.signal?.aborted && (delivery.channel?.published() ?? []).length === 0) {
    const settled = await delivery.channel?.settle(plan.action);
    if (settled !== undefined) emit({ type: "released", ...settled });
  }
  if (input.mode !== "agent" && options.fleet.cache !== undefined) {
    await recordResults(
      options.fleet.cache.url,
      input.mode,
      results,
      plan,
      record === undefined ? undefined : { kind: "rollout", key: record.recorder.key },
    );
  }
  emit({ type: "summary", ok, seconds: (performance.now() - input.started) / 1000, results });
  const releases = (delivery.channel?.published() ?? []).map((r) => r.seq);
  return { plan, results, ok, releases, channelNotes };
}

/** `deploy --async` needs a delivery that can publish one release without watching. */
function publisherOf(delivery: Delivery, mode: DeliveryMode): ChannelCapability["publishOnly"] {
  const channel = delivery.channel;
  if (channel !== undefined) return (hosts) => channel.publishOnly(hosts);
  throw new UsageError(
    `deploy --async publishes one release and returns without watching, which ${mode} delivery cannot do: its hosts are deployed wave by wave`,
    "leave out --async (it is for agent hosts)",
  );
}

// --- interrupts before the rollout ----------------------------------------------------------

function throwIfInterrupted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw interrupted(signal, undefined);
}

/** A stage that failed because of the interrupt (a killed nix) ends as the interrupt. */
function interruptedBefore(signal: AbortSignal | undefined): (err: unknown) => never {
  return (err) => {
    throw signal?.aborted && !(err instanceof InterruptedError) ? interrupted(signal, err) : err;
  };
}

function interrupted(signal: AbortSignal, cause: unknown): InterruptedError {
  return new InterruptedError(
    `${interruptReason(signal)} before the rollout started: no host was changed`,
    cause === undefined ? {} : { cause },
  );
}
