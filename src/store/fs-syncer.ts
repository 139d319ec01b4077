// syncfs(2) of one directory's file system, on request, through a long-lived shell that runs
// coreutils' `sync --file-system` (Node has no binding for syncfs). Why a long-lived child and
// not a spawn per sync: spawning forks this process, and once a push's worker threads and
// buffers are up a fork is dear, since the page tables are copied and every page written
// afterwards faults again. bench:push measured about 0.4 s of system time per fork on this
// project's 2-core VM, 3.4 s for one uncompressed push; the shell is started while the
// process is small, and its own forks of `sync` are cheap.
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import type { Socket } from "node:net";
import { OperationError } from "../errors.js";

/** How long one syncfs may take: writing back a push's gigabytes on a slow disk. */
export const FILE_SYSTEM_SYNC_TIMEOUT_MS = 10 * 60_000;

// Reads one request line per sync; answers "ok", or "failed CODE: WORDS" with what `sync`
// said, on a line of its own. The loop ends when its stdin closes (this process ended or
// closed it), so the shell never outlives its parent's pipe.
const SCRIPT = `while IFS= read -r _; do
  words=$("$0" --file-system -- "$1" 2>&1)
  code=$?
  if [ "$code" = 0 ]; then echo ok
  else printf 'failed %s: %s\\n' "$code" "$(printf %s "$words" | tr '\\n' ' ' | head -c 2000)"; fi
done`;

/** The most stdout or stderr kept from the helper: its answers are a few bytes. */
const MAX_OUTPUT = 8000;

interface Request {
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

interface Helper {
  readonly proc: ChildProcessWithoutNullStreams;
  stdout: string;
  stderr: string;
  /** The request the helper is running; later ones wait in `queue`. */
  current?: { readonly request: Request; readonly timer: NodeJS.Timeout };
}

export interface FileSystemSyncerOptions {
  /** The command run as `COMMAND --file-system -- DIR` (default `sync`). */
  readonly command?: string;
  readonly timeoutMs?: number;
}

/**
 * Syncs the file system `dir` is on, one request at a time, each bounded by `timeoutMs`. The
 * shell starts at `start()` (or at the first sync): call it before the process grows. A
 * helper that fails, times out or dies is killed and replaced at the next request.
 */
export class FileSystemSyncer {
  readonly #command: string;
  readonly #timeoutMs: number;
  #helper: Helper | undefined;
  readonly #queue: Request[] = [];

  constructor(
    readonly dir: string,
    options: FileSystemSyncerOptions = {},
  ) {
    this.#command = options.command ?? "sync";
    this.#timeoutMs = options.timeoutMs ?? FILE_SYSTEM_SYNC_TIMEOUT_MS;
  }

  /** Starts the shell now, if it is not running. */
  start(): void {
    if (this.#helper !== undefined) return;
    // Its own process group: a Ctrl-C meant for this process must not kill a sync that an
    // interrupted push still needs to publish what it finished.
    const proc = spawn("sh", ["-c", SCRIPT, this.#command, this.dir], {
      stdio: ["pipe", "pipe", "pipe"],
      detached: true,
    });
    const helper: Helper = { proc, stdout: "", stderr: "" };
    this.#helper = helper;
    proc.stdin.on("error", () => {}); // a dead helper is reported by 'close'
    proc.stdout.setEncoding("utf8").on("data", (d: string) => {
      helper.stdout += d;
      this.#onOutput(helper);
    });
    proc.stderr.setEncoding("utf8").on("data", (d: string) => {
      helper.stderr = (helper.stderr + d).slice(-MAX_OUTPUT);
    });
    proc.on("error", (err) => this.#retire(helper, this.#failure(`cannot run sh: ${err.message}`)));
    // 'exit', not 'close': a `sync` orphaned by a killed shell may hold the pipes open.
    proc.on("exit", (code, signal) =>
      this.#retire(
        helper,
        this.#failure(`its shell ended (${signal ?? `exit ${code}`})${tail(helper.stderr)}`),
      ),
    );
    // An idle helper keeps nothing alive; a request in flight refs it (see #next).
    this.#idle(helper);
  }

  /** Resolves once every change made on the file system before the call is on disk. */
  sync(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ resolve, reject });
      this.#next();
    });
  }

  /** Ends the shell; requests still waiting fail. A later sync starts a new one. */
  close(): void {
    const helper = this.#helper;
    this.#helper = undefined;
    for (const request of this.#queue.splice(0)) request.reject(this.#failure("it was closed"));
    if (helper === undefined) return;
    if (helper.current) {
      clearTimeout(helper.current.timer);
      helper.current.request.reject(this.#failure("it was closed"));
      helper.current = undefined;
    }
    helper.proc.stdin.end();
  }

  #next(): void {
    if (this.#helper?.current !== undefined) return;
    const request = this.#queue.shift();
    if (request === undefined) return;
    this.start();
    const helper = this.#helper as Helper;
    const timer = setTimeout(() => {
      this.#retire(helper, this.#failure(`it took longer than ${this.#timeoutMs / 1000} s`));
    }, this.#timeoutMs);
    helper.current = { request, timer };
    helper.stderr = "";
    for (const stream of [helper.proc.stdout, helper.proc.stderr]) (stream as Socket).ref();
    helper.proc.ref();
    helper.proc.stdin.write("\n");
  }

  #onOutput(helper: Helper): void {
    for (let nl = helper.stdout.indexOf("\n"); nl >= 0; nl = helper.stdout.indexOf("\n")) {
      const line = helper.stdout.slice(0, nl);
      helper.stdout = helper.stdout.slice(nl + 1);
      const current = helper.current;
      if (current === undefined) {
        this.#retire(helper, this.#failure(`its shell said "${line.slice(0, 80)}" unasked`));
        return;
      }
      clearTimeout(current.timer);
      helper.current = undefined;
      this.#idle(helper);
      if (line === "ok") current.request.resolve();
      else current.request.reject(this.#failure(`'sync' ${line}`));
      this.#next();
    }
    if (helper.stdout.length > MAX_OUTPUT) {
      this.#retire(helper, this.#failure("its shell wrote more than it ever should"));
    }
  }

  /** Kills `helper` (if it is still the one in use), failing its request; the queue goes on. */
  #retire(helper: Helper, err: OperationError): void {
    if (helper.current) {
      clearTimeout(helper.current.timer);
      helper.current.request.reject(err);
      helper.current = undefined;
    }
    if (this.#helper !== helper) return;
    this.#helper = undefined;
    helper.proc.kill("SIGKILL");
    this.#next();
  }

  #idle(helper: Helper): void {
    for (const stream of [helper.proc.stdin, helper.proc.stdout, helper.proc.stderr]) {
      (stream as Socket).unref();
    }
    helper.proc.unref();
  }

  #failure(why: string): OperationError {
    return new OperationError(
      "store-fs-failed",
      `cannot flush the file system of ${this.dir}: ${why}`,
      {
        hint: "the sync command is part of coreutils; check that it is installed and the disk is healthy",
      },
    );
  }
}

function tail(stderr: string): string {
  const last = stderr.trim().split("\n").slice(-6).join("\n");
  return last ? `:\n${last}` : "";
}
