// Running activate.sh on a host over OpenSSH: host keys always checked (never accepted
// blindly), one shared connection per host (ControlMaster), and a fresh connection on request
// (the magic-rollback confirmation must prove that a new login still works).
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { OperationError } from "../errors.js";
import { type ActivationResult, parseActivationResult, scriptInput } from "../host/activation.js";
import type { ScriptRun } from "../host/activation-session.js";
import { shellQuote } from "../util/shell-quote.js";

export interface SshTarget {
  /** The host's name in the fleet, for messages. */
  readonly name: string;
  /** user@host, or an ssh_config alias. */
  readonly destination: string;
  readonly user: string | undefined;
  readonly configFile: string | undefined;
  readonly knownHosts: string | undefined;
}

export interface SshRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Where shared connections live: one directory per trust configuration (ssh_config and
 * known_hosts), so a connection verified under one set of host keys is never reused under
 * another. Short, because socket paths are limited to 108 bytes.
 */
export function controlDirFor(
  configFile: string | undefined,
  knownHosts: string | undefined,
): string {
  const trust = createHash("sha256")
    .update(`${configFile ?? ""}\0${knownHosts ?? ""}`)
    .digest("hex")
    .slice(0, 12);
  return join(tmpdir(), `nixship-ssh-${process.getuid?.() ?? 0}`, trust);
}

function controlDir(target: SshTarget): string {
  const dir = controlDirFor(target.configFile, target.knownHosts);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

export function sshArgs(target: SshTarget, options: { fresh?: boolean } = {}): string[] {
  const args: string[] = [];
  if (target.configFile) args.push("-F", target.configFile);
  if (target.knownHosts) args.push("-o", `UserKnownHostsFile=${target.knownHosts}`);
  args.push(
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    "BatchMode=yes",
    "-o",
    "ConnectTimeout=10",
    "-o",
    "ServerAliveInterval=5",
    "-o",
    "ServerAliveCountMax=3",
  );
  if (options.fresh) args.push("-o", "ControlMaster=no", "-o", "ControlPath=none");
  else {
    args.push(
      "-o",
      "ControlMaster=auto",
      "-o",
      `ControlPath=${join(controlDir(target), "%C")}`,
      "-o",
      "ControlPersist=60",
    );
  }
  if (target.user) args.push("-l", target.user);
  args.push(target.destination);
  return args;
}

/** The bytes of a command's stdout kept (its end): far more than a result line needs. */
const STDOUT_KEPT = 1024 * 1024;

/** Runs `command` (a shell command line) on the host, feeding `input` to its stdin. */
export function runOverSsh(
  target: SshTarget,
  command: string,
  options: {
    input?: string;
    fresh?: boolean;
    signal?: AbortSignal;
    onStderrLine?: (line: string) => void;
  } = {},
): Promise<SshRun> {
  return new Promise((resolve, reject) => {
    // A process group of its own: a Ctrl-C at the terminal goes to the deployer, which aborts
    // what is in flight over ssh, and not straight to every ssh client (and shared master).
    const proc = spawn("ssh", [...sshArgs(target, options), command], {
      stdio: ["pipe", "pipe", "pipe"],
      detached: true,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    // Only the tail of stdout is kept: the result is its last line, and a host may send more.
    let out: Buffer[] = [];
    let outBytes = 0;
    let stderr = "";
    let partial = "";
    proc.stdout.on("data", (d: Buffer) => {
      out.push(d);
      outBytes += d.length;
      if (outBytes > 2 * STDOUT_KEPT) {
        out = [Buffer.concat(out).subarray(-STDOUT_KEPT)];
        outBytes = STDOUT_KEPT;
      }
    });
    proc.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr = (stderr + d).slice(-16_000);
      if (options.onStderrLine) {
        const lines = (partial + d).split("\n");
        partial = lines.pop() ?? "";
        for (const line of lines) if (line.trim()) options.onStderrLine(line);
      }
    });
    proc.stdin.on("error", () => {});
    proc.stdin.end(options.input ?? "");
    proc.on("error", (err) => {
      if (err.name === "AbortError") resolve({ code: 255, stdout: "", stderr: `${stderr}aborted` });
      else reject(err);
    });
    proc.on("close", (code) =>
      resolve({
        code: code ?? 255,
        stdout: Buffer.concat(out).subarray(-STDOUT_KEPT).toString("utf8"),
        stderr,
      }),
    );
  });
}

export interface RunActivateOptions {
  readonly fresh?: boolean;
  readonly signal?: AbortSignal;
  readonly onLog?: (line: string) => void;
  /** Seconds after which the ssh client is stopped (the run then has no result). */
  readonly timeoutSeconds?: number;
  /** Script variables set before the script runs (see `scriptInput`). */
  readonly variables?: Readonly<Record<string, string>>;
}

/** Pipes activate.sh to the host (`sh -s -- ARGS`) and reads its JSON result. */
export async function runActivate(
  target: SshTarget,
  args: readonly string[],
  options: RunActivateOptions = {},
): Promise<ScriptRun> {
  const signals = [
    ...(options.signal ? [options.signal] : []),
    ...(options.timeoutSeconds !== undefined
      ? [AbortSignal.timeout(options.timeoutSeconds * 1000)]
      : []),
  ];
  const signal = signals.length > 0 ? AbortSignal.any(signals) : undefined;
  const r = await runOverSsh(target, `sh -s -- ${args.map(shellQuote).join(" ")}`, {
    input: scriptInput(options.variables),
    ...(options.fresh ? { fresh: true } : {}),
    ...(signal ? { signal } : {}),
    ...(options.onLog ? { onStderrLine: options.onLog } : {}),
  });
  let result: ActivationResult | undefined;
  // Output that is not a result (a shell that is not POSIX, a truncated line) is named in the
  // failure beside ssh's own last words; no output at all is ssh's story alone.
  let unparsed = "";
  try {
    result = parseActivationResult(r.stdout, target.name);
  } catch (err) {
    if (!(err instanceof OperationError)) throw err;
    if (r.stdout.trim() !== "") unparsed = err.message;
  }
  if (result !== undefined) return { code: r.code, result, failure: "" };
  const stopped = options.signal?.aborted
    ? "interrupted"
    : signal?.aborted
      ? `no answer within ${options.timeoutSeconds}s`
      : "";
  const failure = stopped || [unreachable(r.code, r.stderr), unparsed].filter(Boolean).join("; ");
  return { code: r.code, result, failure };
}

/** Why ssh gave no result: its own last words (e.g. "Host key verification failed."). */
export function unreachable(code: number, stderr: string): string {
  const last = lastLine(stderr);
  if (!last) return `ssh exited with ${code} and no result`;
  return last.startsWith("ssh:") ? last : `ssh: ${last}`;
}

/** The last meaningful line ssh or the host printed, to explain a failure. */
export function lastLine(stderr: string): string {
  return (
    stderr
      .trim()
      .split("\n")
      .filter((l) => l.trim() && !l.startsWith("activate: "))
      .at(-1) ?? ""
  ).trim();
}
