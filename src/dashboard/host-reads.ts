// What a host's page reads beyond the poll, bounded per poll whatever the number of requests:
// the rollouts that named it (one LIST, and GETs only for records whose etags moved), at most
// once per poll per host; and its last change as a closure diff (up to MAX_CHANGE_READS
// narinfos), kept by (from, to), with at most NEW_CHANGES_PER_POLL new ones computed per poll.
import type { ObjectStore } from "../store/object-store.js";
import { type HostChange, readHostChange } from "../views/host-change.js";
import type { HostRollout, RolloutWatch } from "../views/rollout-watch.js";
import { inTime, PAGE_READ_MS, PerPoll } from "./release-reads.js";

/** Hosts' last changes kept (closure diffs), the oldest dropped first. */
const MAX_KEPT_CHANGES = 64;
/** Closure diffs newly computed in one poll; past it a page says to reload. */
export const NEW_CHANGES_PER_POLL = 8;

export class HostReads {
  readonly #store: ObjectStore;
  readonly #watch: RolloutWatch;
  readonly #histories: PerPoll<HostRollout[]>;
  readonly #changes = new Map<string, Promise<HostChange>>();
  readonly #readMs: number;
  #budget = { poll: -1, left: NEW_CHANGES_PER_POLL };

  /** `readMs`: how long a read may take, past which it fails (StoreTooSlow) and is not kept. */
  constructor(store: ObjectStore, watch: RolloutWatch, readMs: number = PAGE_READ_MS) {
    this.#store = store;
    this.#watch = watch;
    this.#readMs = readMs;
    this.#histories = new PerPoll(readMs);
  }

  /** The recent rollouts that name `host`, newest first. */
  history(host: string, poll: number): Promise<HostRollout[]> {
    return this.#histories.get(host, poll, () => this.#watch.hostHistory(host));
  }

  /** The closure diff from `from` to `to`, or why there is none. */
  change(
    from: string | null | undefined,
    to: string | null | undefined,
    poll: number,
  ): Promise<HostChange> {
    const key = `${from} ${to}`;
    const kept = this.#changes.get(key);
    if (kept !== undefined) return kept;
    if (this.#budget.poll !== poll) this.#budget = { poll, left: NEW_CHANGES_PER_POLL };
    if (this.#budget.left <= 0) {
      return Promise.resolve({
        status: "none",
        why: "Many hosts' changes were asked for at once; reload in a few seconds.",
      });
    }
    this.#budget.left--;
    const change = inTime(readHostChange(this.#store, from, to), this.#readMs);
    // A failed read (or one past its deadline: a store that hangs) is not kept: the next view
    // tries again.
    change.catch(() => this.#changes.delete(key));
    if (this.#changes.size >= MAX_KEPT_CHANGES) {
      this.#changes.delete(this.#changes.keys().next().value as string);
    }
    this.#changes.set(key, change);
    return change;
  }
}
