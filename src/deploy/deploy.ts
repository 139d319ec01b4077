// `nixship plan` and `nixship deploy`: select hosts, build their systems once, push the
// closures (signed) into the cache, ask every host what it runs, plan, then roll out.
import type { Server } from "node:http";
import { type NixOptions, queryClosure, validPaths } from "../cache/local-nix.js";
import { pushClosure } from "../cache/push.js";
import { closeCacheServer, listenCacheServer } from "../cache/serve.js";
import { AgentDelivery } from "../delivery/agent.js";
import type { DeployRequest } from "../delivery/delivery.js";
import { UsageError } from "../errors.js";
import type { Action } from "../fleet/action.js";
import type { DeliveryMode, Fleet, FleetHost, RolloutPolicy } from "../fleet/fleet.js";
import { expandHealthUrl } from "../fleet/health-url.js";
import { type DeployPlan, type HostState, planDeploy } from "../fleet/plan.js";
import { selectHosts } from "../fleet/select.js";
import { writeStatus } from "../fleet/status-store.js";
import type { SecretKey } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import { parseStorePath } from "../nix/store-path.js";
import { openStore } from "../store/url.js";
import { mapLimit } from "../util/pool.js";
import { buildSystems } from "./build.js";
import type { DeployEvent, HostResult } from "./events.js";
import { deliveryMode, openDelivery } from "./open-delivery.js";
import { rolloutSucceeded, runRollout } from "./run-rollout.js";

export interface DeployOptions {
  readonly fleet: Fleet;
  /** The fleet file's directory: relative flake references are resolved against it. */
  readonly fleetDir: string;
  readonly selector: string | undefined;
  readonly action: Action;
  readonly policy: RolloutPolicy;
  /** Signs what is pushed into the fleet's cache; without it nothing is pushed. */
  readonly key: SecretKey | undefined;
  /** Serve the fleet's cache on this host:port for the hosts while deploying. */
  readonly serveCache: { readonly host: string; readonly port: number } | undefined;
  readonly emit: (event: DeployEvent) => void;
  readonly nix?: NixOptions;
  /** `--via`: the delivery mode the selected hosts must have (default: theirs). */
  readonly via?: DeliveryMode | undefined;
  /** Signs the release (agent hosts). */
  readonly releaseKey?: SecretKey | undefined;
  /** Agent hosts: publish one release for every selected host and return without watching. */
  readonly async?: boolean;
  /** Milliseconds between the deployer's reads of agent status. */
  readonly agentPollInterval?: number;
}

export interface DeployReport {
  readonly plan: DeployPlan;
  readonly results: readonly HostResult[];
  readonly ok: boolean;
  /** Agent hosts: the releases the deploy published (sequence numbers, in order). */
  readonly releases: readonly number[];
}

/** How many hosts are asked for their state at once. */
const STATUS_CONCURRENCY = 32;

/** Builds, pushes and plans; with `execute`, rolls out. */
export async function deploy(options: DeployOptions, execute: boolean): Promise<DeployReport> {
  const { fleet, emit } = options;
  const hosts = selectHosts(fleet, options.selector);
  const mode = deliveryMode(hosts, options.via);
  if (mode === "agent" && execute && options.releaseKey === undefined) {
    throw new UsageError(
      "deploying to agent hosts publishes a signed release: --release-key SECRET_FILE is needed",
    );
  }
  const started = performance.now();

  emit({
    type: "build-start",
    systems: new Set(hosts.map((h) => JSON.stringify(h.system))).size,
    hosts: hosts.length,
  });
  const buildStart = performance.now();
  const built = await buildSystems(hosts, options.fleetDir, options.nix);
  emit({
    type: "build-done",
    seconds: (performance.now() - buildStart) / 1000,
    systems: built.systems,
  });
  const desired = [...new Set(built.byHost.values())];

  let server: Server | undefined;
  let served: { close(): Promise<void> } | undefined;
  const opened = await openDelivery(fleet, hosts, {
    via: mode,
    releaseKey: options.releaseKey,
    policy: options.policy,
    ...(options.agentPollInterval !== undefined
      ? { agentPollInterval: options.agentPollInterval }
      : {}),
  });
  const { delivery } = opened;
  try {
    let substituters: string[] = [];
    if (fleet.cache !== undefined && options.key !== undefined && execute) {
      emit({ type: "push-start", cache: fleet.cache.url });
      const store = await openStore(fleet.cache.url);
      try {
        const summary = await pushClosure({
          store,
          roots: desired,
          key: options.key,
          compression: "zstd",
          ...(options.nix ? { nix: options.nix } : {}),
        });
        emit({
          type: "push-done",
          seconds: summary.seconds,
          pushed: summary.pushed,
          alreadyPresent: summary.alreadyPresent,
          fileBytes: summary.fileBytes,
        });
      } finally {
        if (options.serveCache === undefined) await store.close();
        else served = store;
      }
      if (options.serveCache !== undefined) {
        const { host, port } = options.serveCache;
        const listening = await listenCacheServer({ store }, host, port);
        server = listening.server;
        substituters = [listening.url];
      } else if (fleet.cache.substituter !== undefined) {
        substituters = [fleet.cache.substituter];
      }
    }

    const states = await mapLimit(hosts, STATUS_CONCURRENCY, async (host): Promise<HostState> => {
      // A tag target stands for instances unknown until SSM runs the command on them.
      if (host.delivery === "ssm" && host.targets !== undefined) {
        return { kind: "reported", current: undefined, generation: undefined };
      }
      const s = await delivery.status(host);
      return s.reachable
        ? {
            kind: "reported",
            current: s.current ? parseStorePath(s.current).path : undefined,
            generation: s.generation,
          }
        : { kind: "unreachable", error: s.error };
    });
    const currents = states.flatMap((s) => (s.kind === "reported" && s.current ? [s.current] : []));
    const pathInfos = new Map<
      StorePath,
      { path: StorePath; narSize: number; references: readonly StorePath[] }
    >();
    for (const info of await queryClosure(desired, options.nix)) pathInfos.set(info.path, info);
    // What the hosts run now is known here only if the deployer has it too; otherwise the
    // planner counts the whole closure as to be transferred.
    const local = await validPaths([...new Set(currents)], options.nix);
    const known = await queryClosure([...local], options.nix);
    for (const info of known) pathInfos.set(info.path, info);
    const plan = planDeploy({
      action: options.action,
      targets: hosts.map((h, i) => ({
        host: h.name,
        desired: built.byHost.get(h.name) as StorePath,
        state: states[i],
      })),
      pathInfos,
    });
    emit({ type: "plan", plan });
    if (!execute) return { plan, results: [], ok: true, releases: [] };

    const trustedKeys = substituters.length > 0 ? (fleet.cache?.publicKeys ?? []) : [];
    const request = (host: FleetHost): DeployRequest => ({
      path: built.byHost.get(host.name) as string,
      action: options.action,
      substituters,
      trustedKeys,
      commandChecks: options.policy.health.commands,
      httpChecks: options.policy.health.http.map((c) => ({
        url: expandHealthUrl(c.url, host),
        expectStatus: c.expectStatus,
        timeout: c.timeout,
      })),
      confirmTimeout: options.policy.confirmTimeout,
    });
    if (options.async && delivery instanceof AgentDelivery) {
      const wave = plan.hosts
        .filter((p) => p.action === "activate")
        .map((p) => {
          const host = hosts.find((h) => h.name === p.host) as FleetHost;
          return { host, request: request(host) };
        });
      if (wave.length === 0) return { plan, results: [], ok: true, releases: [] };
      const released = await delivery.publish(wave);
      emit({ type: "released", channel: released.release.channel, seq: released.release.seq });
      return { plan, results: [], ok: true, releases: [released.release.seq] };
    }
    const results = await runRollout({
      plan,
      hosts,
      policy: options.policy,
      delivery,
      request,
      emit,
    });
    const ok = rolloutSucceeded(results);
    if (opened.mode !== "agent" && fleet.cache !== undefined) {
      await recordResults(fleet.cache.url, opened.mode, results);
    }
    emit({ type: "summary", ok, seconds: (performance.now() - started) / 1000, results });
    const releases =
      delivery instanceof AgentDelivery ? delivery.published.map((r) => r.release.seq) : [];
    return { plan, results, ok, releases };
  } finally {
    if (server !== undefined) await closeCacheServer(server);
    await served?.close();
    await opened.close();
  }
}

/**
 * Push deploys (ssh, ssm) leave the same status objects agents write, so `nixship status`
 * and the dashboard read every mode alike.
 */
async function recordResults(
  cacheUrl: string,
  mode: DeliveryMode,
  results: readonly HostResult[],
): Promise<void> {
  const store = await openStore(cacheUrl);
  try {
    const now = new Date().toISOString();
    await mapLimit(results, 16, async (r) => {
      if (r.outcome.status === "skipped" && r.outcome.reason !== "up-to-date") return;
      const ok = r.outcome.status === "activated" || r.outcome.status === "skipped";
      const failed = r.outcome.status === "failed" ? r.outcome : undefined;
      await writeStatus(store, {
        version: 1,
        host: r.host,
        mode,
        channel: null,
        seq: null,
        desired: r.desired,
        current: ok ? r.desired : null,
        generation: r.outcome.status === "activated" ? (r.outcome.generation ?? null) : null,
        state: ok ? "success" : "failed",
        phase: failed?.phase ?? null,
        error: failed
          ? `${failed.message}${failed.rolledBack ? " (rolled back to the previous system)" : ""}`
          : null,
        startedAt: new Date(Date.now() - r.seconds * 1000).toISOString(),
        updatedAt: now,
      });
    });
  } finally {
    await store.close();
  }
}
