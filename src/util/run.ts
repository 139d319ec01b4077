// Runs an external command to completion and returns its output. A failure (or an exit code
// the caller did not allow) becomes an OperationError quoting the command's own last words.
import { spawn } from "node:child_process";
import { OperationError } from "../errors.js";

export interface RunOptions {
  /** Written to the command's stdin. */
  readonly input?: string;
  /** Exit codes that are not failures (default: only 0). */
  readonly okCodes?: readonly number[];
  /** What the command is for, in error messages ("create the bridge"). */
  readonly purpose?: string;
  readonly env?: NodeJS.ProcessEnv;
}

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
  const shown = [command, ...args].join(" ");
  const purpose = options.purpose ? ` to ${options.purpose}` : "";
  return new Promise((resolve, reject) => {
    const proc = spawn(command, args, {
      stdio: ["pipe", "pipe", "pipe"],
      ...(options.env ? { env: options.env } : {}),
    });
    const out: Buffer[] = [];
    let stderr = "";
    proc.stdout.on("data", (d: Buffer) => out.push(d));
    proc.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr = (stderr + d).slice(-8000);
    });
    proc.stdin.on("error", () => {}); // a command that exits early need not read its input
    proc.stdin.end(options.input ?? "");
    proc.on("error", (err) =>
      reject(
        new OperationError("command-missing", `cannot run '${command}'${purpose}: ${err.message}`),
      ),
    );
    proc.on("close", (code, signal) => {
      const result = { code: code ?? -1, stdout: Buffer.concat(out).toString("utf8"), stderr };
      if ((options.okCodes ?? [0]).includes(result.code)) {
        resolve(result);
        return;
      }
      const why = signal ? `was killed by ${signal}` : `exited with ${code}`;
      const last = stderr.trim().split("\n").slice(-6).join("\n");
      reject(
        new OperationError(
          "command-failed",
          `'${shown}'${purpose} ${why}${last ? `:\n${last}` : ""}`,
        ),
      );
    });
  });
}
