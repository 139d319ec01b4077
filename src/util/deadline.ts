// Waits with a deadline: a signal that aborts when `ms` pass, held by its own timer until then.
//
// Not `AbortSignal.timeout(ms)` inside `AbortSignal.any([...])`: on Node 20, `any` holds its
// sources weakly, and a timeout signal that nothing else holds is collected with its timer by
// the next garbage collection, after which the composite never aborts: the wait has no deadline
// (an HTTP check of a service that accepts and never answers hung a deploy that way). Here the
// timer holds the controller, and so its signal, until it fires or is cleared.

/** The reason a deadline gives, as `AbortSignal.timeout`'s: a DOMException named TimeoutError. */
function timeoutReason(ms: number): DOMException {
  return new DOMException(`The operation was aborted due to timeout (${ms} ms)`, "TimeoutError");
}

/** Whether `signal` aborted because a deadline passed (this module's or `AbortSignal.timeout`'s). */
export function timedOut(signal: AbortSignal): boolean {
  return (
    signal.aborted && (signal.reason as { name?: unknown } | undefined)?.name === "TimeoutError"
  );
}

/** A deadline `ms` from now: its signal, and `clear` to let it go once the wait is over. */
export interface Deadline {
  readonly signal: AbortSignal;
  clear(): void;
}

export function startDeadline(ms: number): Deadline {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(timeoutReason(ms)), ms);
  // The work's own handles keep the process alive; the deadline alone does not.
  timer.unref();
  return { signal: controller.signal, clear: () => clearTimeout(timer) };
}

/**
 * A deadline `ms` after the work last gave word of itself (`touch`, each time it does): for work
 * whose length cannot be known (a copy of any size), where what is wrong is silence.
 */
export interface IdleDeadline extends Deadline {
  touch(): void;
}

export function startIdleDeadline(ms: number): IdleDeadline {
  const controller = new AbortController();
  const start = () => {
    const t = setTimeout(() => controller.abort(timeoutReason(ms)), ms);
    t.unref();
    return t;
  };
  let timer = start();
  return {
    signal: controller.signal,
    touch: () => {
      if (controller.signal.aborted) return;
      clearTimeout(timer);
      timer = start();
    },
    clear: () => clearTimeout(timer),
  };
}

/** `deadline`'s signal, and `signal`'s when there is one: the first to abort stops the work. */
export function eitherSignal(deadline: Deadline, signal: AbortSignal | undefined): AbortSignal {
  return signal === undefined ? deadline.signal : AbortSignal.any([deadline.signal, signal]);
}

/**
 * Runs `work` with a signal that aborts after `ms` milliseconds (reason: a TimeoutError) or when
 * `signal` aborts (its reason), and lets the deadline go when `work` settles.
 */
export async function withDeadline<T>(
  ms: number,
  signal: AbortSignal | undefined,
  work: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const deadline = startDeadline(ms);
  try {
    return await work(eitherSignal(deadline, signal));
  } finally {
    deadline.clear();
  }
}

/** The time in which a read sends its first bytes and more: a minute, for a slow link. */
const READ_GRACE_MS = 60_000;
/** The slowest rate a read may take, past the grace: 128 KiB (1 Mbit) a second. */
const READ_MIN_RATE = 128 * 1024;

/**
 * The deadline of reading at most `limit` bytes (an object of a store, an answer the AWS SDK
 * reads whole): `graceMs` (a minute), and a second per 128 KiB it may hold (a narinfo: a
 * minute; the default 32 MiB: 5 minutes 16 s; a NAR of 1 GiB: about 2 hours 18 minutes).
 */
export function readDeadlineMs(limit: number, graceMs: number = READ_GRACE_MS): number {
  return graceMs + Math.ceil(limit / READ_MIN_RATE) * 1000;
}
