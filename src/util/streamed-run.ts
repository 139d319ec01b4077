// A child process that talks back while it runs (activate.sh, over ssh or as a local child):
// its input written at once, its stderr handed on line by line as it comes, the end of its
// stdout kept for the result. Bounded whatever the child sends: a line is cut at LINE_KEPT
// (a child that never writes a newline cannot grow one without end), stdout keeps its last
// STDOUT_KEPT bytes, stderr its last STDERR_KEPT characters. An abort stops it: TERM, then KILL
// after a grace period. Pipes that a process the child left behind holds open are not waited on
// past a grace after the child's exit, and all the child wrote before it exited is read first.
import { spawn } from "node:child_process";
import { whenChildEnds } from "./child-end.js";
import { spawnOwned } from "./owned-children.js";
import { withoutControls } from "./text.js";

/** The characters of one stderr line passed on: a host's log line is far shorter. */
export const LINE_KEPT = 8192;
/** The bytes of stdout kept (its end): far more than a result line needs. */
export const STDOUT_KEPT = 1024 * 1024;
const STDERR_KEPT = 16_000;
/** Milliseconds from TERM to KILL when a run is stopped. */
const KILL_GRACE_MS = 5000;

export interface StreamedRunOptions {
  readonly input?: string;
  /** Stops the child (TERM, then KILL); the run resolves with `stopped` set. */
  readonly signal?: AbortSignal;
  /** A process group of its own (a Ctrl-C at the terminal then reaches only this process). */
  readonly detached?: boolean;
  /** The child's environment; this process's when omitted. */
  readonly env?: NodeJS.ProcessEnv;
  /** Each non-empty stderr line, control characters removed, as it comes. */
  readonly onStderrLine?: (line: string) => void;
  /** The bytes of stdout kept (its end); STDOUT_KEPT when omitted. */
  readonly stdoutKept?: number;
  /**
   * Stops the child (as `signal` does) once its stdout passes this many bytes: more than any
   * answer it could give, so waiting for its end would only spend time (`stdoutBytes` says it).
   */
  readonly stdoutLimit?: number;
}

export interface StreamedRun {
  /** The exit code; null when a signal ended it (see `killedBy`) or it never started. */
  readonly code: number | null;
  readonly killedBy: NodeJS.Signals | null;
  readonly stdout: string;
  /** The bytes the child wrote to stdout, kept or not: more than were kept means cut. */
  readonly stdoutBytes: number;
  readonly stderr: string;
  /** Set when the signal stopped it. */
  readonly stopped: boolean;
  /** Set when it could not be started at all. */
  readonly error?: Error;
  /**
   * Set when its pipes were still open STREAMS_GRACE_MS after it exited (a process it left
   * behind holds them), and the run ended without waiting for them.
   */
  readonly streamsHeld?: true;
}

export function runStreamed(
  command: string,
  args: readonly string[],
  options: StreamedRunOptions = {},
): Promise<StreamedRun> {
  return new Promise((resolve) => {
    const env = options.env ? { env: options.env } : {};
    // One in a group of its own is its caller's to stop; any other dies with this process.
    const proc = options.detached
      ? spawn(command, args, { stdio: ["pipe", "pipe", "pipe"], detached: true, ...env })
      : spawnOwned(command, args, env);
    const kept = options.stdoutKept ?? STDOUT_KEPT;
    let out: Buffer[] = [];
    let outBytes = 0;
    let stdoutBytes = 0;
    let stderr = "";
    let partial = "";
    let cutting = false;
    let stopped = false;
    let failed: Error | undefined;
    proc.stdout.on("data", (d: Buffer) => {
      out.push(d);
      outBytes += d.length;
      stdoutBytes += d.length;
      if (outBytes > 2 * kept) {
        out = [Buffer.concat(out).subarray(-kept)];
        outBytes = kept;
      }
      if (options.stdoutLimit !== undefined && stdoutBytes > options.stdoutLimit) stop();
    });
    const emit = options.onStderrLine;
    proc.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr = (stderr + d).slice(-STDERR_KEPT);
      if (emit === undefined) return;
      // ssh ends its own lines with CR LF: the CR is part of the line break, not the line.
      const lines = (partial + d).split(/\r?\n/);
      partial = lines.pop() ?? "";
      for (const line of lines) {
        if (cutting)
          cutting = false; // the rest of a line already cut and passed on
        else if (line.trim()) emit(withoutControls(line.slice(0, LINE_KEPT)));
      }
      if (partial.length > LINE_KEPT) {
        if (!cutting) emit(`${withoutControls(partial.slice(0, LINE_KEPT))} [cut]`);
        partial = "";
        cutting = true;
      }
    });
    const stop = () => {
      if (stopped || proc.exitCode !== null) return;
      stopped = true;
      proc.kill("SIGTERM");
      setTimeout(() => proc.kill("SIGKILL"), KILL_GRACE_MS).unref();
    };
    if (options.signal?.aborted) stop();
    options.signal?.addEventListener("abort", stop, { once: true });
    proc.stdin.on("error", () => {}); // a child that exits early need not read its input
    proc.stdin.end(options.input ?? "");
    proc.on("error", (err) => {
      failed = err;
    });
    const finish = (code: number | null, signal: NodeJS.Signals | null, held: boolean) => {
      options.signal?.removeEventListener("abort", stop);
      if (partial.trim() && !cutting && emit) emit(withoutControls(partial.slice(0, LINE_KEPT)));
      resolve({
        code,
        killedBy: signal,
        stdout: Buffer.concat(out).subarray(-kept).toString("utf8"),
        stdoutBytes,
        stderr,
        stopped,
        ...(failed === undefined ? {} : { error: failed }),
        ...(held ? { streamsHeld: true as const } : {}),
      });
    };
    // Pipes that a process the child left behind holds are not waited on for long, and a
    // stopped child not past its exit (util/child-end.ts).
    whenChildEnds(proc, finish, () => stopped);
  });
}
