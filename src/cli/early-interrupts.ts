// A signal that comes while no command has a trap of its own (as the process starts, or during
// a command that leaves interrupts to the default): exit 130, "interrupted", as docs/ci.md
// says every command does, with the error object under --json, rather than death by the
// signal (exit 143, nothing said). Imported first by the executable, before the modules that
// take time to load; a command's own trap (or the agent's) takes the signal from then on.
import { INTERRUPT_SIGNALS, INTERRUPTED_EXIT } from "./interrupts.js";

for (const name of INTERRUPT_SIGNALS) {
  process.on(name, () => {
    // Another listener (trapInterrupts, the agent's stop) has the signal: it decides.
    if (process.listenerCount(name) > 1) return;
    const message = `interrupted (${name})`;
    if (process.argv.includes("--json")) {
      process.stdout.write(`${JSON.stringify({ error: { code: "interrupted", message } })}\n`);
    }
    process.stderr.write(`error: ${message}\n`);
    process.exit(INTERRUPTED_EXIT);
  });
}
