// The child processes that live and die with this one: Nix, compressors, the commands the CLI
// waits on. Each is stopped when the process exits, however it exits (SIGTERM, what a stop sends
// first: Nix then kills its builders and cleans up), and an interrupt that ends a command which
// keeps no trap of its own stops them before the process exits, SIGKILL for one that ignores
// SIGTERM (an evaluator in a loop that never checks for interrupts). Not owned: children
// started in a process group of their own on purpose (ssh sessions to hosts, an agent's
// activation), which their callers stop as they mean to.
//
// A process killed outright (SIGKILL: Terraform ending an external data source, the OOM killer)
// runs no exit hook: its children started through spawnOwned get SIGTERM from the kernel then
// (PR_SET_PDEATHSIG, set by util-linux's setpriv before it execs the command), so that no
// `nix build` runs on orphaned.
import {
  type ChildProcess,
  type ChildProcessWithoutNullStreams,
  type SpawnOptionsWithoutStdio,
  spawn,
  spawnSync,
} from "node:child_process";
import { accessSync, closeSync, constants, openSync, readSync, statSync } from "node:fs";
import { delimiter, isAbsolute, join, resolve } from "node:path";

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

/**
 * Spawns `command` with piped stdio as a child owned by this process (ownChild), which the
 * kernel also stops (SIGTERM) should this process die without its exit hook: on Linux with a
 * setpriv that can, the command is exec'd by `setpriv --pdeathsig SIGTERM` (the same pid, the
 * same argv). A command not found on PATH is spawned as given, so that it fails as it would
 * (ENOENT).
 */
export function spawnOwned(
  command: string,
  args: readonly string[],
  options: SpawnOptionsWithoutStdio = {},
): ChildProcessWithoutNullStreams {
  const path = (options.env ?? process.env).PATH ?? "";
  const setpriv = process.platform === "linux" ? pdeathsigSetpriv(path) : undefined;
  const found =
    setpriv !== undefined &&
    (command.includes("/")
      ? executable(resolve(String(options.cwd ?? process.cwd()), command), "")
      : executable(command, path)) !== undefined;
  // setpriv finds it on the same PATH: the command keeps its own name as argv[0] (what `ps`
  // shows, and what a multi-call binary such as nix-store dispatches on). A command that cannot
  // be exec'd (a script whose `#!` names no interpreter here) is spawned as given, so that it
  // fails to start (ENOENT) rather than as setpriv's exit 127.
  const proc = found
    ? spawn(setpriv, ["--pdeathsig", "SIGTERM", "--", command, ...args], {
        ...options,
        stdio: "pipe",
      })
    : spawn(command, args, { ...options, stdio: "pipe" });
  ownChild(proc);
  return proc;
}

/** Whether each setpriv found takes --pdeathsig (util-linux's since 2.33; busybox's does not). */
const takesPdeathsig = new Map<string, boolean>();

/**
 * The setpriv on `path` that takes --pdeathsig, asked once per file (it runs itself through
 * that option); undefined when there is none, and children are spawned plainly, as before.
 */
function pdeathsigSetpriv(path: string): string | undefined {
  const file = executable("setpriv", path);
  if (file === undefined) return undefined;
  let takes = takesPdeathsig.get(file);
  if (takes === undefined) {
    const probe = spawnSync(file, ["--pdeathsig", "SIGTERM", "--", file, "--version"], {
      stdio: "ignore",
      timeout: 5000,
    });
    takes = probe.status === 0;
    takesPdeathsig.set(file, takes);
  }
  return takes ? file : undefined;
}

/** Where `command` is: itself when it has a slash, else the first executable of that name on `path`. */
function executable(command: string, path: string): string | undefined {
  const candidates = command.includes("/")
    ? [command]
    : path
        .split(delimiter)
        .filter((dir) => isAbsolute(dir))
        .map((dir) => join(dir, command));
  for (const file of candidates) {
    try {
      accessSync(file, constants.X_OK);
      if (statSync(file).isFile()) return interpreterMissing(file) ? undefined : file;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

/** The most of a script's first line the kernel reads for its `#!` (BINPRM_BUF_SIZE, Linux 5.1). */
const SHEBANG_LIMIT = 256;

/**
 * Whether `file` is a script whose `#!` interpreter is not an executable file: exec(2) of it
 * fails with ENOENT, as execvp reports a command that is not there. Read: its first 256 bytes.
 */
function interpreterMissing(file: string): boolean {
  let head: Buffer;
  try {
    const fd = openSync(file, "r");
    try {
      head = Buffer.alloc(SHEBANG_LIMIT);
      head = head.subarray(0, readSync(fd, head, 0, SHEBANG_LIMIT, 0));
    } finally {
      closeSync(fd);
    }
  } catch {
    return false; // Not readable (execute-only): exec decides.
  }
  if (head[0] !== 0x23 || head[1] !== 0x21) return false;
  const interpreter = head.toString("latin1", 2).split("\n")[0]?.trim().split(/[ \t]/)[0] ?? "";
  // A relative one is found from the cwd the command gets: exec decides.
  if (!isAbsolute(interpreter)) return false;
  try {
    accessSync(interpreter, constants.X_OK);
    return !statSync(interpreter).isFile();
  } catch {
    return true;
  }
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
