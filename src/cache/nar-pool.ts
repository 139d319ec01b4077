// The push's worker threads for zstd and uncompressed NARs (and the deltas' reads of the NARs the
// deployer's store holds, delta-base.ts): each takes one store path at a time
// and does all of its work (serialise, hash, compress, hash, write the file) on its own core;
// only the job and the digests cross between threads. The main thread only schedules, stores
// and commits. A small push does the same work inline instead (InlineNarWriter).
import { Worker } from "node:worker_threads";
import { InputError, NixshipError, OperationError } from "../errors.js";
import { Sha256 } from "../nix/hash.js";
import type { NarDigests } from "./nar-check.js";
import { narFile } from "./nar-file.js";
import type { WireError, WorkerReply, WorkerRequest } from "./nar-worker.js";
import { compressorFor } from "./zstd.js";

export interface NarJob {
  /** Where the store path's files are. */
  readonly path: string;
  /** The new file the NAR goes into. */
  readonly out: string;
  /** The zstd level, or undefined: the NAR is written uncompressed. */
  readonly level: number | undefined;
  /** How errors name the path (its store path). */
  readonly label: string;
  /** The most bytes the NAR may have: past them it fails, `nar-too-large` (none: no bound). */
  readonly maxNarBytes?: number;
}

interface Pending {
  readonly label: string;
  readonly onBytes: (narBytes: number) => void;
  readonly resolve: (out: NarDigests) => void;
  readonly reject: (err: unknown) => void;
}

interface Queued {
  readonly request: WorkerRequest;
  readonly pending: Pending;
}

/**
 * The worker script. Built, it sits beside this module, named from dist/ (one level up) so that
 * the bundled CLI in dist/cli/ finds it too. Under vitest this module is the TypeScript
 * source, which a worker cannot load, so the built copy in dist/ is used (the test command
 * builds first).
 */
function workerScript(): URL {
  return import.meta.url.endsWith(".ts")
    ? new URL("../../dist/cache/nar-worker.js", import.meta.url)
    : new URL("../cache/nar-worker.js", import.meta.url);
}

/** Writes NAR files for push: on worker threads (NarPool) or, for small pushes, inline. */
export interface NarWriter {
  /**
   * Serialises `job.path` into the new file `job.out`, compressed at `job.level` if it has
   * one; returns both digests. `job.label` names the path in errors. On failure `out` is
   * removed.
   */
  write(job: NarJob, onBytes?: (narBytes: number) => void): Promise<NarDigests>;
  close(): Promise<void>;
}

/**
 * Pushes of at most this many NAR bytes write their NAR files on the main thread: booting a
 * worker thread (a fresh V8 isolate and its modules) cost about 0.13 CPU-s on this project's
 * VM, more than serialising and compressing this much (about 0.06 CPU-s at zstd 3).
 */
export const INLINE_NAR_BYTES = 16 << 20;

/** The NAR files of a small push, written on the main thread, one after another. */
export class InlineNarWriter implements NarWriter {
  async write(job: NarJob, onBytes: (narBytes: number) => void = () => {}): Promise<NarDigests> {
    // One path at a time, each after the event loop has had a turn.
    await new Promise((resolve) => setImmediate(resolve));
    const compressor = job.level === undefined ? undefined : compressorFor(job.level);
    try {
      return narFile(job.path, job.out, compressor, onBytes, job.maxNarBytes);
    } catch (err) {
      if (err instanceof NixshipError) throw err;
      throw readFailed(job.label, err instanceof Error ? err.message : String(err));
    }
  }

  async close(): Promise<void> {}
}

export class NarPool implements NarWriter {
  readonly #idle: Worker[] = [];
  readonly #queue: Queued[] = [];
  readonly #pending = new Map<number, Pending>();
  readonly #busy = new Map<Worker, number>();
  readonly #workers: Worker[];
  #nextId = 0;
  #broken: Error | undefined;
  /** The workers that have not exited. */
  #running = 0;

  /** Starts `size` workers. */
  constructor(size: number) {
    this.#workers = Array.from({ length: Math.max(1, size) }, () => this.#spawn());
    this.#idle.push(...this.#workers);
  }

  write(job: NarJob, onBytes: (narBytes: number) => void = () => {}): Promise<NarDigests> {
    if (this.#broken) return Promise.reject(this.#broken);
    const id = this.#nextId++;
    const request: WorkerRequest = {
      id,
      level: job.level,
      path: job.path,
      out: job.out,
      ...(job.maxNarBytes === undefined ? {} : { maxNarBytes: job.maxNarBytes }),
    };
    return new Promise<NarDigests>((resolve, reject) => {
      this.#queue.push({ request, pending: { label: job.label, onBytes, resolve, reject } });
      this.#dispatch();
    });
  }

  /** Stops the workers. */
  async close(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }

  #dispatch(): void {
    while (this.#idle.length > 0 && this.#queue.length > 0) {
      const worker = this.#idle.pop() as Worker;
      const { request, pending } = this.#queue.shift() as Queued;
      this.#pending.set(request.id, pending);
      this.#busy.set(worker, request.id);
      worker.postMessage(request);
    }
  }

  #spawn(): Worker {
    const worker = new Worker(workerScript());
    this.#running++;
    worker.on("message", (reply: WorkerReply) => this.#onReply(worker, reply));
    worker.on("error", (err) => this.#fail(err));
    worker.on("exit", (code) => {
      // Never handed work again: a job posted to it would wait for good.
      const idle = this.#idle.indexOf(worker);
      if (idle >= 0) this.#idle.splice(idle, 1);
      this.#running--;
      if (this.#busy.has(worker) || this.#queue.length > 0) {
        this.#fail(new Error(`a NAR worker thread exited (code ${code}) while it wrote NAR files`));
      } else if (this.#running === 0) {
        this.#fail(new Error(`every NAR worker thread exited (the last with code ${code})`));
      }
    });
    return worker;
  }

  #onReply(worker: Worker, reply: WorkerReply): void {
    const pending = this.#pending.get(reply.id);
    if (pending === undefined) return;
    if (reply.type === "bytes") {
      pending.onBytes(reply.narBytes);
      return;
    }
    this.#pending.delete(reply.id);
    this.#busy.delete(worker);
    this.#idle.push(worker);
    if (reply.type === "done") {
      pending.resolve({
        nar: { hash: new Sha256(Buffer.from(reply.nar.hash)), size: reply.nar.size },
        file: { hash: new Sha256(Buffer.from(reply.file.hash)), size: reply.file.size },
      });
    } else {
      pending.reject(revive(reply.error, pending.label));
    }
    this.#dispatch();
  }

  /** A worker died: fail everything in flight or waiting, and every later call. */
  #fail(cause: Error): void {
    this.#broken ??= new OperationError(
      "nar-worker-failed",
      `writing NAR files failed: ${cause.message}`,
      { cause },
    );
    for (const pending of this.#pending.values()) pending.reject(this.#broken);
    for (const { pending } of this.#queue.splice(0)) pending.reject(this.#broken);
    this.#pending.clear();
    this.#busy.clear();
  }
}

/** A worker's error as the same kind of error it would have been on the main thread. */
function revive(error: WireError, label: string): Error {
  if (error.exitCode === 2) {
    return new InputError(
      error.code ?? "bad-input",
      error.message,
      error.hint ? { hint: error.hint } : {},
    );
  }
  if (error.exitCode === 1) {
    return new OperationError(
      error.code ?? "failed",
      error.message,
      error.hint ? { hint: error.hint } : {},
    );
  }
  return readFailed(label, error.message);
}

function readFailed(label: string, message: string): OperationError {
  return new OperationError("nar-read-failed", `cannot serialise ${label}: ${message}`);
}
