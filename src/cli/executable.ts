#!/usr/bin/env node
// The `nixship` executable: runs the CLI on this process's arguments and streams. The build
// bundles it, with the modules it imports, into dist/cli/bin.js (scripts/bundle-cli.mjs).
// First: an interrupt while the rest loads exits 130, as one during a command does.
import "./early-interrupts.js";
import "./threadpool.js";
import { setTimeout as delay } from "node:timers/promises";
import { outputClosed } from "./interrupts.js";
import { main, reportLeftWaiting } from "./main.js";

// A reader that goes away (`nixship ... | head`) is not a crash: a command at work stops as if
// interrupted, any other quietly, as Unix tools do (interrupts.ts).
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") outputClosed();
    else throw err;
  });
}

const argv = process.argv.slice(2);
const io = {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
};
let ended = false;
// The event loop emptied while the command still waits (on an event nothing can send any
// more): Node would exit 0 with the work cut short and nothing said. Said, and failed, here.
process.once("beforeExit", () => {
  if (!ended) process.exitCode = reportLeftWaiting(argv, io);
});

main(argv, io).then(async (code) => {
  ended = true;
  process.exitCode = code;
  // What the command wrote reaches its reader first: a pipe takes 64 KiB at once and Node
  // queues the rest, so exiting before a slow reader took it (a loaded CI runner reading a
  // large --json) would cut the output short under exit code 0. Bounded: a reader that never
  // reads does not hold the process for good.
  await Promise.race([
    Promise.all([drained(process.stdout), drained(process.stderr)]),
    delay(OUTPUT_DRAIN_MS, undefined, { ref: false }),
  ]);
  // The command has ended: nothing it started may keep the process alive past a short grace
  // (a child's pipe still open, a timer).
  setTimeout(() => process.exit(code), 2000).unref();
});

/** How long the process waits at most for its readers to take what it wrote. */
const OUTPUT_DRAIN_MS = 10 * 60_000;

/** Settles once everything written to `stream` has been handed to the OS (or failed to be). */
function drained(stream: NodeJS.WriteStream): Promise<void> {
  if (stream.writableLength === 0 || stream.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    stream.write("", () => resolve());
  });
}
