// How long a wave may wait for its hosts' deltas, and whether its hosts take deltas at all
// (docs/deltas.md, "What they cost"): judged from how fast the hosts this deploy has seen got
// their paths, whole and by delta; before its own hosts have fetched, from what the previous
// deploy of some of the same hosts recorded (its rollout record's fetchPace, previous-pace.ts).
// With neither, no wave waits.
import type { HostPhase } from "../fleet/phase.js";
import { type FetchSeen, PACE_HOSTS_KEPT, type RolloutFetchPace } from "../status/rollout.js";
import type { DeployEvent } from "./events.js";

/** The longest a wave waits for deltas, however slow the link seen. */
export const DELTA_WAIT_MAX_MS = 10 * 60_000;

/**
 * Milliseconds to wait for deltas still being computed for `pendingBytes` of NAR: what
 * fetching them whole takes at `bytesPerSecond` (NAR bytes a second, as the hosts fetched
 * them), less what getting them by delta takes once computed at `rebuiltBytesPerSecond` (NAR
 * bytes a second, as hosts rebuilt them: the deltas' download and the host's step), so that
 * waiting to the end and then rebuilding costs no more than fetching whole at once; at most
 * DELTA_WAIT_MAX_MS; 0 when no host's fetch was seen yet, or when rebuilding is no faster.
 */
export function deltaWaitMs(
  pendingBytes: number,
  bytesPerSecond: number | undefined,
  rebuiltBytesPerSecond = Number.POSITIVE_INFINITY,
): number {
  if (!(pendingBytes > 0) || bytesPerSecond === undefined || !(bytesPerSecond > 0)) return 0;
  const seconds = pendingBytes / bytesPerSecond - pendingBytes / rebuiltBytesPerSecond;
  return seconds > 0 ? Math.min(DELTA_WAIT_MAX_MS, Math.floor(seconds * 1000)) : 0;
}

/**
 * NAR bytes a second a host is taken to get its paths at by delta (its step and its realise,
 * from its first phase on) until a host of the deploy did: a link whose whole fetches were seen
 * faster gives deltas nothing to win, its hosts fetch whole. bench:delta's deploys of an 80 MB
 * rebuild (two cores shared with other work): whole 9-24 MB/s over loopback and about 10 at
 * 50 Mbit/s, by delta about 6, most of it Nix importing the rebuilt NARs.
 */
export const DELTA_APPLY_PACE = 20 * 1024 * 1024;

/**
 * The fewest NAR bytes a pace is judged from: below it, a host's fixed costs (its connection,
 * its activation, the delta step's queries) weigh more than the link and the rebuilding.
 */
export const DELTA_PACE_MIN_BYTES = 32 * 1024 * 1024;

/** The phases up to the end of a host's realise (an agent host's wait for its release aside). */
const BEFORE_REALISED: ReadonlySet<HostPhase> = new Set(["connect", "waiting", "copy", "realise"]);

/**
 * The NAR bytes a second the deploy's hosts fetched at, from its events: each activated host's
 * delta report (the deltas' bytes and the NAR bytes that came whole; without one, the NAR bytes
 * the plan says it lacked, `planned`) over the time from its first phase to the first one after
 * `realise` (its connection, its delta step and its realise: what fetching cost it). Until this
 * deploy has seen enough of a kind (DELTA_PACE_MIN_BYTES), `previous` (the paces the previous
 * deploy recorded) stands for it: a link seen slow then has its first wave wait for deltas.
 */
export class FetchPace {
  readonly #planned: (host: string) => number | undefined;
  readonly #previous: RolloutFetchPace;

  constructor(
    planned: (host: string) => number | undefined = () => undefined,
    previous: RolloutFetchPace = {},
  ) {
    this.#planned = planned;
    this.#previous = previous;
  }

  readonly #started = new Map<string, number>();
  readonly #fetching = new Map<string, number>();
  #bytes = 0;
  #seconds = 0;
  /** NAR bytes and seconds of the hosts that got every path whole, and of those that had deltas. */
  readonly #whole: Kind = { bytes: 0, seconds: 0, hosts: new Set() };
  readonly #rebuilt: Kind = { bytes: 0, seconds: 0, hosts: new Set() };

  observe(event: DeployEvent): void {
    if (event.type === "wave-start") {
      for (const host of event.hosts) {
        this.#started.delete(host);
        this.#fetching.delete(host);
      }
    } else if (event.type === "host-phase") {
      const { host, phase, elapsed } = event;
      const started = this.#started.get(host);
      if (BEFORE_REALISED.has(phase)) {
        if (started === undefined && phase !== "waiting") this.#started.set(host, elapsed);
      } else if (started !== undefined && !this.#fetching.has(host)) {
        this.#fetching.set(host, elapsed - started);
      }
    } else if (event.type === "host-done") {
      const { host, outcome } = event.result;
      const seconds = this.#fetching.get(host);
      if (outcome.status !== "activated" || seconds === undefined || !(seconds > 0)) return;
      const delta = outcome.delta;
      const planned = this.#planned(host);
      // What a host says it fetched counts up to what the plan says it lacked: a host that
      // claims more cannot make the link look fast for the hosts after it.
      const atMostPlanned = (n: number) => (planned === undefined ? n : Math.min(n, planned));
      const bytes =
        delta === undefined || "skipped" in delta
          ? (planned ?? 0)
          : atMostPlanned((delta.bytes ?? 0) + (delta.wholeNarBytes ?? 0));
      if (bytes <= 0) return;
      this.#bytes += bytes;
      this.#seconds += seconds;
      const byDelta = delta !== undefined && !("skipped" in delta) && delta.paths > 0;
      const nar = byDelta
        ? atMostPlanned((delta.narBytes ?? 0) + (delta.wholeNarBytes ?? 0))
        : bytes;
      const kind = byDelta ? this.#rebuilt : this.#whole;
      kind.bytes += nar;
      kind.seconds += seconds;
      kind.hosts.add(host);
    }
  }

  /**
   * Whether the hosts still to come had better fetch whole: the hosts that fetched whole got
   * their NAR bytes at least as fast as those that rebuilt theirs from deltas (or, before any
   * did, DELTA_APPLY_PACE). A fast link, where a host's CPU, not the link, sets the pace.
   * False before DELTA_PACE_MIN_BYTES were seen fetched whole.
   */
  favoursWhole(): boolean {
    const wholePace = this.#wholePace();
    return wholePace !== undefined && wholePace >= this.rebuiltBytesPerSecond();
  }

  /** The hosts that fetched whole: their NAR bytes a second, this deploy's else the last's. */
  #wholePace(): number | undefined {
    const { whole } = this.seen();
    return whole === undefined ? undefined : pace(whole);
  }

  /**
   * NAR bytes a second hosts got their paths at by delta: this deploy's, else the previous
   * deploy's (each from at least DELTA_PACE_MIN_BYTES), else DELTA_APPLY_PACE.
   */
  rebuiltBytesPerSecond(): number {
    const { rebuilt } = this.seen();
    return (rebuilt === undefined ? undefined : pace(rebuilt)) ?? DELTA_APPLY_PACE;
  }

  /**
   * NAR bytes a second a host fetches its paths whole at: the pace of the hosts that fetched
   * whole, this deploy's, else the previous deploy's (each from at least DELTA_PACE_MIN_BYTES);
   * without one, the bytes over every host seen so far (a host that rebuilt from deltas used
   * less of its link than it could: a lower bound), before the first the previous deploy's;
   * else undefined.
   */
  bytesPerSecond(): number | undefined {
    const wholePace = this.#wholePace();
    if (wholePace !== undefined) return wholePace;
    if (this.#seconds > 0) return this.#bytes / this.#seconds;
    const { whole, rebuilt } = this.#previous;
    const bytes = (whole?.bytes ?? 0) + (rebuilt?.bytes ?? 0);
    const seconds = (whole?.seconds ?? 0) + (rebuilt?.seconds ?? 0);
    return pace({ bytes, seconds });
  }

  /**
   * What a rollout record keeps for the next deploy: of each kind, this deploy's own figures
   * where they are enough to judge by, else the previous deploy's.
   */
  seen(): RolloutFetchPace {
    const pick = (own: Kind, before: FetchSeen | undefined): FetchSeen | undefined =>
      pace(own) !== undefined
        ? {
            bytes: own.bytes,
            seconds: own.seconds,
            hosts: [...own.hosts].sort().slice(0, PACE_HOSTS_KEPT),
          }
        : before;
    const whole = pick(this.#whole, this.#previous.whole);
    const rebuilt = pick(this.#rebuilt, this.#previous.rebuilt);
    return {
      ...(whole === undefined ? {} : { whole }),
      ...(rebuilt === undefined ? {} : { rebuilt }),
    };
  }
}

/** A kind of host's fetches this deploy saw: their NAR bytes and seconds, and who fetched. */
interface Kind {
  bytes: number;
  seconds: number;
  readonly hosts: Set<string>;
}

/** A kind of host's NAR bytes a second; undefined from fewer than DELTA_PACE_MIN_BYTES. */
function pace(kind: { readonly bytes: number; readonly seconds: number }): number | undefined {
  return kind.seconds > 0 && kind.bytes >= DELTA_PACE_MIN_BYTES
    ? kind.bytes / kind.seconds
    : undefined;
}
