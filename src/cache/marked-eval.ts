// One `nix eval --json --show-trace` of an expression that marks its parts (nix/eval-trace.ts),
// bounded: a deadline, the JSON it may print, and the evaluator's heap. Every evaluation of a
// fleet's flakes runs here (the fleet, the systems, init's readers); each caller names what
// failed in its own words from the result.
import { totalmem } from "node:os";
import { OperationError } from "../errors.js";
import { type EvalLocation, type MarkPath, NixEvalTrace } from "../nix/eval-trace.js";
import { withDeadline } from "../util/deadline.js";
import { withoutSourceSecrets } from "../util/source-reference.js";
import { runStreamed } from "../util/streamed-run.js";
import { localNixVersion, NEW_CLI, NIX_ERRORS, type NixOptions, storeArgs } from "./local-nix.js";

export interface MarkedEvalOptions {
  /** The marks' name (`nixMarkFunction(mark)` in the expression). */
  readonly mark: string;
  /** Seconds the evaluation may take. */
  readonly timeoutSeconds: number;
  /** The bytes of JSON it may print: past them the answer is `tooLarge`. */
  readonly jsonLimit: number;
  /** Stops it (an interrupted command): the run then throws, saying it was stopped. */
  readonly signal?: AbortSignal;
  readonly nix?: NixOptions;
}

/** An evaluation Nix failed. */
export interface MarkedEvalFailure {
  readonly kind: "failed";
  /** The deepest mark it failed under; undefined: outside every mark. */
  readonly path: MarkPath | undefined;
  /** Nix's message ("" when it said none). */
  readonly message: string;
  /** Where Nix says the error is, when it named a file. */
  readonly location?: EvalLocation;
  /** The evaluator ran out of its heap (its bound, heapBound). */
  readonly outOfMemory: boolean;
}

export type MarkedEval =
  | { readonly kind: "ok"; readonly json: string }
  | { readonly kind: "too-large" }
  | { readonly kind: "timeout" }
  | MarkedEvalFailure;

/**
 * The heap an evaluation may take: three quarters of this machine's memory, so that an
 * evaluation that would take it all (a list of a billion elements, a recursion that builds)
 * fails with Nix's "out of memory" rather than the machine's OOM killer choosing a victim.
 * GC_MAXIMUM_HEAP_SIZE is the Boehm collector's own bound, which Nix's evaluator allocates
 * from; one given in the environment is kept.
 */
const EVAL_HEAP_BYTES = Math.floor((totalmem() * 3) / 4);

/** The bound an evaluation runs under, as the environment gives it to Nix, and in words. */
function heapBound(): { readonly env: string; readonly text: string } {
  const given = process.env.GC_MAXIMUM_HEAP_SIZE;
  if (given !== undefined && given !== "") {
    return { env: given, text: `${given} bytes (GC_MAXIMUM_HEAP_SIZE in the environment)` };
  }
  const gib = (EVAL_HEAP_BYTES / 2 ** 30).toFixed(1);
  return {
    env: String(EVAL_HEAP_BYTES),
    text: `${gib} GiB (three quarters of this machine's memory, the bound nixship sets)`,
  };
}

/**
 * What a failed evaluation says, for an error message: Nix's words without the credentials a
 * flake reference may hold; for a heap that ran out, the bound it met.
 */
export function evalFailureText(failure: MarkedEvalFailure): string {
  if (failure.outOfMemory) {
    return `the evaluation needed more memory than its bound, ${heapBound().text}`;
  }
  return withoutSourceSecrets(failure.message || "Nix failed without saying why");
}

export async function markedEval(expr: string, options: MarkedEvalOptions): Promise<MarkedEval> {
  await localNixVersion();
  const trace = new NixEvalTrace(options.mark);
  const r = await withDeadline(options.timeoutSeconds * 1000, options.signal, (bounded) =>
    runStreamed(
      "nix",
      [
        ...NEW_CLI,
        "eval",
        "--impure",
        "--json",
        "--show-trace",
        ...storeArgs(options.nix ?? {}),
        "--expr",
        expr,
      ],
      {
        signal: bounded,
        onStderrLine: (line) => trace.add(line),
        stdoutKept: options.jsonLimit,
        env: { ...process.env, GC_MAXIMUM_HEAP_SIZE: heapBound().env },
      },
    ),
  );
  if (r.error !== undefined) {
    throw new OperationError("nix-missing", `cannot run 'nix': ${r.error.message}`);
  }
  // Said as a stopped Nix is (the caller that trapped the interrupt says it as one).
  if (options.signal?.aborted) {
    throw new OperationError(
      NIX_ERRORS.failed,
      `the evaluation was stopped: ${String(options.signal.reason)}`,
    );
  }
  if (r.stopped) return { kind: "timeout" };
  if (r.code !== 0) {
    const { path, message, location } = trace.result();
    return {
      kind: "failed",
      path,
      message,
      ...(location === undefined ? {} : { location }),
      outOfMemory: /^out of memory$/i.test(message.trim()),
    };
  }
  if (r.stdoutBytes > options.jsonLimit) return { kind: "too-large" };
  return { kind: "ok", json: r.stdout };
}
