// A lab's anchor: one idle process in the machine's own mount and network namespaces, started
// with the lab and stopped with it. A host reaches the machine's side through it (nsenter -t
// ANCHOR -m -n), which is how its power button runs `lab reboot` outside the host: PID 1's
// namespaces may be closed to the lab (they are on this machine), the anchor's are ours.
import { spawn } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import { OperationError } from "../errors.js";
import { stopProcesses } from "./lab-host.js";

/**
 * The anchor's argv[0]: how it is found again, also after a crash. Labs of the same name may
 * live in two lab directories at once, never under the same number (their bridges).
 */
export function anchorName(lab: string, number: number): string {
  return `nixship-lab-anchor-${number}-${lab}`;
}

/** Starts the lab's anchor, detached; returns its pid. */
export function startAnchor(lab: string, number: number): number {
  const child = spawn("sleep", ["infinity"], {
    argv0: anchorName(lab, number),
    detached: true,
    stdio: "ignore",
  });
  child.unref();
  if (child.pid === undefined) {
    throw new OperationError("lab-start-failed", `cannot start the anchor of lab '${lab}'`);
  }
  return child.pid;
}

/** The pids of the lab's anchors (one, or none once it is down); no lab: every lab's. */
export async function anchorPids(lab?: { name: string; number: number }): Promise<number[]> {
  const name =
    lab === undefined ? "nixship-lab-anchor-\\d+-[a-z0-9-]+" : anchorName(lab.name, lab.number);
  const wanted = new RegExp(`^${name}\0infinity\0$`);
  const pids: number[] = [];
  for (const entry of await readdir("/proc").catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    if (wanted.test(cmdline)) pids.push(Number(entry));
  }
  return pids;
}

/** Stops the lab's anchor; no lab: every lab's (`lab down --all`). */
export async function stopAnchor(lab?: { name: string; number: number }): Promise<void> {
  await stopProcesses(await anchorPids(lab));
}
