#!/usr/bin/env node
// The `nixship` executable: runs the CLI on this process's arguments and streams. The build
// bundles it, with the modules it imports, into dist/cli/bin.js (scripts/bundle-cli.mjs).
// First: an interrupt while the rest loads exits 130, as one during a command does.
import "./early-interrupts.js";
import "./threadpool.js";
import { outputClosed } from "./interrupts.js";
import { main } from "./main.js";

// A reader that goes away (`nixship ... | head`) is not a crash: a command at work stops as if
// interrupted, any other quietly, as Unix tools do (interrupts.ts).
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") outputClosed();
    else throw err;
  });
}

main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
}).then((code) => {
  process.exitCode = code;
  // The command has ended: nothing it started may keep the process alive past a short grace
  // (a child's pipe still open, a timer). Standard streams are synchronous here (Linux pipes
  // and files), so nothing written is lost.
  setTimeout(() => process.exit(code), 2000).unref();
});
