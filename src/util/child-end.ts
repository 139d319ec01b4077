// When a child process has ended, for a run that waits on it: at 'close' (its pipes closed,
// everything it wrote read), or, when a process it left behind (a daemon) holds its pipes
// open, a moment after its 'exit': what it wrote before it exited is read first, and the
// pipes are then no longer waited on. A stopped child is not waited on past its exit.
import type { ChildProcess } from "node:child_process";

/** Milliseconds the output of a process that exited is still read for. */
export const STREAMS_GRACE_MS = 2000;

/**
 * Calls `ended` once, with the child's exit code and signal, and `held` set when its pipes
 * were still open STREAMS_GRACE_MS after it exited. `stopped()` is asked at its exit.
 */
export function whenChildEnds(
  proc: ChildProcess,
  ended: (code: number | null, signal: NodeJS.Signals | null, held: boolean) => void,
  stopped: () => boolean,
): void {
  let done = false;
  const finish = (code: number | null, signal: NodeJS.Signals | null, held: boolean) => {
    if (done) return;
    done = true;
    ended(code, signal, held);
  };
  proc.on("close", (code, signal) => finish(code, signal, false));
  // (ssh's shared master is not such a process: it moves its stdio to /dev/null as it
  // detaches, measured with OpenSSH 9.2, docs/performance.md.)
  // The moment ends after one more poll of the pipes (an immediate runs after the loop's poll
  // phase), never on the timer alone: the exit can be reaped before the loop has read what the
  // child wrote just before it (in the pass another child's exit starts), and a loop held up
  // past the grace (synchronous spawns on a loaded deployer, 32 at once in a survey) runs its
  // timers before it polls again. Ending there lost whole answers: "ssh exited with 0 and no
  // result" from hosts that had answered (docs/performance.md).
  proc.on("exit", (code, signal) => {
    if (stopped()) finish(code, signal, false);
    else {
      // (The immediate is not unref'd: it keeps the poll from blocking on the held pipes.)
      setTimeout(() => setImmediate(() => finish(code, signal, true)), STREAMS_GRACE_MS).unref();
    }
  });
}
