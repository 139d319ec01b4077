// The NAR bodies one cache server streams at once, bounded. Each streamed from S3 holds one of
// the AWS SDK's sockets (50 by default) for as long as its client reads, and clients that stall
// midway hold theirs until the idle timeout: unbounded, they would take every socket, and each
// narinfo and HEAD (everyone's) would wait behind them and fail. Past the bound a request waits
// its turn, in order, for a while; the line is bounded too.

/** Why a request got no slot: too many waited already, none came in time, its client left. */
export type Refusal = "line-full" | "timed-out" | "client-left";

/** A slot to stream one NAR, to give back once its answer has ended; or why there was none. */
export type Slot = { readonly release: () => void } | { readonly refused: Refusal };

export interface SlotLimits {
  /** Slots in all. */
  readonly slots: number;
  /** Requests that may wait for one; past it, a request is refused at once. */
  readonly waiting: number;
  /** Ms a request waits for a slot before it is refused. */
  readonly waitMs: number;
}

export interface StreamSlots {
  /**
   * A free slot at once, else the next one given back (first come, first served) within
   * `waitMs`. A request whose client leaves (`clientLeft` aborts) gives up its place at once.
   */
  readonly take: (clientLeft: AbortSignal) => Promise<Slot>;
  /** Slots held now. */
  readonly held: () => number;
  /** Requests waiting for one now. */
  readonly waiting: () => number;
}

export function streamSlots(limits: SlotLimits): StreamSlots {
  if (!Number.isInteger(limits.slots) || limits.slots < 1) {
    throw new RangeError(`NAR streams at once must be a whole number from 1, not ${limits.slots}`);
  }
  let held = 0;
  const line: ((slot: Slot) => void)[] = [];
  // A slot given back goes straight to the first in line, so no newcomer takes it first.
  const slot = (): Slot => {
    let given = false;
    return {
      release: () => {
        if (given) return;
        given = true;
        const next = line.shift();
        if (next) next(slot());
        else held--;
      },
    };
  };
  const take = (clientLeft: AbortSignal): Promise<Slot> => {
    if (clientLeft.aborted) return Promise.resolve({ refused: "client-left" });
    if (held < limits.slots) {
      held++;
      return Promise.resolve(slot());
    }
    if (line.length >= limits.waiting) return Promise.resolve({ refused: "line-full" });
    return new Promise((resolve) => {
      const done = (outcome: Slot) => {
        clearTimeout(timer);
        clientLeft.removeEventListener("abort", left);
        resolve(outcome);
      };
      const leave = (why: Refusal) => {
        const place = line.indexOf(done);
        if (place >= 0) line.splice(place, 1);
        done({ refused: why });
      };
      const timer = setTimeout(() => leave("timed-out"), limits.waitMs);
      const left = () => leave("client-left");
      clientLeft.addEventListener("abort", left, { once: true });
      line.push(done);
    });
  };
  return { take, held: () => held, waiting: () => line.length };
}

/** Why `refused` came, for the server's log. */
export function refusalText(refused: Refusal, limits: SlotLimits): string {
  const streams = `one of the ${limits.slots} NAR streams it may send at once`;
  switch (refused) {
    case "line-full":
      return `${limits.waiting} requests were waiting already for ${streams}`;
    case "timed-out":
      return `waited ${limits.waitMs} ms for ${streams}`;
    case "client-left":
      return `the client left while it waited for ${streams}`;
  }
}
