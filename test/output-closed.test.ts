// A command's output closed by its reader (`nixship deploy | head`): a command at work stops
// as on a first interrupt (its trap's signal aborts, naming SIGPIPE), through a real pipe whose
// reader exits; the built module, as the executable wires it.
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { NIXSHIP_BIN, run } from "../support/cli.js";

const SCRIPT = `
const { outputClosed, trapInterrupts, INTERRUPTED_EXIT } = await import(process.env.ROOT + "/dist/cli/interrupts.js");
process.stdout.on("error", (err) => { if (err.code === "EPIPE") outputClosed(); else throw err; });
const trap = trapInterrupts({
  first: (signal) => process.stderr.write("stopping: " + signal + "\\n"),
  second: () => process.stderr.write("second\\n"),
});
// Work that writes as it goes, until it is asked to stop (bounded: 20 s).
const end = Date.now() + 20000;
while (!trap.signal.aborted && Date.now() < end) {
  process.stdout.write("a line of progress\\n");
  await new Promise((resolve) => setTimeout(resolve, 5));
}
trap.release();
process.stderr.write("stopped: " + String(trap.signal.reason) + "\\n");
process.exit(trap.signal.aborted ? INTERRUPTED_EXIT : 0);
`;

describe("output closed under a command at work", () => {
  it("stops it as an interrupt (exit 130), once, whatever it writes after", async () => {
    const r = await run(
      "bash",
      ["-c", 'set -o pipefail; node --input-type=module -e "$SCRIPT" | head -n 3 >/dev/null'],
      { env: { ROOT: join(dirname(NIXSHIP_BIN), "../.."), SCRIPT } },
    );
    expect(r.code).toBe(130);
    expect(r.stderr.trim().split("\n")).toEqual([
      "stopping: SIGPIPE",
      "stopped: interrupted (SIGPIPE)",
    ]);
  });
});
