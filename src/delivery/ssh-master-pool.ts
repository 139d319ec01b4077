// At most N shared ssh connections (ControlMaster) alive at once, whatever the fleet's size:
// each holds an ssh process (about 1.4 MB of the deployer's memory) from a host's first use,
// its survey, to its wave. A use of a host's shared connection takes a place first; when every
// place is taken, the master let go most recently is ended over its control socket (as
// `ssh -O exit` does) and its host connects again when it is next used (one more handshake).
// Most recently, not longest idle: the survey and the waves visit hosts in the same order, so
// the longest idle is the host needed next, and ending it would connect every host past the
// bound again (3 logins each at 200 hosts, bench:fleet); this way the first hosts keep their
// masters to their wave and only the others connect again, as the plan counts (connectionsOf).
// A survey past the bound takes no place (tryAcquire): its host's status is asked over a login
// of its own, which ends nothing and starts no master that would be ended before its wave.
// Places in use are never taken: a use waits until one is let go.
// A master let go is held (a control connection kept open to it, holdMaster) until it is ended:
// its ControlPersist (60 s) would otherwise end it while it waits for its wave, which at 1,000
// hosts comes minutes after the survey (bench:fleet: every host logged in 3 times, the plan
// said 2.87); one that cannot be held has no master, and gives its place up.
import { DEFAULT_MAX_CONNECTIONS } from "../fleet/fleet.js";
import { holdMaster, type MasterHold, type TerminateOutcome, terminateMaster } from "./ssh-mux.js";

interface Place {
  /** Uses in flight (a master in use is never ended). */
  users: number;
  /** When it was last let go (a counter: the largest is the most recently let go). */
  idleSince: number;
  /** The connection that keeps the master alive while it waits (see holdMaster). */
  hold?: MasterHold | undefined;
  /** A hold being made. */
  holding?: boolean;
}

export interface MasterPoolStats {
  /** Masters started: a host's first use, and each use after its master was ended. */
  readonly opened: number;
  /** Masters ended to make room. */
  readonly ended: number;
  /** The most places taken at once. */
  readonly peak: number;
}

export class MasterPool {
  readonly #places = new Map<string, Place>();
  readonly #waiting: (() => void)[] = [];
  #clock = 0;
  #opened = 0;
  #ended = 0;
  #peak = 0;

  constructor(
    private bound: number = DEFAULT_MAX_CONNECTIONS,
    private readonly end: (socket: string) => Promise<TerminateOutcome> = terminateMaster,
    private readonly hold: (
      socket: string,
      onEnd: () => void,
    ) => Promise<MasterHold | undefined> = holdMaster,
  ) {}

  setBound(bound: number): void {
    this.bound = bound;
  }

  get limit(): number {
    return this.bound;
  }

  stats(): MasterPoolStats {
    return { opened: this.#opened, ended: this.#ended, peak: this.#peak };
  }

  /**
   * Takes a place for the master at `socket` (its control path) and gives the function that
   * lets it go. Resolves once the master that made room, if any, has ended.
   */
  async acquire(socket: string): Promise<() => void> {
    for (;;) {
      const room = this.tryAcquire(socket);
      if (room !== undefined) return room;
      const idle = this.#lastLetGo();
      if (idle === undefined) {
        // Every place is in use: wait for one to be let go, then look again.
        await new Promise<void>((resolve) => this.#waiting.push(resolve));
        continue;
      }
      // The room is ours before the old master ends: no other use can take it meanwhile.
      this.#places.get(idle)?.hold?.close();
      this.#places.delete(idle);
      const place = { users: 1, idleSince: 0 };
      this.#places.set(socket, place);
      this.#opened++;
      this.#ended++;
      await this.end(idle);
      return this.#release(socket, place);
    }
  }

  /**
   * Takes a place for the master at `socket` where it has one or one is free, and gives the
   * function that lets it go; undefined when every place is taken. Never ends a master: a use
   * that can do without the shared connection (a survey's status) logs in on its own instead.
   */
  tryAcquire(socket: string): (() => void) | undefined {
    const held = this.#places.get(socket);
    if (held !== undefined) {
      held.users++;
      return this.#release(socket, held);
    }
    if (this.#places.size >= this.bound) return undefined;
    const place = { users: 1, idleSince: 0 };
    this.#places.set(socket, place);
    this.#opened++;
    this.#peak = Math.max(this.#peak, this.#places.size);
    return this.#release(socket, place);
  }

  #lastLetGo(): string | undefined {
    let found: string | undefined;
    let since = Number.NEGATIVE_INFINITY;
    for (const [socket, place] of this.#places) {
      if (place.users === 0 && place.idleSince > since) {
        found = socket;
        since = place.idleSince;
      }
    }
    return found;
  }

  #release(socket: string, place: Place): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      place.users--;
      place.idleSince = ++this.#clock;
      // Still this socket's place (it may have been ended and taken again meanwhile).
      if (place.users === 0 && this.#places.get(socket) === place) {
        this.#keep(socket, place);
        this.#waiting.shift()?.();
      }
    };
  }

  /** Holds the master of a place let go, once; a place whose master cannot be held goes. */
  #keep(socket: string, place: Place): void {
    if (place.hold !== undefined || place.holding) return;
    place.holding = true;
    const ended = () => {
      if (place.hold !== undefined) place.hold = undefined;
    };
    void this.hold(socket, ended).then((hold) => {
      place.holding = false;
      const current = this.#places.get(socket) === place;
      if (hold !== undefined && current) {
        place.hold = hold;
        return;
      }
      hold?.close();
      // No master there (its use failed to connect, or it ended): its place is free again.
      if (hold === undefined && current && place.users === 0) {
        this.#places.delete(socket);
        this.#waiting.shift()?.();
      }
    });
  }
}

/** The pool of this process's shared connections (one deployer, one bound). */
export const sharedConnections = new MasterPool();
