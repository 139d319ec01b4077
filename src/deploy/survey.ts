// The deploy's second reading of the world: what every selected host runs, and which of the
// desired closures' paths its store lacks; `--wait-reachable` asks again those not ready yet.

import { setTimeout as delay } from "node:timers/promises";
import { queryClosure, validPaths } from "../cache/local-nix.js";
import type { Delivery, HostStatus } from "../delivery/delivery.js";
import type { FleetHost } from "../fleet/fleet.js";
import type { ClosureInfo, HostState, Pinning } from "../fleet/plan.js";
import { countsBoots } from "../host/activation.js";
import { closureWithin, type PathInfo } from "../nix/closure.js";
import { isStorePath, parseStorePath, type StorePath } from "../nix/store-path.js";
import { runningGeneration } from "../status/next-record.js";
import { mapLimit } from "../util/pool.js";
import { type bootParts, rebootChanges } from "./boot-parts.js";
import type { BuildResult } from "./build.js";
import { busyOf } from "./busy-hosts.js";
import type { DeployOptions } from "./deploy-options.js";
import { pendingBootOf } from "./pending-boot.js";
import { systemFiles } from "./prepare.js";

/** How many hosts are asked for their state at once. */
const STATUS_CONCURRENCY = 32;
/**
 * Paths a host's store is asked about at most (about 80 bytes each, sent with the status
 * query); past it the plan counts from the system the host runs.
 */
const MAX_ASKED_PATHS = 20_000;

// --- survey ---------------------------------------------------------------------------------

/** What the survey found: each host's state, and the closures the planner needs. */
export interface Survey {
  /** In the order of the hosts surveyed. */
  readonly states: readonly HostState[];
  /** The desired closures, and the current ones the deployer has too. */
  readonly pathInfos: ReadonlyMap<StorePath, ClosureInfo>;
  /**
   * The closures of the systems the hosts run that the deployer's store holds, as it recorded
   * them (NarHash too): where the cache lacks a delta's base, it is read from there.
   */
  readonly running: ReadonlyMap<StorePath, PathInfo>;
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
  pushed: ReadonlyMap<StorePath, PathInfo> = new Map(),
): Promise<Survey> {
  const pathInfos = new Map<StorePath, ClosureInfo>();
  const desired = [...new Set(built.byHost.values())];
  // Systems left on the build host are described by its Nix; the others by the local one,
  // or by what the push read from it moments ago.
  const onHost = built.leftOnHost;
  const here = desired.filter((p) => !onHost?.paths.has(p));
  const read = closureWithin(here, pushed) ?? (await queryClosure(here, options.nix));
  for (const info of read) pathInfos.set(info.path, info);
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
            ...(s.generations.length > 0 ? { generations: s.generations } : {}),
            ...(s.missing ? { missing: new Set(s.missing) } : {}),
            ...(s.secrets ? { secrets: s.secrets } : {}),
            ...(s.stored ? { stored: s.stored } : {}),
            ...(s.failed ? { failed: s.failed.reason } : {}),
            ...(rebootFor ? { rebootFor } : {}),
            ...(countsBoots(s.boot) === undefined ? {} : { countsBoots: countsBoots(s.boot) }),
            ...(pendingBoot === undefined ? {} : { pendingBoot }),
            ...(busyOf(s) === undefined ? {} : { busy: busyOf(s) }),
            ...pinningOf(host, s),
          },
          ready: s.reported !== false,
        }
      : unreachableAnswer(s);
  };
  const answers = await mapLimit(hosts, STATUS_CONCURRENCY, ask);
  if (options.waitReachable) await awaitReachable(hosts, answers, ask, options);
  const states = answers.map((a) => a.state);
  // What the hosts run now is known here only if the deployer has it too; otherwise the
  // planner counts the whole closure as to be transferred (for hosts whose store was not asked).
  const currents = states.flatMap((s) => (s.kind === "reported" && s.current ? [s.current] : []));
  const local = await validPaths([...new Set(currents)], options.nix);
  const running = new Map<StorePath, PathInfo>();
  for (const info of await queryClosure([...local], options.nix)) {
    pathInfos.set(info.path, info);
    running.set(info.path, info);
  }
  return { states, pathInfos, running };
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

/**
 * The survey's answer for a host whose status was not had. A host that answered with something
 * else is up: --wait-reachable does not wait on what it said.
 */
export function unreachableAnswer(s: HostStatus & { readonly reachable: false }): Asked {
  return {
    state: {
      kind: "unreachable",
      error: s.error,
      ...(s.hostKey ? { hostKey: true as const } : {}),
      ...(s.answerUnreadable ? { answerUnreadable: true as const } : {}),
      ...(s.lastKnown === undefined ? {} : lastKnownOf(s.lastKnown)),
    },
    ready: s.answerUnreadable === true,
  };
}

/** The paths each host's store said it lacks, by host name, for the hosts that said. */
export function storeLacks(
  hosts: readonly Pick<FleetHost, "name">[],
  states: readonly HostState[],
): Map<string, ReadonlySet<StorePath>> {
  const lacks = new Map<string, ReadonlySet<StorePath>>();
  hosts.forEach((host, i) => {
    const state = states[i];
    if (state?.kind === "reported" && state.missing !== undefined) {
      lacks.set(host.name, state.missing);
    }
  });
  return lacks;
}

/** What an unreachable host last said it runs, when that names a store path. */
function lastKnownOf(text: string): { lastKnown?: StorePath } {
  return isStorePath(text) ? { lastKnown: text } : {};
}
