// Runs a command to its end within a deadline, optionally inside a bench control group, for
// the fleet benchmark and its labs: exit code, output and wall time, never a throw on failure.
import { spawn } from "node:child_process";
import type { CgroupMeter } from "./cgroup-meter.js";

export interface Timed {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly seconds: number;
}

/**
 * Runs a command to its end, killed after `timeoutS`; wall time includes process start-up.
 * With `meter`, the command joins that control group before it starts (a shell writes its own
 * pid there, then execs it), so everything it starts is counted from its first instruction.
 */
export function timed(
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  timeoutS: number,
  meter?: CgroupMeter,
): Promise<Timed> {
  const [file, argv] =
    meter === undefined
      ? [command, args]
      : [
          "sh",
          [
            "-c",
            'for f in $NIXSHIP_BENCH_CGROUP; do echo $$ >> "$f"; done; exec "$@"',
            "sh",
            command,
            ...args,
          ],
        ];
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const proc = spawn(file, argv, {
      env: meter === undefined ? env : { ...env, NIXSHIP_BENCH_CGROUP: meter.procsFiles.join(" ") },
      stdio: ["ignore", "pipe", "pipe"],
      timeout: timeoutS * 1000,
      killSignal: "SIGKILL",
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    proc.stdout.on("data", (d: Buffer) => out.push(d));
    proc.stderr.on("data", (d: Buffer) => err.push(d));
    proc.on("error", reject);
    proc.on("close", (code, signal) =>
      resolve({
        code: code ?? (signal ? 128 : -1),
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8") + (signal ? `\n(killed by ${signal})` : ""),
        seconds: (performance.now() - started) / 1000,
      }),
    );
  });
}

/** The last 20 lines of a command's output, for an error message. */
export function tail(text: string): string {
  return text.trim().split("\n").slice(-20).join("\n");
}
