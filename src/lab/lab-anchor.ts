// A lab's anchor: one idle process in the machine's own mount and network namespaces, started
// with the lab and stopped with it. A host reaches the machine's side through it (nsenter -t
// ANCHOR -m -n), which is how its power button runs `lab reboot` outside the host: PID 1's
// namespaces may be closed to the lab (they are on this machine), the anchor's are ours.
import { spawn } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import { OperationError } from "../errors.js";
import { stopProcesses } from "./lab-host.js";

/** What names a lab's anchor: its name, number and lab directory's tag (layout.ts). */
export interface AnchorOf {
  readonly name: string;
  readonly number: number;
  readonly tag: string;
}

/**
 * The anchor's argv[0]: how it is found again, also after a crash. Labs of the same name may
 * live in two lab directories at once (their tags differ), never under the same number.
 */
export function anchorName(lab: AnchorOf): string {
  return `nixship-lab-anchor-${lab.tag}-${lab.number}-${lab.name}`;
}

/** Any lab's anchor's argv[0]: its tag, number and name. */
export const ANCHOR_NAME = /^nixship-lab-anchor-([0-9a-f]{8})-(\d+)-([a-z0-9-]+)$/;

/** Starts the lab's anchor, detached; returns its pid. */
export function startAnchor(lab: AnchorOf): number {
  const child = spawn("sleep", ["infinity"], {
    argv0: anchorName(lab),
    detached: true,
    stdio: "ignore",
  });
  child.unref();
  if (child.pid === undefined) {
    throw new OperationError("lab-start-failed", `cannot start the anchor of lab '${lab.name}'`);
  }
  return child.pid;
}

/** Every lab anchor on the machine: its pid and what its name says of its lab. */
export async function listAnchors(): Promise<(AnchorOf & { readonly pid: number })[]> {
  const found: (AnchorOf & { readonly pid: number })[] = [];
  for (const entry of await readdir("/proc").catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    const [argv0, arg, rest] = cmdline.split("\0");
    const m = ANCHOR_NAME.exec(argv0 ?? "");
    if (m === null || arg !== "infinity" || rest !== "") continue;
    found.push({ pid: Number(entry), tag: m[1] ?? "", number: Number(m[2]), name: m[3] ?? "" });
  }
  return found;
}

/** The pids of the lab's anchors (one, or none once it is down). */
export async function anchorPids(lab: AnchorOf): Promise<number[]> {
  const name = anchorName(lab);
  return (await listAnchors()).filter((a) => anchorName(a) === name).map((a) => a.pid);
}

/** The pids of an anchor named before labs were owned by their directory. */
export async function legacyAnchorPids(name: string, number: number): Promise<number[]> {
  const wanted = `nixship-lab-anchor-${number}-${name}\0infinity\0`;
  const pids: number[] = [];
  for (const entry of await readdir("/proc").catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    if (cmdline === wanted) pids.push(Number(entry));
  }
  return pids;
}

/** Stops the lab's anchor. */
export async function stopAnchor(lab: AnchorOf): Promise<void> {
  await stopProcesses(await anchorPids(lab));
}
