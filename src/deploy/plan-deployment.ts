// A deploy's read → plan: build (and, to deploy, push and serve), ask every host what it runs,
// and assemble the plan with each host's resolved request. `plan` stops here; `deploy`,
// `release publish` and `rollback` go on to execute-plan.ts.
import { localNixVersion } from "../cache/local-nix.js";
import type { Delivery, DeployRequest } from "../delivery/delivery.js";
import { UsageError } from "../errors.js";
import { deltaSwitch } from "../fleet/delta-tool.js";
import { DEFAULT_MAX_CONNECTIONS, type DeliveryMode, type FleetHost } from "../fleet/fleet.js";
import { roleOf } from "../fleet/host-policy.js";
import { connectionsOf, type DeployPlan } from "../fleet/plan.js";
import type { PlanDeltaPairs } from "../fleet/plan-deltas.js";
import { planDeltaPairs } from "../fleet/plan-deltas.js";
import { selectHosts } from "../fleet/select.js";
import type { StorePath } from "../nix/store-path.js";
import type { RolloutHost } from "../status/rollout.js";
import { planAsRun, planFromSurvey } from "./assemble-plan.js";
import { refuseBusyHosts } from "./busy-hosts.js";
import { type HeldCacheLease, leaseCache } from "./cache-lease.js";
import { readPlanClosures } from "./closure-diffs.js";
import { cacheKeys, planDeltas, withStoreNars } from "./deltas.js";
import type { DeployOptions } from "./deploy-options.js";
import { type DeployOrigin, deployOrigin } from "./deploy-origin.js";
import { publisherOf } from "./execute-plan.js";
import {
  deployGivesSubstituter,
  hostRequests,
  policyOf,
  substitutesFromCache,
} from "./host-requests.js";
import { interruptedBefore, throwIfInterrupted } from "./interrupts.js";
import { deliveryMode, openDelivery } from "./open-delivery.js";
import { refuseUnpinnedHosts } from "./pinned-hosts.js";
import { withBehindRollouts } from "./plan-behind.js";
import { withRecordedOutcomes } from "./plan-recorded-outcomes.js";
import { readPlanRecords } from "./plan-records.js";
import { withRefusedFailed } from "./plan-refused-failed.js";
import type { Prepared } from "./prepare.js";
import { prepare } from "./prepare.js";
import { refusePausesWithoutStore } from "./rollout-pause.js";
import { checkServedAddress } from "./served-cache.js";
import { type Survey, storeLacks, survey } from "./survey.js";

/** What planning leaves for the execution: the plan, each host's request, and what is held open. */
export interface PlannedDeployment {
  readonly plan: DeployPlan;
  readonly hosts: readonly FleetHost[];
  readonly mode: DeliveryMode;
  readonly delivery: Delivery;
  /** What each planned host is asked to do, resolved once (host-requests.ts). */
  readonly requests: ReadonlyMap<string, DeployRequest>;
  /** The delta pairs to publish before the rollout (hosts that substitute from the cache). */
  readonly deltaPairs: PlanDeltaPairs | undefined;
  /** Who runs the deploy and from what (a deploy; not a plan). */
  readonly origin: DeployOrigin | undefined;
  /** performance.now() when the deploy started: the summary's time. */
  readonly started: number;
  /** Stops serving the cache, ends the cache lease, closes the delivery. */
  close(): Promise<void>;
}

/**
 * Reads the world (builds, and for a deploy pushes and serves; asks every host what it runs)
 * and assembles the plan. `intent` "plan" pushes nothing and reads stored status where a mode
 * cannot ask its hosts without changing them; "deploy" also refuses, before any host changes,
 * what the execution could not do.
 */
export async function planDeployment(
  options: DeployOptions,
  intent: "plan" | "deploy",
): Promise<PlannedDeployment> {
  const { fleet, signal } = options;
  const execute = intent === "deploy";
  const hosts = selectHosts(fleet, options.selector);
  const mode = deliveryMode(hosts, options.via);
  // Before anything is built or any host changes, as doctor checks it.
  checkServedAddress(options.serveCache, hosts);
  if (mode === "agent" && execute && options.releaseKey === undefined) {
    throw new UsageError(
      "deploying to agent hosts publishes a signed release: --release-key SECRET_FILE is needed",
    );
  }
  if (execute) refusePausesWithoutStore(options);
  const started = performance.now();
  // The local Nix's version, which its first command waits for, asked now: its answer comes
  // while the origin, the delivery and the lease are read, not before the build.
  localNixVersion().catch(() => undefined);
  // The agent delivery asks for a host's checks when it publishes, after the build, which
  // reads the checks the systems declare themselves.
  let prepared: Prepared | undefined;
  // Who runs it and from what: named by its rollout record, and by the releases it publishes.
  const origin = execute ? await deployOrigin(hosts, options.fleetDir) : undefined;
  const held: (() => Promise<void>)[] = [];
  const close = async () => {
    for (const release of held.splice(0).reverse()) await release();
  };
  try {
    const opened = await openDelivery(fleet, hosts, {
      fleetDir: options.fleetDir,
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
      ...(options.rollback === undefined ? {} : { leave: refusedRunning(options.rollback.left) }),
    });
    held.push(() => opened.close());
    // A deploy that pushes holds a lease on the cache from before its push until its status
    // records are written (they root what it deployed): no collection sweeps in between.
    let lease: HeldCacheLease | undefined;
    if (execute && fleet.cache !== undefined && options.key !== undefined) {
      const taken = await leaseCache(fleet.cache.url, options);
      held.push(() => taken.release());
      lease = taken;
    }
    // Refused before anything is built.
    if (execute && options.async === true) publisherOf(opened.delivery, mode);
    // The hosts are asked what they run while the push uploads (the survey needs only the
    // closure it read); without such a push, once the systems are built and pushed.
    const early: { survey?: Promise<Survey> } = {};
    const stopEarly = new AbortController();
    const earlySignal =
      signal === undefined ? stopEarly.signal : AbortSignal.any([signal, stopEarly.signal]);
    const ready = await prepare(options, hosts, execute, (built, closure) => {
      early.survey = survey(
        opened.delivery,
        hosts,
        built,
        { ...options, signal: earlySignal },
        closure,
      );
      // Its failure is told once the push is over (below), as it was when it came after.
      early.survey.catch(() => undefined);
    }).catch(async (err: unknown) => {
      stopEarly.abort();
      await early.survey?.catch(() => undefined);
      return interruptedBefore(signal)(err);
    });
    prepared = ready;
    held.push(() => ready.close());
    throwIfInterrupted(signal);
    await lease?.confirmFound([...ready.pushed.keys()]).catch(interruptedBefore(signal));
    const asked = await (
      early.survey ?? survey(opened.delivery, hosts, ready.built, options, ready.pushed)
    ).catch(interruptedBefore(signal));
    throwIfInterrupted(signal);
    // A host on its desired system whose last deploy failed there without going back is
    // failed, not up to date (its record says so; the host keeps no marker of it).
    // What the fleet last asked of the hosts the plan may change, read once for both.
    const records = await readPlanRecords(
      fleet.cache,
      hosts.filter((_, i) => asked.states[i]?.kind !== "unreachable").map((h) => h.name),
    ).catch(interruptedBefore(signal));
    if (records !== undefined) held.push(() => records.close());
    const found = await withRecordedOutcomes(
      records,
      hosts,
      (host) => ready.built.byHost.get(host),
      asked,
    ).catch(interruptedBefore(signal));
    throwIfInterrupted(signal);
    const surveyed = planFromSurvey(
      options.action,
      hosts,
      ready,
      found,
      (host, desired) => ({
        ...policyOf(options, host, ready.systemHealth.get(desired)),
        role: roleOf(fleet.policies, host),
        // A rollback goes back to what the hosts ran before: it is not baked again.
        ...(options.rollback === undefined ? {} : { bake: undefined }),
      }),
      options.policy,
    );
    const planned = await withRefusedFailed(
      opened.delivery.channel,
      await withBehindRollouts(records, surveyed),
    ).catch(interruptedBefore(signal));
    // Where neither the deployer nor the cache has a running system, a mode that can ask
    // its hosts at once (ssh) asks one host that runs it.
    const hostClosure = opened.delivery.closure?.bind(opened.delivery);
    const byName = new Map(hosts.map((h) => [h.name, h]));
    const {
      diffs,
      closures,
      held: readable,
    } = await readPlanClosures(planned, found.pathInfos, {
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
    // a plan alone, which pushed nothing, takes the substituters the deploy would give.
    const substitute = substitutesFromCache(
      mode,
      execute
        ? ready.substituters.length > 0
        : deployGivesSubstituter(fleet.cache, options.serveCache),
    );
    // A pair's paths are read from the deployer's store, when it is the local one and holds
    // them: the running systems' closures (a base the cache lacks), and what the push read.
    const local = options.nix?.store === undefined;
    const deltaPairs =
      fleet.cache === undefined
        ? undefined
        : withStoreNars(
            planDeltaPairs(
              planned.hosts,
              closures,
              (name) => {
                const host = byName.get(name) as FleetHost;
                return deltaSwitch({
                  deltas: fleet.deltas,
                  policy: policyOf(options, host).deltas,
                  delivery: host.delivery,
                  fromCache: substitute,
                });
              },
              readable,
            ),
            ...(local ? [found.running, ready.pushed] : []),
          );
    const deltas =
      deltaPairs !== undefined && fleet.cache !== undefined
        ? await planDeltas(
            { url: fleet.cache.url, trusted: cacheKeys(fleet.cache) },
            deltaPairs,
            signal,
            storeLacks(hosts, found.states),
          ).catch(interruptedBefore(signal))
        : undefined;
    throwIfInterrupted(signal);
    const plan: DeployPlan = {
      ...planAsRun(planned, options.policy, options),
      diffs,
      ...(connections === undefined ? {} : { connections }),
      ...(deltas === undefined ? {} : { deltas }),
    };
    options.emit({ type: "plan", plan });
    if (execute) {
      refuseBusyHosts(plan);
      refuseUnpinnedHosts({
        plan,
        hosts,
        ssh: fleet.ssh,
        policyFor: (host, desired) => policyOf(options, host, ready.systemHealth.get(desired)),
        systemHealth: ready.systemHealth,
      });
    }
    return {
      plan,
      hosts,
      mode: opened.mode,
      delivery: opened.delivery,
      requests: hostRequests(options, ready, hosts, plan, deltaPairs?.tools ?? new Map()),
      deltaPairs,
      origin,
      started,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/**
 * A rollback's refused hosts, each with what it runs (changed since the rollout it undoes, by
 * hand or by a later rollout): an agent host among them is left on that system, not moved to
 * the channel's entry by the rollback's release (ChannelKeeperOptions.leave).
 */
function refusedRunning(left: readonly RolloutHost[] | undefined): ReadonlyMap<string, string> {
  return new Map(
    (left ?? []).flatMap((h) =>
      h.state === "refused" && typeof h.before === "string" ? [[h.host, h.before] as const] : [],
    ),
  );
}
