// A signal that comes while no command has a trap of its own (as the process starts, or during
// a command that leaves interrupts to the default): exit 130, "interrupted", as docs/ci.md
// says every command does, with the error object under --json, rather than death by the
// signal (exit 143, nothing said). Imported first by the executable, before the modules that
// take time to load; a command's own trap (or the agent's) takes the signal from then on.
// What the command started is stopped before the process exits (an evaluation or a build must
// not run on without it, util/owned-children.ts), within CHILDREN_GRACE_MS, the command saying
// nothing more meanwhile; a second signal kills them and exits at once. Either way the last
// words (util/last-words.ts) are said first, within LAST_WORDS_MS.
import { runCommandEnd } from "../util/command-end.js";
import { sayLastWords } from "../util/last-words.js";
import { ownedChildrenRunning, stopOwnedChildren } from "../util/owned-children.js";
import {
  exitAfterLastWords,
  INTERRUPT_SIGNALS,
  INTERRUPTED_EXIT,
  LAST_WORDS_MS,
  noteUntrappedInterrupt,
} from "./interrupts.js";

/** Milliseconds the command's children have to stop on SIGTERM before SIGKILL. */
const CHILDREN_GRACE_MS = 3000;

let stopping = false;
for (const name of INTERRUPT_SIGNALS) {
  process.on(name, () => {
    // Another listener (trapInterrupts, the agent's stop) has the signal: it decides.
    if (process.listenerCount(name) > 1) return;
    // At once, but not before the last words (a file half-replaced is removed, not left).
    if (stopping) {
      exitAfterLastWords();
      return;
    }
    stopping = true;
    // The command ends as interrupted, whatever it does while its children stop (main.ts).
    noteUntrappedInterrupt();
    const message = `interrupted (${name})`;
    if (process.argv.includes("--json")) {
      process.stdout.write(`${JSON.stringify({ error: { code: "interrupted", message } })}\n`);
    }
    process.stderr.write(`error: ${message}\n`);
    if (ownedChildrenRunning() === 0) {
      exitAfterLastWords();
      return;
    }
    // Said: the command, which runs on while its children stop (and meets their end, or its
    // ssh masters closed), prints nothing more: no second JSON document, no report of hosts
    // it could no longer reach.
    silence(process.stdout);
    silence(process.stderr);
    void Promise.all([
      stopOwnedChildren(CHILDREN_GRACE_MS),
      runCommandEnd(CHILDREN_GRACE_MS),
      sayLastWords(LAST_WORDS_MS),
    ]).finally(() => process.exit(INTERRUPTED_EXIT));
  });
}

/** Makes every later write to `stream` write nothing (and say it went well). */
function silence(stream: NodeJS.WriteStream): void {
  stream.write = ((_chunk: unknown, encodingOrDone?: unknown, done?: unknown) => {
    const callback = typeof encodingOrDone === "function" ? encodingOrDone : done;
    if (typeof callback === "function") queueMicrotask(() => (callback as () => void)());
    return true;
  }) as typeof stream.write;
}
