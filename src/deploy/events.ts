// What a deploy, rollback or status run reports while it works: typed events that ui/ turns
// into a TTY display, plain lines (CI) or NDJSON (--json). Logic never prints.
import type { DeltaTally } from "../cache/delta-compute.js";
import type { DeployOutcome, HostPhase } from "../delivery/delivery.js";
import type { Measurement } from "../fleet/analysis.js";
import type { DeployPlan } from "../fleet/plan.js";
import type { WaveKind } from "../fleet/rollout.js";
import type { PauseAnswerAction } from "../status/rollout.js";

export interface BuiltSystem {
  /** The flake installable (as sourceReference shows it) or store path the fleet file names. */
  readonly spec: string;
  readonly path: string;
  readonly hosts: readonly string[];
}

export interface HostResult {
  readonly host: string;
  readonly outcome:
    | DeployOutcome
    | {
        readonly status: "skipped";
        readonly reason: "up-to-date" | "not-started" | "unreachable";
        readonly message?: string;
      };
  readonly desired: string;
  readonly seconds: number;
}

export type DeployEvent =
  | {
      readonly type: "build-start";
      readonly systems: number;
      readonly hosts: number;
      /** The remote builders the build may use (their URIs), when the fleet names any. */
      readonly builders?: readonly string[];
      /** The build host (`ssh-ng://…`) whose store builds the systems. */
      readonly buildHost?: string;
    }
  | {
      /** What builds now (build-progress.ts): when it changes, and every 15 s while it runs. */
      readonly type: "build-progress";
      /**
       * Nix's counts: derivations built, expected (those built and those still to build; one
       * that fails leaves it), and failed.
       */
      readonly done: number;
      readonly expected: number;
      readonly failed: number;
      /** How many build now; `running` names the oldest of them. */
      readonly building: number;
      readonly running: readonly {
        readonly name: string;
        readonly drv: string;
        /** The builder it builds on; absent: here (or in the build host's store). */
        readonly machine?: string;
        /** Seconds it has been building. */
        readonly seconds: number;
      }[];
    }
  | {
      readonly type: "build-done";
      readonly seconds: number;
      readonly systems: readonly BuiltSystem[];
      /** Other machines that built derivations, with how many (none: all built here). */
      readonly builtOn?: readonly { readonly builder: string; readonly derivations: number }[];
      /** The build host that built the systems. */
      readonly buildHost?: string;
      /**
       * With a build host, how its closures reach the cache (the signing key stays here either
       * way): `from-host`, its nixship pushes the NARs and the deployer signs and commits the
       * narinfos; `copied-back`, copied into the deployer's store, which pushes them, and why.
       */
      readonly closures?:
        | { readonly way: "from-host"; readonly nixship: string }
        | { readonly way: "copied-back"; readonly why?: string };
      /** Builders Nix could not use; the build succeeded without them. */
      readonly unusable?: readonly {
        readonly builder: string;
        readonly kind: string;
        readonly said: readonly string[];
      }[];
    }
  | {
      readonly type: "push-start";
      readonly cache: string;
      /** The build host the NARs are pushed from (its nixship; the deployer signs). */
      readonly from?: string;
    }
  /**
   * A garbage collection of the cache runs: the deploy waits for it before its push (and at
   * most until its lock lapses); `lease-renew-failed`: a collection may start meanwhile.
   */
  | {
      readonly type: "gc-wait";
      readonly by: string;
      readonly since: string;
      readonly until: string;
    }
  | { readonly type: "lease-renew-failed"; readonly message: string }
  /** The rollout record (what the dashboard shows) could not be written; the deploy goes on. */
  | { readonly type: "record-failed"; readonly message: string }
  /**
   * The cache the deploy serves (--serve-cache) refused or cut a request: why (a NAR past its
   * signed NarSize, a narinfo that does not parse, a store that failed). Each object once.
   */
  | {
      readonly type: "cache-refused";
      readonly method: string;
      readonly key: string;
      readonly status: number;
      readonly error: string;
    }
  | {
      readonly type: "push-done";
      readonly seconds: number;
      readonly pushed: number;
      readonly alreadyPresent: number;
      readonly fileBytes: number;
      /**
       * Paths already in the cache that the push signed with the deploy's key, since a system
       * among them was signed by no key of cache.publicKeys (absent: none).
       */
      readonly resigned?: number;
      /** The build host the NARs were pushed from; absent: from the deployer. */
      readonly from?: string;
    }
  /**
   * The running systems' closures the plan's diffs needed were read from the fleet's cache:
   * how many narinfos, in how long, and whether the bound (`limit`) stopped the reading.
   */
  | {
      readonly type: "diff-read";
      readonly narinfos: number;
      readonly seconds: number;
      readonly limit: number;
      readonly stopped: boolean;
    }
  | { readonly type: "plan"; readonly plan: DeployPlan }
  /**
   * Deltas (docs/deltas.md): the (target, base) pairs the plan's hosts can use, about to be
   * computed and published in the cache; `unread`: hosts with deltas on whose running closure
   * could not be read (they fetch every path whole).
   */
  | {
      readonly type: "deltas-start";
      readonly pairs: number;
      readonly hosts: number;
      readonly unread: readonly string[];
    }
  /** Pairs done so far (at most once a second, and for every pair that failed). */
  | {
      readonly type: "delta-progress";
      readonly done: number;
      readonly total: number;
      readonly failed?: {
        readonly target: string;
        readonly base: string;
        readonly message: string;
      };
    }
  /**
   * The pairs' outcome: published, not worth it (`skipped`), there already (`existing`, from an
   * earlier deploy or another host's), failed; of the published and skipped, those `replaced`
   * (a delta or note the fleet's keys did not sign, a delta whose NAR did not match); bytes of
   * the deltas published and of the compressed NARs they stand for.
   */
  | ({
      readonly type: "deltas-done";
      readonly seconds: number;
      /** Set when no delta could be computed at all (e.g. no zstd with --patch-from here). */
      readonly error?: string;
      /** Pairs not computed yet when the deploy ended (or the work's deadline came): none told. */
      readonly unfinished?: number;
    } & DeltaTally)
  /**
   * After the fast pass: the deltas that came out large (and the pairs not worth it at that
   * level), computed again at the best level, in the background, for the hosts still to come.
   */
  | { readonly type: "deltas-improve"; readonly pairs: number }
  /** What that gave: deltas replaced by smaller ones, their bytes before and after. */
  | {
      readonly type: "deltas-improved";
      readonly pairs: number;
      readonly done: number;
      readonly improved: number;
      readonly bytesBefore: number;
      readonly bytesAfter: number;
      readonly seconds: number;
      /** Stopped before every pair was done: the rollout's last hosts had started. */
      readonly stopped?: boolean;
    }
  /**
   * A wave waits, at most `seconds`, for the deltas still being computed for its hosts
   * (`pendingBytes` of NAR): what fetching them whole would take at the `bytesPerSecond` hosts
   * fetched whole at (FetchPace.bytesPerSecond), less what rebuilding them from deltas takes at
   * `rebuiltBytesPerSecond` (delta-pace.ts's deltaWaitMs).
   */
  | {
      readonly type: "deltas-wait";
      readonly wave: number;
      readonly pendingBytes: number;
      readonly bytesPerSecond: number;
      readonly rebuiltBytesPerSecond: number;
      readonly seconds: number;
    }
  /**
   * No delta is computed or used: the last deploys' hosts fetched whole at `bytesPerSecond` of
   * NAR, at least as fast as hosts rebuild paths from deltas (a fast link).
   */
  | { readonly type: "deltas-fast-link"; readonly bytesPerSecond: number }
  /** Agent hosts, --async: the release is published; the agents take it from here. */
  | {
      readonly type: "released";
      readonly channel: string;
      readonly seq: number;
      /** The release file's digest (sha256-…, SRI), what the next release names as previous. */
      readonly digest: string;
    }
  | {
      readonly type: "wave-start";
      /** The wave's number, from 1. */
      readonly wave: number;
      readonly kind: WaveKind;
      readonly hosts: readonly string[];
    }
  | {
      readonly type: "host-phase";
      readonly host: string;
      readonly phase: HostPhase;
      readonly elapsed: number;
    }
  | { readonly type: "host-log"; readonly host: string; readonly line: string }
  /**
   * `--wait-reachable`: the hosts the survey still waits for (unreachable, or an agent that
   * never reported), when that list changes and every few seconds; `limit`: the seconds it
   * waits at most.
   */
  | {
      readonly type: "awaiting";
      readonly hosts: readonly string[];
      readonly elapsed: number;
      readonly limit: number;
    }
  /** Agent hosts: those of the wave that have not reported yet, every few seconds. */
  | { readonly type: "waiting"; readonly hosts: readonly string[]; readonly elapsed: number }
  | { readonly type: "host-done"; readonly result: HostResult }
  /**
   * The rollout waits after a wave (the policy's pauseAfter) for an operator's answer, given
   * with `resume` or `abort` (the commands, from any machine that reaches `store`), until
   * `until`; then `onTimeout` is the answer. Written in the rollout record before it is said.
   */
  | {
      readonly type: "paused";
      readonly rollout: string;
      readonly afterWave: number;
      readonly kind: WaveKind;
      readonly since: string;
      readonly until: string;
      readonly onTimeout: "abort" | "resume";
      readonly resume: string;
      readonly abort: string;
      /** The store the answer is written to (without credentials). */
      readonly store: string;
    }
  /** How the pause ended: who answered and when (`timedOut`: its deadline answered). */
  | {
      readonly type: "pause-ended";
      readonly rollout: string;
      readonly afterWave: number;
      readonly action: PauseAnswerAction;
      readonly by: string;
      readonly at: string;
      readonly timedOut?: true;
    }
  /**
   * The wave's confirmed hosts bake (docs/progressive-delivery.md): the rollout holds for the
   * longest of their bakes, repeating their checks and measuring their analysis meanwhile.
   */
  | {
      readonly type: "bake-start";
      readonly wave: number;
      readonly hosts: readonly string[];
      /** The longest bake of the wave's hosts, and the shortest interval, in seconds. */
      readonly seconds: number;
      readonly interval: number;
      /** The names of the queries measured. */
      readonly analysis: readonly string[];
    }
  /**
   * The wave still bakes (every BAKE_PROGRESS_SECONDS): `elapsed` seconds of its `seconds`, the
   * hosts whose bake has not ended. A bake without analysis says nothing else until it ends.
   */
  | {
      readonly type: "bake-progress";
      readonly wave: number;
      readonly elapsed: number;
      readonly seconds: number;
      readonly hosts: readonly string[];
    }
  /** One measurement of one host's query during its bake. */
  | {
      readonly type: "bake-measure";
      readonly host: string;
      readonly name: string;
      /** The query as sent for the host. */
      readonly query: string;
      /** Its condition in words ("at most 0.05"). */
      readonly condition: string;
      readonly measurement: Measurement;
    }
  /**
   * A host's bake ended: passed, failed (its `result` then says what failed, with the values,
   * and whether it went back to what it ran before), or cut short by an interrupt.
   */
  | {
      readonly type: "bake-done";
      readonly host: string;
      readonly ok: boolean;
      readonly seconds: number;
      readonly interrupted?: true;
      /** The host's result once its bake failed. */
      readonly result?: HostResult;
    }
  /**
   * A wave's bake failed: the results of the hosts it now sends back, failed and not yet
   * rolled back, told before the rollback runs, so that their status records say so first (a
   * deployer killed during the rollback leaves them failed, not confirmed). Each host's
   * `bake-done` follows with its result once the rollback has answered.
   */
  | BakeFailedEvent
  | { readonly type: "stopped"; readonly reason: string; readonly notStarted: readonly string[] }
  | {
      readonly type: "summary";
      readonly ok: boolean;
      readonly seconds: number;
      readonly results: readonly HostResult[];
      /** The rollout's id, for `nixship rollback --rollout ID` (absent: no rollout record). */
      readonly rollout?: string;
      /**
       * A deploy aborted at a pause (`--json`): the rollback of the hosts it changed, which ran
       * before this one summary was printed.
       */
      readonly rollback?: {
        readonly ok: boolean;
        readonly seconds: number;
        readonly results: readonly HostResult[];
      };
    };

/** A wave's bake failed: see DeployEvent. */
export interface BakeFailedEvent {
  readonly type: "bake-failed";
  readonly wave: number;
  /** The hosts the wave sends back: failed, not yet rolled back. */
  readonly results: readonly HostResult[];
}

/**
 * Every event type, in the order a deploy emits them: what `deploy --help` lists. The check
 * below fails to compile when an event type is added to DeployEvent and not here.
 */
const EVENT_TYPES = {
  "build-start": true,
  "build-progress": true,
  "build-done": true,
  "push-start": true,
  "gc-wait": true,
  "lease-renew-failed": true,
  "record-failed": true,
  "cache-refused": true,
  "push-done": true,
  awaiting: true,
  "diff-read": true,
  plan: true,
  "deltas-start": true,
  "delta-progress": true,
  "deltas-done": true,
  "deltas-improve": true,
  "deltas-improved": true,
  "deltas-wait": true,
  "deltas-fast-link": true,
  released: true,
  "wave-start": true,
  "host-phase": true,
  "host-log": true,
  waiting: true,
  "host-done": true,
  "bake-start": true,
  "bake-progress": true,
  "bake-measure": true,
  "bake-failed": true,
  "bake-done": true,
  paused: true,
  "pause-ended": true,
  stopped: true,
  summary: true,
} as const satisfies Record<DeployEvent["type"], true>;

export const DEPLOY_EVENT_TYPES = Object.keys(EVENT_TYPES) as readonly DeployEvent["type"][];
