// The child processes that live and die with this one: Nix, compressors, the commands the CLI
// waits on. Each is stopped when the process exits, however it exits (SIGTERM, what a stop sends
// first: Nix then kills its builders and cleans up), and an interrupt that ends a command which
// keeps no trap of its own stops them before the process exits, SIGKILL for one that ignores
// SIGTERM (an evaluator in a loop that never checks for interrupts). Not owned: children
// started in a process group of their own on purpose (ssh sessions to hosts, an agent's
// activation), which their callers stop as they mean to.
import type { ChildProcess } from "node:child_process";

const owned = new Set<ChildProcess>();
let exitHooked = false;

/** Makes `proc` one of the children stopped with this process. */
export function ownChild(proc: ChildProcess): void {
  if (!exitHooked) {
    exitHooked = true;
    process.once("exit", () => {
      for (const p of owned) p.kill("SIGTERM");
    });
  }
  if (proc.pid === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
  owned.add(proc);
  proc.once("exit", () => owned.delete(proc));
}

/** SIGKILL to every owned child still running, at once (a second interrupt: no grace). */
export function killOwnedChildren(): void {
  for (const p of owned) p.kill("SIGKILL");
}

/** How many owned children run now. */
export function ownedChildrenRunning(): number {
  return owned.size;
}

/**
 * Stops every owned child: SIGTERM, then SIGKILL to those still running `graceMs` later.
 * Settles once all exited, or just after the SIGKILL.
 */
export async function stopOwnedChildren(graceMs: number): Promise<void> {
  const running = [...owned];
  if (running.length === 0) return;
  const exited = Promise.all(
    running.map(
      (p) =>
        new Promise<void>((resolve) => {
          if (p.exitCode !== null || p.signalCode !== null) resolve();
          else p.once("exit", () => resolve());
        }),
    ),
  );
  for (const p of running) p.kill("SIGTERM");
  let timer: NodeJS.Timeout | undefined;
  const grace = new Promise<"late">((resolve) => {
    timer = setTimeout(() => resolve("late"), graceMs);
    timer.unref();
  });
  const first = await Promise.race([exited, grace]);
  clearTimeout(timer);
  if (first !== "late") return;
  for (const p of running) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
}
