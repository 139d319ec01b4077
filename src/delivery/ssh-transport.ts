// Running activate.sh on a host over OpenSSH: host keys always checked (never accepted
// blindly), one shared connection per host (ControlMaster), and a fresh connection on request
// (the magic-rollback confirmation must prove that a new login still works).
import { createHash } from "node:crypto";
import { join } from "node:path";
import { OperationError } from "../errors.js";
import {
  type ActivationResult,
  PINNED_ACTIVATOR,
  parseActivationResult,
  scriptInput,
} from "../host/activation.js";
import type { ScriptRun } from "../host/activation-session.js";
import { onCommandEnd } from "../util/command-end.js";
import { timedOut, withDeadline } from "../util/deadline.js";
import { privateRuntimeDir } from "../util/runtime-dir.js";
import { shellQuote } from "../util/shell-quote.js";
import { runStreamed } from "../util/streamed-run.js";
import { withoutControls } from "../util/text.js";
import { sshConfigValue } from "./ssh-config-for-nix.js";
import { sharedConnections } from "./ssh-master-pool.js";
import { terminateMasters } from "./ssh-mux.js";

export interface SshTarget {
  /** The host's name in the fleet, for messages. */
  readonly name: string;
  /** user@host, or an ssh_config alias. */
  readonly destination: string;
  readonly user: string | undefined;
  readonly configFile: string | undefined;
  readonly knownHosts: string | undefined;
  /**
   * Run the host's installed, pinned activation script through sudo (`ssh.sudo`) instead of
   * piping activate.sh to a shell; absent: false.
   */
  readonly sudo?: boolean;
  /**
   * KexAlgorithms for its new (settling) logins, from `settlingTarget`; absent: ssh's own
   * settings, as for every other login.
   */
  readonly settlingKex?: string;
}

/**
 * The command line that runs activate.sh with `args` on the host, and its input: the piped
 * script after its variables, or (sudo) exactly the one sudo rule's command, whose input is
 * the one variable's value (a pinned script reads it from stdin).
 */
export function activateCommand(
  target: Pick<SshTarget, "sudo">,
  args: readonly string[],
  variables: Readonly<Record<string, string>> = {},
): { command: string; input: string } {
  const quoted = args.map(shellQuote).join(" ");
  if (target.sudo !== true) {
    return { command: `sh -s -- ${quoted}`, input: scriptInput(variables) };
  }
  const values = Object.values(variables);
  if (values.length > 1) throw new Error("a pinned activation takes at most one input variable");
  return { command: `sudo -n ${PINNED_ACTIVATOR} ${quoted}`, input: values[0] ?? "" };
}

export interface SshRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  /** The bytes the command wrote to stdout, kept or not (runOverSsh's `stdoutKept`). */
  readonly stdoutBytes?: number;
  /** Its output was still open a moment after ssh exited, and not waited for (streamed-run). */
  readonly streamsHeld?: true;
}

/**
 * Where shared connections live: in the deploying user's private runtime directory (another
 * user who could make it first would receive our sessions), named per trust configuration
 * (ssh_config and known_hosts) so a connection verified under one set of host keys is never
 * reused under another, and per process, since each command stops the connections it started
 * when it ends (one shared with a concurrent command would end under it): `DIR/TRUST-PID-%C`.
 * This is the prefix common to every process's, `DIR/TRUST-`.
 */
export function controlPrefixFor(
  configFile: string | undefined,
  knownHosts: string | undefined,
): string {
  const trust = createHash("sha256")
    .update(`${configFile ?? ""}\0${knownHosts ?? ""}`)
    .digest("hex")
    .slice(0, 8);
  return join(privateRuntimeDir(), `${trust}-`);
}

/** A socket path's limit (sun_path, 108 bytes with its NUL) less the host's part and ssh's. */
const SOCKET_PREFIX_MAX = 107 - 40 - 17;

/** A ControlPath under this process's prefix for a trust configuration, with ssh's `%C`. */
export function controlPathFor(configFile: string | undefined, knownHosts: string | undefined) {
  return `${processControlPrefix(configFile, knownHosts)}%C`;
}

/**
 * The control socket of `target`'s shared connection in this process: the prefix, then a hash
 * of how it is reached (destination and user), so that the deployer knows each master's socket
 * and can end one to keep within the bound of held connections (ssh-master-pool.ts).
 */
export function controlPathOf(target: SshTarget): string {
  const host = createHash("sha256")
    .update(`${target.destination}\0${target.user ?? ""}`)
    .digest("hex")
    .slice(0, 20);
  return `${processControlPrefix(target.configFile, target.knownHosts)}${host}`;
}

/**
 * Runs `use` while `target`'s shared connection holds a place among the bounded masters
 * (ssh-master-pool.ts): its master may start in it, and is not ended under it.
 */
export async function withSharedConnection<T>(
  target: SshTarget,
  use: () => Promise<T>,
): Promise<T> {
  const release = await sharedConnections.acquire(controlPathOf(target));
  try {
    return await use();
  } finally {
    release();
  }
}

/**
 * Runs `use` over `target`'s shared connection where the bound has room for it (`shared`
 * true), else over a login of its own (`shared` false): for a use that carries no secret and
 * need not keep the connection for later, such as a survey's status past the bound.
 */
export async function withSharedConnectionIfRoom<T>(
  target: SshTarget,
  use: (shared: boolean) => Promise<T>,
): Promise<T> {
  const release = sharedConnections.tryAcquire(controlPathOf(target));
  if (release === undefined) return use(false);
  try {
    return await use(true);
  } finally {
    release();
  }
}

/** This process's control-path prefix for a trust configuration (`DIR/TRUST-PID-`), checked. */
function processControlPrefix(
  configFile: string | undefined,
  knownHosts: string | undefined,
): string {
  const prefix = `${controlPrefixFor(configFile, knownHosts)}${process.pid}-`;
  if (Buffer.byteLength(prefix) > SOCKET_PREFIX_MAX) {
    throw new OperationError(
      "runtime-dir-too-long",
      `ssh's control sockets would not fit a socket path under ${prefix}: it is ${Buffer.byteLength(prefix)} bytes, and at most ${SOCKET_PREFIX_MAX} fit`,
      { hint: "set XDG_RUNTIME_DIR (or TMPDIR) to a shorter directory only you can use" },
    );
  }
  return prefix;
}

/**
 * ssh's arguments to reach `target`; a shared connection is remembered, to be stopped. The
 * keywords given with `-o` are fleet/ssh-options.ts' SSH_OPTIONS_SET_BY_NIXSHIP (a test checks).
 */
export function sshArgs(target: SshTarget, options: { fresh?: boolean } = {}): string[] {
  const args: string[] = [];
  if (target.configFile) args.push("-F", target.configFile);
  if (target.knownHosts) {
    args.push("-o", `UserKnownHostsFile=${sshConfigValue(target.knownHosts)}`);
  }
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
  if (options.fresh) {
    args.push("-o", "ControlMaster=no", "-o", "ControlPath=none");
    if (target.settlingKex) args.push("-o", `KexAlgorithms=${target.settlingKex}`);
  } else {
    const prefix = processControlPrefix(target.configFile, target.knownHosts);
    rememberMaster(prefix);
    args.push(
      "-o",
      "ControlMaster=auto",
      "-o",
      `ControlPath=${sshConfigValue(controlPathOf(target))}`,
      "-o",
      "ControlPersist=60",
    );
  }
  if (target.user) args.push("-l", target.user);
  args.push(target.destination);
  return args;
}

/**
 * The control-path prefixes (`DIR/TRUST-PID-`, one per trust configuration) under which this
 * process may have started shared connections, stopped when the command ends.
 */
const masterPrefixes = new Set<string>();

function rememberMaster(prefix: string): void {
  if (masterPrefixes.size === 0) onCommandEnd(closeSharedConnections);
  masterPrefixes.add(prefix);
}

/**
 * Stops the shared connections (ControlMaster) this process started, each asked over its
 * control socket as `ssh -O exit` does (5 s each, no process started), so that none outlives
 * the command: a master keeps the ssh client's pipes open, and with them the deployer, for as
 * long as it persists.
 */
export async function closeSharedConnections(): Promise<void> {
  const prefixes = [...masterPrefixes];
  masterPrefixes.clear();
  await terminateMasters(prefixes);
}

/** ssh's exit on a failure of its own (no connection, a refused key): the remote command's are others. */
const SSH_FAILED = 255;

/** Runs `command` (a shell command line) on the host, feeding `input` to its stdin. */
export async function runOverSsh(
  target: SshTarget,
  command: string,
  options: {
    input?: string;
    fresh?: boolean;
    signal?: AbortSignal;
    onStderrLine?: (line: string) => void;
    /** The bytes of stdout kept (its end); the streamed run's default when omitted. */
    stdoutKept?: number;
    /** Stops ssh once stdout passes this many bytes (`stdoutBytes` then says so). */
    stdoutLimit?: number;
  } = {},
): Promise<SshRun> {
  // A process group of its own: a Ctrl-C at the terminal goes to the deployer, which aborts
  // what is in flight over ssh, and not straight to every ssh client (and shared master).
  const start = () =>
    runStreamed("ssh", [...sshArgs(target, options), command], {
      detached: true,
      ...(options.input === undefined ? {} : { input: options.input }),
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.onStderrLine ? { onStderrLine: options.onStderrLine } : {}),
      ...(options.stdoutKept === undefined ? {} : { stdoutKept: options.stdoutKept }),
      ...(options.stdoutLimit === undefined ? {} : { stdoutLimit: options.stdoutLimit }),
    });
  // A fresh connection is its own; a shared one takes a place among the bounded masters.
  const r = options.fresh ? await start() : await withSharedConnection(target, start);
  if (r.error !== undefined) throw r.error;
  if (r.stopped) {
    return {
      code: SSH_FAILED,
      stdout: "",
      stderr: `${r.stderr}aborted`,
      stdoutBytes: r.stdoutBytes,
    };
  }
  return {
    code: r.code ?? SSH_FAILED,
    stdout: r.stdout,
    stderr: r.stderr,
    stdoutBytes: r.stdoutBytes,
    ...(r.streamsHeld ? { streamsHeld: true as const } : {}),
  };
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

/**
 * Runs activate.sh on the host (piped, `sh -s -- ARGS`; or its installed copy through sudo) and
 * reads its JSON result.
 */
export async function runActivate(
  target: SshTarget,
  args: readonly string[],
  options: RunActivateOptions = {},
): Promise<ScriptRun> {
  const { command, input } = activateCommand(target, args, options.variables);
  let bounded: AbortSignal | undefined;
  const run = (signal: AbortSignal | undefined) => {
    bounded = signal;
    return runOverSsh(target, command, {
      input,
      ...(options.fresh ? { fresh: true } : {}),
      ...(signal ? { signal } : {}),
      ...(options.onLog ? { onStderrLine: options.onLog } : {}),
    });
  };
  const r =
    options.timeoutSeconds === undefined
      ? await run(options.signal)
      : await withDeadline(options.timeoutSeconds * 1000, options.signal, run);
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
    : bounded !== undefined && timedOut(bounded)
      ? `no answer within ${options.timeoutSeconds}s`
      : "";
  const said = target.sudo === true ? sudoRefusal(r.stderr, target) : undefined;
  // Output left open past ssh's exit is the one way an answer can go unread: say so.
  const held = r.streamsHeld ? HELD_OUTPUT : "";
  const failure =
    stopped || said || [unreachable(r.code, r.stderr), unparsed, held].filter(Boolean).join("; ");
  // ssh exits 255 on its own failures; any other exit is the remote command's, which ran.
  const answered = unparsed !== "" && !stopped && said === undefined && r.code !== SSH_FAILED;
  return { code: r.code, result, failure, ...(answered ? { unreadable: true as const } : {}) };
}

/**
 * Why sudo did not run the installed script, with the fix; undefined when sudo did not say
 * (its words are the last `sudo:` line: a rule missing, a password asked, no such file).
 */
export function sudoRefusal(stderr: string, target: Pick<SshTarget, "user">): string | undefined {
  const line = stderr
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.startsWith("sudo:"))
    .at(-1);
  if (line === undefined) return undefined;
  const said = withoutControls(line).slice(0, LAST_WORDS);
  const user = target.user ?? "the ssh user";
  if (/command not found|No such file/.test(said)) {
    return `${said}: the host has no ${PINNED_ACTIVATOR} (deploy it once as root with nixosModules.host enabled, or set its "sudo": false)`;
  }
  return `${said}: ${user} may not run ${PINNED_ACTIVATOR} through sudo without a password (set services.nixship-host.deployUser = "${user}" in the host's configuration)`;
}

/** Why a run without a result may have had one: its output was not read to its end. */
export const HELD_OUTPUT =
  "its output was still open after ssh exited (a process it left behind holds it), and was not read to its end";

/** The most of a host's or ssh's last words a message carries. */
const LAST_WORDS = 500;

/** Why ssh gave no result: its own last words (e.g. "Host key verification failed."). */
export function unreachable(code: number, stderr: string): string {
  const last = lastLine(stderr);
  if (!last) return `ssh exited with ${code} and no result`;
  return last.startsWith("ssh:") ? last : `ssh: ${last}`;
}

/**
 * The last meaningful line ssh or the host printed, to explain a failure: without control
 * characters (a host chose them) and cut to LAST_WORDS characters.
 */
export function lastLine(stderr: string): string {
  const line = (
    stderr
      .trim()
      .split("\n")
      .filter((l) => l.trim() && !l.startsWith("activate: "))
      .at(-1) ?? ""
  ).trim();
  const clean = withoutControls(line);
  return clean.length > LAST_WORDS ? `${clean.slice(0, LAST_WORDS)} [cut]` : clean;
}
