// The deploy planner: from what each host runs and what it should run, decide per host
// whether to activate, skip or give up on it, and how much it must fetch. Pure and
// synchronous; the caller gathers host states and closure metadata first.

import { InputError } from "../errors.js";
import type { StorePath } from "../nix/store-path.js";
import { type Action, actionChangesHost, actionSkipsWhenRunning } from "./action.js";
import { type BakeReachNote, bakeReachNotes } from "./analysis.js";
import type { HostBake } from "./bake.js";
import {
  ClosureIndex,
  type ClosureInfo,
  type HostHolding,
  type Transfer,
} from "./closure-index.js";
import type { HealthChecks, RebootMode, RolloutPolicy } from "./fleet.js";
import type { PlannedPause, UnusedPause } from "./pause-policy.js";
import type { HostDeltaFetch, NoDelta } from "./plan-deltas.js";
import type { PlanDiffs } from "./plan-diffs.js";

export type { ClosureInfo, Transfer } from "./closure-index.js";

import { planWaves, type WaveKind, type WaveShape } from "./rollout.js";

/** What a host reported. A host with no state (not asked, or cannot be asked) counts as unknown. */
export type HostState =
  | {
      readonly kind: "reported";
      /** The running system; undefined when the host could not tell. */
      readonly current: StorePath | undefined;
      readonly generation: number | undefined;
      /**
       * The paths the host's store lacks, among those it was asked about (at least the desired
       * closure); undefined when it was not asked or could not tell.
       */
      readonly missing?: ReadonlySet<StorePath> | undefined;
      /** The digest of the secrets it has installed; undefined when it could not tell. */
      readonly secrets?: string | undefined;
      /** Not the host's answer but its status record: when written, and why it stands in. */
      readonly stored?: { readonly at: string; readonly why: string };
      /** The system it runs failed there (and it could not go back): why. */
      readonly failed?: string;
      /**
       * What a reboot into the desired system would load anew (kernel, initrd, modules) against
       * what the host booted; undefined when the host has no booted system to compare with.
       */
      readonly rebootFor?: readonly string[];
      /** Whether its boot loader counts boots (from its boot's assessment); undefined: unknown. */
      readonly countsBoots?: boolean;
      /** A reboot into a new system that nobody confirmed or undid (the deployer went away). */
      readonly pendingBoot?: PendingBootState;
      /** Whose trust decides what it realises; undefined: unknown (an older script). */
      readonly pinning?: Pinning;
      /**
       * Another deploy is mid-flight there (an activation awaits its confirmation, or holds
       * the host's lock within its deadline): what the host said of it.
       */
      readonly busy?: string;
      /** The system profile's newest generations, as the host listed them (at most ten). */
      readonly generations?: readonly { readonly generation: number; readonly path: string }[];
      /** The rollout that gave it the system it runs never finished baking it there. */
      readonly unbaked?: UnfinishedBake;
    }
  | {
      readonly kind: "unreachable";
      readonly error: string;
      /** ssh refused its host key: not an outage, so never skipped as one. */
      readonly hostKey?: true;
      /**
       * It answered, but not with a status (a shell's banner, a foreign or truncated reply):
       * no outage either, and waiting does not change it.
       */
      readonly answerUnreadable?: true;
      /** What it last said it runs (a paused or offline agent's record); undefined: unknown. */
      readonly lastKnown?: StorePath;
    };

/**
 * A host whose system came from a rollout that never finished its bake there (its deployer was
 * interrupted, killed or lost mid-bake): the bake never judged it. The plan activates it again
 * so that its wave bakes it; a failed bake sends it back to what it ran before that rollout.
 */
export interface UnfinishedBake {
  /** The rollout's id, and what became of its bake, said for a person. */
  readonly rollout: string;
  readonly why: string;
  /** What the host ran before that rollout (null: not known). */
  readonly before: StorePath | null;
  /** The profile's generation of `before` on the host, where it still has one. */
  readonly beforeGeneration?: number;
}

/**
 * A boot left pending on a host, as its status reports it: a reboot that ended before its
 * verdict, or a boot set for later (`deploy --action boot`).
 */
export interface PendingBootState {
  /** Names the boot to the host's after-boot, confirm-boot and abort-boot. */
  readonly token: string;
  /** The system it is to boot (null: the host did not say). */
  readonly path: StorePath | null;
  /** When the boot was set (Unix seconds). */
  readonly since: number | null;
  /** The new system's generation, and the system before it (undefined: an older script). */
  readonly generation: number | undefined;
  readonly previous: StorePath | undefined;
  /** Whether the host booted that system (else it did not reboot yet, or booted another). */
  readonly booted: boolean;
  /** Whether the host rebooted since the boot was set (undefined: an older script). */
  readonly rebooted?: boolean | undefined;
}

/**
 * What a deploy does with a boot left pending (docs/reboots.md): `judge` when the host booted
 * the system it is to run (the checks, then confirm-boot or abort-boot, before anything else);
 * `replace` otherwise, for `reason`: the host's activation decides its state anew, the pending
 * boot with it.
 */
export interface PlannedPendingBoot extends PendingBootState {
  readonly decision: "judge" | "replace";
  readonly reason?: PendingBootReason;
}

/**
 * Why a pending boot is not judged but replaced: the host has not rebooted since it was set
 * (it runs the system it ran before: it must switch, or reboot, to the desired one); it rebooted
 * into another system (its boot loader fell back, or someone picked another entry); it does not
 * run it and cannot say whether it rebooted (an older script); the deploy gives it another
 * system; it booted it but runs another system now; the deploy's action is not a switch.
 */
export type PendingBootReason =
  | "not-rebooted"
  | "booted-other"
  | "not-booted"
  | "other-system"
  | "not-running"
  | "action";

/**
 * Whose trust decides what a host realises: its own (pinned: its installed nixship-activate's
 * keys, or an agent's configuration), or the deployer's (the piped script or an SSM command
 * takes the trust it is given; `activator`: the host has nixship-activate all the same).
 */
export type Pinning =
  | { readonly pinned: true; readonly by: "nixship-activate"; readonly keys: readonly string[] }
  | { readonly pinned: true; readonly by: "agent" }
  | { readonly pinned: false; readonly activator: boolean | undefined };

export interface PlanTarget {
  readonly host: string;
  readonly desired: StorePath;
  /** The digest of the secrets it should have; undefined: the deploy leaves them alone. */
  readonly secrets?: string | undefined;
  readonly state: HostState | undefined;
  /** The checks the host is deployed with (its role's policy and its system's own). */
  readonly checks?: HealthChecks;
  /** Its policy's `reboot` (default never). */
  readonly reboot?: RebootMode;
  /** Its canary, parallel and role, which place it in a wave (default: the input's rollout). */
  readonly shape?: WaveShape;
  /** Its role's bake and analysis, once its wave is confirmed (bake.ts's hostBake). */
  readonly bake?: HostBake;
}

export interface PlanInput {
  readonly action: Action;
  /** The selected hosts, in the order the plan lists them. */
  readonly targets: readonly PlanTarget[];
  /** Must cover every desired closure; current closures are used where known. */
  readonly pathInfos: ReadonlyMap<StorePath, ClosureInfo>;
  /** The rollout's canary and parallel (default: no canary, one wave of every host). */
  readonly rollout?: Pick<RolloutPolicy, "canary" | "parallel">;
}

/** A wave of the plan: the hosts that activate together, by name, in the order waves run. */
export interface PlannedWave {
  /** From 1, as the deploy's wave-start events count them. */
  readonly wave: number;
  readonly kind: WaveKind;
  readonly hosts: readonly string[];
}

export type HostAction = "activate" | "skip" | "unreachable";

/**
 * What a host's transfer was counted from: its store (exact), the closure of the system it runs
 * (at most: its store may hold more), or nothing (the whole desired closure). "none": it fetches
 * nothing (skipped, unreachable, or already running the desired system).
 */
export type TransferBasis = "store" | "current-system" | "whole-closure" | "none";

export interface HostPlan {
  readonly host: string;
  /** What happens to this host (`DeployPlan.action` is what activation does). */
  readonly action: HostAction;
  readonly current: StorePath | undefined;
  readonly generation: number | undefined;
  readonly desired: StorePath;
  /** The paths of the desired closure the host must fetch, counted as `transferBasis` says. */
  readonly transfer: Transfer;
  readonly transferBasis: TransferBasis;
  /** Set when the host runs its system but its secrets differ: it activates for them. */
  readonly secretsChange?: true;
  /** The digest of the secrets the deploy gives it (its manifest's); absent: it leaves them. */
  readonly secrets?: string;
  /** Set when the system it runs failed there: it is activated again, never "up to date". */
  readonly failedThere?: string;
  /**
   * Set when another deploy is mid-flight there (see HostState): never "up to date", and a
   * deploy refuses to start (deploy/busy-hosts.ts).
   */
  readonly busy?: string;
  /**
   * Set when the desired system's kernel, initrd or modules differ from those it booted: what
   * differs (a switch does not load them; a reboot does). Empty: no reboot needed.
   */
  readonly reboot?: readonly string[];
  /** Set when the deploy reboots the host into its new system (`--reboot`, see rebootsInto). */
  readonly rebooting?: true;
  /**
   * Set when its policy reboots `auto` and nothing says what it booted (no booted system, as on
   * a fresh host): `auto` then does not reboot it (rebootsInto's rule), and the plan says so.
   */
  readonly bootUnknown?: true;
  /** Whether its boot loader counts boots (a new system that does not boot falls back). */
  readonly bootCounting?: boolean;
  /** A boot left pending there, and what the deploy does with it (never "up to date"). */
  readonly pendingBoot?: PlannedPendingBoot;
  /** Set when its system's bake in the rollout that gave it never finished: baked again. */
  readonly unbaked?: UnfinishedBake;
  /** Why the host is unreachable. */
  readonly error: string | undefined;
  /** ssh refused its host key (changed, or unknown): a failure even with --skip-unreachable. */
  readonly hostKey?: true;
  /** It answered, but not with a status: a failure even with --skip-unreachable. */
  readonly answerUnreadable?: true;
  /**
   * An unreachable host: what it last said it runs (a paused or offline agent's record), what
   * the rollout leaves it on as far as anyone knows; absent: unknown.
   */
  readonly lastKnown?: StorePath;
  /** The checks it is deployed with; URLs as written, `{address}` and `{name}` not filled in. */
  readonly checks?: HealthChecks;
  /** Its role (host-policy.ts's roleOf; "" for the fleet's policy alone), where known. */
  readonly role?: string;
  /** How its wave bakes once it is confirmed: seconds, interval, the queries measured. */
  readonly bake?: HostBake;
  /** Set when what it runs is from its status record, not its answer: when, and why. */
  readonly stored?: { readonly at: string; readonly why: string };
  /** Whose trust decides what it realises, where known. */
  readonly pinning?: Pinning;
  /**
   * Set when the fleet's last rollout to name it gave it a system it does not run (it skipped
   * it, never started its wave, or it failed there): that rollout, and why.
   */
  readonly behindRollout?: { readonly rollout: string; readonly why: string };
  /**
   * Set on an agent host whose desired system failed on it, which the deploy refuses without
   * --allow-failed: why (channel/failed-systems.ts's failedMessage).
   */
  readonly refusedFailed?: string;
}

/** What a host's request is built from: its system, and whether the deploy reboots it. */
export type PlannedHost = Pick<
  HostPlan,
  "desired" | "rebooting" | "pendingBoot" | "current" | "stored"
>;

export interface DeployPlan {
  readonly action: Action;
  readonly hosts: readonly HostPlan[];
  readonly counts: Readonly<Record<HostAction, number>>;
  /** Hosts that end up different (0 for dry-activate). */
  readonly changes: number;
  /** Summed over hosts: what all the hosts fetch together. */
  readonly totals: Transfer;
  /** Each path counted once: what the cache (or the deployer) must provide. */
  readonly distinct: Transfer;
  /**
   * What changes package by package on the hosts that change system (`plan-diffs.ts`); set by
   * the deploy once it has read the running closures, after the planning.
   */
  readonly diffs?: PlanDiffs;
  /** The waves the deploy runs, each role's canaries first (rollout.ts's planWaves). */
  readonly waves: readonly PlannedWave[];
  /**
   * Failures the rollout takes before it starts no new wave (a failed canary stops it
   * whatever this is); set when it has waves to run, and watches them.
   */
  readonly maxFailures?: number;
  /** Where the rollout stops for an operator's answer (pause-policy.ts), in wave order. */
  readonly pauses?: readonly PlannedPause[];
  /** `pauseAfter` entries that make no pause in this plan, with why. */
  readonly unusedPauses?: readonly UnusedPause[];
  /** Set by an ssh deploy whose hosts outnumber its held connections (connectionsOf). */
  readonly connections?: PlanConnections;
  /** Set by a deploy whose hosts use deltas: what each would fetch with them and without. */
  readonly deltas?: PlanDeltas;
  /**
   * The bakes' queries whose first measurements may read what a host ran before its switch,
   * with what keeps that out (analysis.ts's bakeReachNotes); absent when none may.
   */
  readonly bakeNotes?: readonly BakeReachNote[];
  /**
   * Set by `deploy --async`: one release names every host at once, and the deployer watches
   * none of them: no canary, pause, bake or failure limit (each agent's own checks still roll
   * its host back).
   */
  readonly atOnce?: true;
}

/** What the hosts that use deltas would fetch (plan-deltas.ts), and what is not known yet. */
export interface PlanDeltas {
  readonly hosts: readonly HostDeltaFetch[];
  /** (target, base) pairs not computed yet: the deploy computes them while its rollout runs. */
  readonly pending: number;
  /** Hosts with deltas on whose running closure could not be read: they fetch whole. */
  readonly unread: readonly string[];
  /** Hosts that change with deltas on but get none, and why (no zstd, a copy, …). */
  readonly noDelta: readonly NoDelta[];
  /** Why the cache could not be asked (then `hosts` is empty): the plan goes on without. */
  readonly error?: string;
}

/** What a bound on held ssh connections costs a deploy: logins to its hosts. */
export interface PlanConnections {
  /** The hosts asked (reachable), and the most connections held at once. */
  readonly hosts: number;
  readonly bound: number;
  /**
   * Logins to the hosts: one each for the survey, one each that activates for the
   * confirmation's new connection, and one again for each that activates beyond the bound
   * (its connection was let go after the survey).
   */
  readonly logins: number;
  /** The last of those: what the bound costs. */
  readonly again: number;
}

/**
 * The logins an ssh deploy of `plan` makes with at most `bound` connections held; undefined
 * when the bound holds every host asked (nothing is connected twice).
 */
export function connectionsOf(plan: DeployPlan, bound: number): PlanConnections | undefined {
  const hosts = plan.hosts.length - plan.counts.unreachable;
  if (hosts <= bound) return undefined;
  const again = Math.max(0, plan.counts.activate - bound);
  return { hosts, bound, logins: hosts + plan.counts.activate + again, again };
}

const NOTHING: Transfer = { paths: 0, bytes: 0 };

export function planDeploy(input: PlanInput): DeployPlan {
  const closures = new ClosureIndex(input.pathInfos);
  const seen = new Set<string>();
  const counts: Record<HostAction, number> = { activate: 0, skip: 0, unreachable: 0 };
  const needed = new Set<StorePath>();
  let totals = NOTHING;

  const hosts = input.targets.map((target): HostPlan => {
    if (seen.has(target.host)) {
      throw new InputError("duplicate-host", `host "${target.host}" is planned twice`);
    }
    seen.add(target.host);
    const planned = planHost(target, input.action, closures);
    const plan: HostPlan = {
      ...planned,
      ...(target.checks === undefined ? {} : { checks: target.checks }),
      ...(target.shape?.role === undefined ? {} : { role: target.shape.role }),
      ...(target.bake === undefined || planned.action !== "activate" ? {} : { bake: target.bake }),
    };
    counts[plan.action]++;
    if (plan.action === "activate") {
      totals = {
        paths: totals.paths + plan.transfer.paths,
        bytes: totals.bytes + plan.transfer.bytes,
      };
      for (const path of closures.missing(plan.desired, holding(target.state))) needed.add(path);
    }
    return plan;
  });

  const activating = hosts.filter((h) => h.action === "activate");
  const shapes = new Map(input.targets.map((t) => [t.host, t.shape]));
  const rollout = input.rollout ?? { canary: 0, parallel: Math.max(1, activating.length) };
  const waves = planWaves(activating, rollout, (h) => shapes.get(h.host) ?? rollout).map(
    (w): PlannedWave => ({ wave: w.index + 1, kind: w.kind, hosts: w.hosts.map((h) => h.host) }),
  );
  const bakeNotes = bakeReachNotes(hosts);
  return {
    action: input.action,
    hosts,
    waves,
    counts,
    changes: actionChangesHost(input.action) ? counts.activate : 0,
    totals,
    distinct: closures.measure(needed),
    ...(bakeNotes.length === 0 ? {} : { bakeNotes }),
  };
}

function planHost(target: PlanTarget, action: Action, closures: ClosureIndex): HostPlan {
  const { host, desired, state } = target;
  closures.requireComplete(desired, host);
  if (state?.kind === "unreachable") {
    return {
      host,
      action: "unreachable",
      current: undefined,
      generation: undefined,
      desired,
      transfer: NOTHING,
      transferBasis: "none",
      error: state.error,
      ...(state.hostKey ? { hostKey: true as const } : {}),
      ...(state.answerUnreadable ? { answerUnreadable: true as const } : {}),
      ...(state.lastKnown === undefined ? {} : { lastKnown: state.lastKnown }),
    };
  }
  const current = state?.current;
  const generation = state?.generation;
  const running = current === desired;
  const failedThere = state?.kind === "reported" ? state.failed : undefined;
  const busy = state?.kind === "reported" ? state.busy : undefined;
  // Baked again only where its wave bakes (a rollback's hosts, or a fleet that no longer
  // bakes them, are not).
  const bakes = target.bake !== undefined && target.bake.seconds > 0;
  const unbaked = state?.kind === "reported" && bakes ? state.unbaked : undefined;
  const pendingBoot =
    state?.kind === "reported" ? plannedPendingBoot(state, desired, action) : undefined;
  const hostAction =
    running &&
    actionSkipsWhenRunning(action) &&
    !secretsChange(target) &&
    !failedThere &&
    unbaked === undefined &&
    busy === undefined &&
    pendingBoot === undefined
      ? "skip"
      : "activate";
  const rebootFor = state?.kind === "reported" ? state.rebootFor : undefined;
  const switching = hostAction === "activate" && action === "switch" && !running;
  const rebooting = switching ? rebootsInto(target.reboot ?? "never", rebootFor) : false;
  const bootUnknown = switching && target.reboot === "auto" && rebootFor === undefined;
  return {
    host,
    action: hostAction,
    current,
    generation,
    desired,
    transfer: running ? NOTHING : closures.measure(closures.missing(desired, holding(state))),
    transferBasis: running ? "none" : transferBasis(state),
    ...(secretsChange(target) ? { secretsChange: true } : {}),
    ...(target.secrets === undefined ? {} : { secrets: target.secrets }),
    ...(failedThere === undefined ? {} : { failedThere }),
    ...(unbaked === undefined ? {} : { unbaked }),
    ...(busy === undefined ? {} : { busy }),
    ...(rebootFor === undefined ? {} : { reboot: rebootFor }),
    ...(rebooting ? { rebooting: true } : {}),
    ...(bootUnknown ? { bootUnknown: true } : {}),
    ...(state?.kind === "reported" && state.countsBoots !== undefined
      ? { bootCounting: state.countsBoots }
      : {}),
    ...(pendingBoot === undefined ? {} : { pendingBoot }),
    ...(state?.kind === "reported" && state.stored ? { stored: state.stored } : {}),
    ...(state?.kind === "reported" && state.pinning ? { pinning: state.pinning } : {}),
    error: undefined,
  };
}

/**
 * The hosts a plan would activate although their policy requires pinning (`requirePinned`)
 * and they are not known to be pinned: each with why. Pure.
 */
export function unpinnedRequired(
  plan: Pick<DeployPlan, "hosts">,
  requiresPinning: (host: string) => boolean,
): { host: string; why: string }[] {
  return plan.hosts.flatMap((h) => {
    if (h.action !== "activate" || !requiresPinning(h.host) || h.pinning?.pinned === true) {
      return [];
    }
    const why =
      h.pinning === undefined
        ? "it did not say whose trust it takes"
        : h.pinning.activator === true
          ? "it has nixship-activate but is reached by the piped script (set its sudo)"
          : "it takes the deployer's trust (no nixship-activate: enable nixosModules.host)";
    return [{ host: h.host, why }];
  });
}

/**
 * Whether a host that switches to a new system is rebooted into it: never; always; auto, when
 * its kernel, initrd or modules differ from those it booted (`changed`; unknown: no reboot).
 */
export function rebootsInto(mode: RebootMode, changed: readonly string[] | undefined): boolean {
  if (mode === "always") return true;
  return mode === "auto" && changed !== undefined && changed.length > 0;
}

/** Whether the host's secrets differ from those it should have (unknown: they do not). */
export function secretsChange(target: PlanTarget): boolean {
  const { secrets, state } = target;
  if (secrets === undefined || state?.kind !== "reported" || state.secrets === undefined) {
    return false;
  }
  return state.secrets !== secrets;
}

/** What a reported host holds; nothing for one that did not report. */
function holding(state: HostState | undefined): HostHolding | undefined {
  return state?.kind === "reported" ? state : undefined;
}

function transferBasis(state: HostState | undefined): TransferBasis {
  if (state?.kind !== "reported") return "whole-closure";
  if (state.missing !== undefined) return "store";
  return state.current === undefined ? "whole-closure" : "current-system";
}

/**
 * A boot left pending is part of what a host is: a deploy that changes hosts never calls such a
 * host up to date. It judges the boot when the host booted the system it is to run, and
 * otherwise replaces it with the activation (a dry run leaves it alone).
 */
function plannedPendingBoot(
  state: Extract<HostState, { kind: "reported" }>,
  desired: StorePath,
  action: Action,
): PlannedPendingBoot | undefined {
  const pending = state.pendingBoot;
  if (pending === undefined || !actionChangesHost(action)) return undefined;
  const reason = replaceReason(pending, state.current, desired, action);
  return reason === undefined
    ? { ...pending, decision: "judge" }
    : { ...pending, decision: "replace", reason };
}

/** Why the pending boot is replaced, the boot's own state first; undefined: it is judged. */
function replaceReason(
  pending: PendingBootState,
  current: StorePath | undefined,
  desired: StorePath,
  action: Action,
): PendingBootReason | undefined {
  if (!pending.booted) {
    if (pending.rebooted === undefined) return "not-booted";
    return pending.rebooted ? "booted-other" : "not-rebooted";
  }
  if (pending.path !== desired) return "other-system";
  if (current !== desired) return "not-running";
  return action === "switch" ? undefined : "action";
}
