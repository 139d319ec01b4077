// Runs an external command to completion and returns its output. A failure (or an exit code
// the caller did not allow) becomes an OperationError quoting the command's own last words.
import { setPriority } from "node:os";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { OperationError } from "../errors.js";
import { whenChildEnds } from "./child-end.js";
import { eitherSignal, startDeadline } from "./deadline.js";
import { spawnOwned } from "./owned-children.js";
import { withoutSourceSecrets } from "./source-reference.js";

export interface RunOptions {
  /** Written to (or, for a stream, piped into) the command's stdin. */
  readonly input?: string | Readable;
  /** Exit codes that are not failures (default: only 0). */
  readonly okCodes?: readonly number[];
  /** What the command is for, in error messages ("create the bridge"). */
  readonly purpose?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Error codes for a command that cannot start, and one that fails (defaults: command-*). */
  readonly errorCodes?: { readonly missing: string; readonly failed: string };
  /** The hint given when the command cannot start (e.g. how to install it). */
  readonly missingHint?: string;
  /** Stops the command (SIGTERM); the run then fails as killed. */
  readonly signal?: AbortSignal;
  /** Stops the command (SIGTERM) once it has run this long; the run then fails, saying so. */
  readonly timeoutMs?: number;
  /** Its scheduling priority (nice value, 19 lowest), for work in the background. */
  readonly priority?: number;
  /** The most stdout kept, in bytes (default RUN_OUTPUT_LIMIT): past it the command is stopped. */
  readonly maxOutput?: number;
}

/**
 * The stdout a command may write before it is stopped: far above what any command run here
 * answers (a closure's path-info at 10,000 paths is about 10 MB), so only a runaway meets it.
 */
export const RUN_OUTPUT_LIMIT = 256 * 1024 * 1024;

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export function runCommand(
  command: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<RunResult> {
  // Said in its errors, with no credential of a source reference (a flake URL's token).
  const shown = withoutSourceSecrets([command, ...args].join(" "));
  const purpose = options.purpose ? ` to ${options.purpose}` : "";
  const deadline = options.timeoutMs === undefined ? undefined : startDeadline(options.timeoutMs);
  const stop = deadline === undefined ? options.signal : eitherSignal(deadline, options.signal);
  return new Promise((resolve, reject) => {
    const proc = spawnOwned(command, args, {
      ...(options.env ? { env: options.env } : {}),
      ...(stop ? { signal: stop } : {}),
    });
    if (options.priority !== undefined && proc.pid !== undefined) {
      try {
        setPriority(proc.pid, options.priority);
      } catch {
        // Not allowed here: it runs at the deployer's own priority.
      }
    }
    const out: Buffer[] = [];
    const limit = options.maxOutput ?? RUN_OUTPUT_LIMIT;
    let outBytes = 0;
    let overflowed = false;
    let stderr = "";
    proc.stdout.on("data", (d: Buffer) => {
      if (overflowed) return;
      outBytes += d.length;
      if (outBytes > limit) {
        overflowed = true;
        out.length = 0;
        proc.kill("SIGKILL");
        return;
      }
      out.push(d);
    });
    proc.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr = (stderr + d).slice(-8000);
    });
    proc.stdin.on("error", () => {}); // a command that exits early need not read its input
    let inputFailure: Error | undefined;
    if (options.input === undefined || typeof options.input === "string") {
      proc.stdin.end(options.input ?? "");
    } else {
      // If the input fails, the command must not wait for more: end it and report the cause.
      // A command that stopped reading (EPIPE) or was stopped (its deadline, its caller) is
      // not the input's failure: how the command ended is the cause, said when it closes.
      pipeline(options.input, proc.stdin).catch((err: NodeJS.ErrnoException) => {
        const ended = proc.exitCode !== null || proc.signalCode !== null;
        if (err.code === "EPIPE" || stop?.aborted || ended) return;
        inputFailure = err;
        proc.kill();
      });
    }
    const codes = options.errorCodes ?? { missing: "command-missing", failed: "command-failed" };
    proc.on("error", (err) => {
      // A stopped command still closes, and fails there as killed.
      if (err.name === "AbortError") return;
      reject(
        new OperationError(codes.missing, `cannot run '${command}'${purpose}: ${err.message}`, {
          ...(options.missingHint ? { hint: options.missingHint } : {}),
        }),
      );
    });
    // At 'close', or a moment after the exit when a process it left behind holds its pipes
    // (util/child-end.ts): that process would otherwise hold the run past every deadline.
    const stopped = () => overflowed || inputFailure !== undefined || stop?.aborted === true;
    whenChildEnds(
      proc,
      (code, signal) => {
        deadline?.clear();
        if (inputFailure) {
          reject(inputFailure);
          return;
        }
        if (overflowed) {
          reject(
            new OperationError(
              codes.failed,
              `'${shown}'${purpose} wrote more than ${limit} bytes of output, and was stopped`,
            ),
          );
          return;
        }
        const result = { code: code ?? -1, stdout: Buffer.concat(out).toString("utf8"), stderr };
        if ((options.okCodes ?? [0]).includes(result.code)) {
          resolve(result);
          return;
        }
        const why = deadline?.signal.aborted
          ? `took longer than ${Math.round((options.timeoutMs ?? 0) / 100) / 10} s, and was stopped`
          : signal
            ? `was killed by ${signal}`
            : `exited with ${code}`;
        const last = withoutSourceSecrets(stderr.trim().split("\n").slice(-6).join("\n"));
        reject(
          new OperationError(
            codes.failed,
            `'${shown}'${purpose} ${why}${last ? `:\n${last}` : ""}`,
          ),
        );
      },
      stopped,
    );
  });
}
