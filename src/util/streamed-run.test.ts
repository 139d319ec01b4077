// runStreamed with real children: what a child wrote before it exited is read, even when this
// process's event loop is held up past the streams' grace at the moment the exit is reaped.
import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { runStreamed } from "./streamed-run.js";

/** Holds this process's event loop for `ms` milliseconds, as a burst of synchronous spawns does. */
function holdLoop(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

describe("runStreamed", () => {
  it("reads what the child wrote before it exited, however late the loop polls again", async () => {
    // The order that lost ssh's answers on a loaded deployer: a child's exit reaped after its
    // last write but before the loop polled its pipes again (in the pass another child's exit
    // starts), then the loop held up past the streams' grace (by synchronous spawns, there) before
    // it polled. Here: the child names itself on stderr, and writes its result and exits while
    // that line's callback holds the loop; `other`, spawned after it and gone at once, has its
    // exit reaped in the same pass, and its listener holds the loop past the grace.
    const run = runStreamed("sh", ["-c", "echo started >&2; sleep 0.5; echo '{\"ok\":true}'"], {
      onStderrLine: () => holdLoop(1500),
    });
    const other = spawn("sh", ["-c", "exit 0"], { stdio: "ignore" });
    other.on("exit", () => holdLoop(3000));
    // Both other's exit and the stderr line are waiting when the loop next polls.
    holdLoop(300);
    const r = await run;
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('{"ok":true}\n');
  }, 30_000);

  it("does not wait on pipes a process the child left behind still holds", async () => {
    const r = await runStreamed("sh", ["-c", "echo '{\"ok\":true}'; sleep 10 & exit 0"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('{"ok":true}\n');
    expect(r.streamsHeld).toBe(true);
  }, 30_000);

  it("stops a child whose stdout passes its limit, and says how much came", async () => {
    // `yes` would write for ever: stopped past 1 MiB, keeping 64 KiB of it.
    const r = await runStreamed("yes", [], { stdoutLimit: 1024 * 1024, stdoutKept: 64 * 1024 });
    expect(r.stopped).toBe(true);
    expect(r.stdoutBytes).toBeGreaterThan(1024 * 1024);
    expect(r.stdout.length).toBeLessThanOrEqual(64 * 1024);
  }, 30_000);

  it("says nothing held the pipes when they closed with the child", async () => {
    const r = await runStreamed("sh", ["-c", "cat"], { input: "all of it" });
    expect(r.stdout).toBe("all of it");
    expect(r.streamsHeld).toBeUndefined();
  });
});
