// SIGINT, SIGTERM and SIGHUP (its terminal closed) while a command works, and its output
// closed under it (`nixship deploy | head`, EPIPE): the first asks it to stop (an AbortSignal
// whose reason names the signal) and lets it finish; a second one exits at once. The listeners
// live only as long as the command.
import { setMaxListeners } from "node:events";
import { InterruptedError } from "../errors.js";
import { lastWordsPending, sayLastWords } from "../util/last-words.js";
import { killOwnedChildren } from "../util/owned-children.js";

/** The exit code of a command that was interrupted (as shells report death by SIGINT). */
export const INTERRUPTED_EXIT = 130;

export interface InterruptTrap {
  /** Aborted on the first SIGINT or SIGTERM, with reason `interrupted (SIGINT)`. */
  readonly signal: AbortSignal;
  /** Removes the listeners: the signals have their default effect again. */
  release(): void;
}

export function trapInterrupts(say: {
  /** What to print on the first signal (before the signal aborts). */
  readonly first: (signal: NodeJS.Signals) => void;
  /** What to print on the second, before the process exits. */
  readonly second: (signal: NodeJS.Signals) => void;
}): InterruptTrap {
  const controller = new AbortController();
  // Every host in flight listens to this one signal while its work lasts (its ssh clients, its
  // preflight), and lets go when done: --parallel 20 is 20 listeners or more at once, no leak,
  // yet Node warns past 10 (MaxListenersExceededWarning, "11 abort listeners").
  setMaxListeners(0, controller.signal);
  const onSignal = (signal: NodeJS.Signals) => {
    if (controller.signal.aborted) {
      // Said once: a third signal finds the process on its way out.
      if (!exiting) say.second(signal);
      exitAfterLastWords();
      return;
    }
    say.first(signal);
    controller.abort(`interrupted (${signal})`);
  };
  for (const name of INTERRUPT_SIGNALS) process.on(name, onSignal);
  trapped.add(onSignal);
  return {
    signal: controller.signal,
    release: () => {
      for (const name of INTERRUPT_SIGNALS) process.off(name, onSignal);
      trapped.delete(onSignal);
    },
  };
}

/** The signals that interrupt a command (SIGHUP: its terminal closed). */
export const INTERRUPT_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

/** How long a second interrupt waits for the last words (util/last-words.ts). */
export const LAST_WORDS_MS = 3000;

/** Set once a second interrupt has the process on its way out. */
let exiting = false;

/**
 * The process exits at once, the command's children killed (util/owned-children.ts), once the
 * last words are written (at most LAST_WORDS_MS on). A further signal meanwhile changes nothing.
 */
export function exitAfterLastWords(): void {
  killOwnedChildren();
  if (exiting) return;
  exiting = true;
  if (!lastWordsPending()) {
    process.exit(INTERRUPTED_EXIT);
    return;
  }
  void sayLastWords(LAST_WORDS_MS).then(() => process.exit(INTERRUPTED_EXIT));
}

let untrapped = false;

/** An interrupt came while no command kept a trap: the command ends as interrupted (130). */
export function noteUntrappedInterrupt(): void {
  untrapped = true;
}

/** Whether an interrupt came while no command kept a trap (early-interrupts.ts said so). */
export function interruptedUntrapped(): boolean {
  return untrapped;
}

/** The traps of the commands at work now. */
const trapped = new Set<(signal: NodeJS.Signals) => void>();
let outputGone = false;

/**
 * The process's stdout or stderr was closed by its reader (EPIPE). A command at work stops as
 * on a first interrupt (a deploy aborts its hosts in flight and finishes its records; exit
 * 130), once; with none at work (`nixship status | head`), the process ends quietly, as Unix
 * tools do. Later write errors on the closed stream change nothing.
 */
export function outputClosed(): void {
  if (outputGone) return;
  outputGone = true;
  if (trapped.size === 0) {
    process.exit(process.exitCode ?? 0);
    return;
  }
  for (const onSignal of [...trapped]) onSignal("SIGPIPE");
}

/**
 * Runs `work` with the first SIGINT or SIGTERM stopping it through its signal; once stopped, the
 * command fails as interrupted (exit 130), whatever the work threw. Work that cleans up after
 * itself (a restore's partial tree) thus leaves nothing behind; a second signal exits at once.
 */
export async function whileTrapped<T>(
  command: string,
  work: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const trap = trapInterrupts({
    first: (signal) =>
      process.stderr.write(
        `${command}: interrupted (${signal}): stopping where nothing is left half done (a second interrupt stops at once)\n`,
      ),
    second: () => {},
  });
  try {
    return await work(trap.signal);
  } catch (err) {
    if (trap.signal.aborted) {
      throw new InterruptedError(
        `${command}: ${String(trap.signal.reason)}; nothing was left half done`,
        {
          cause: err,
        },
      );
    }
    throw err;
  } finally {
    trap.release();
  }
}

/**
 * After an interrupted command has said everything: exit with 130 even if work it cut off (a
 * host the deployer stopped waiting for) still holds the event loop. The timer itself keeps
 * nothing alive.
 */
export function exitSoonAfterInterrupt(): void {
  setTimeout(() => process.exit(INTERRUPTED_EXIT), 1000).unref();
  // Another interrupt meanwhile exits at once, as a second one does, through the exit hooks
  // (a signal's own default would skip them: compressors and staging files would stay).
  for (const name of INTERRUPT_SIGNALS) {
    process.once(name, () => {
      process.stderr.write(`interrupted again (${name}): exiting now\n`);
      process.exit(INTERRUPTED_EXIT);
    });
  }
}

/**
 * How a service (cache serve, dashboard, the agent's loop) is asked to stop: the first SIGINT,
 * SIGTERM or SIGHUP aborts `signal`, and the service closes and exits 0, since being stopped
 * is how a service ends. Once released (or after the first), a second signal meets the early
 * handler (early-interrupts.ts) and exits 130 at once.
 */
export function serviceStop(): InterruptTrap {
  const controller = new AbortController();
  const release = (): void => {
    for (const name of INTERRUPT_SIGNALS) process.off(name, onSignal);
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    release();
    controller.abort(`stopped (${signal})`);
  };
  for (const name of INTERRUPT_SIGNALS) process.on(name, onSignal);
  return { signal: controller.signal, release };
}
