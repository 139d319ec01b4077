// Reading a failed Nix evaluation: an expression evaluates its parts under marks
// (`builtins.addErrorContext`), and Nix's --show-trace names the marks it was under when it
// failed. Pure: the callers run Nix (cache/marked-eval.ts).

/** Where a mark stands: attribute names and list indexes (`["hosts","web1","tags",1]`). */
export type MarkPath = readonly (string | number)[];

/**
 * A Nix function `mark PATH VALUE`: VALUE, evaluated under a mark named `mark` holding PATH
 * (a Nix list), which `NixEvalTrace(mark)` reads back from Nix's --show-trace (the deepest
 * mark is where it failed).
 */
export function nixMarkFunction(mark: string): string {
  return `path: builtins.addErrorContext "«${mark} \${builtins.toJSON path}»"`;
}

/**
 * What Nix's stderr says of a failed evaluation: the deepest mark it was evaluating under, and
 * its error message. Fed line by line, so a long trace costs no memory; reads Nix's traces
 * innermost first (2.8) and outermost first (newer).
 */
export class NixEvalTrace {
  readonly #mark: RegExp;
  #path: MarkPath | undefined;
  #message: string[] = [];
  #following = false;
  /** Where the last error is (the `at` line after it, before any trace entry). */
  #location: EvalLocation | undefined;
  #awaitingAt = false;

  /** `mark`: the name the expression's marks carry (`nixMarkFunction(mark)`). */
  constructor(mark: string) {
    this.#mark = new RegExp(`«${mark} (\\[.*\\])»`);
  }

  add(line: string): void {
    const mark = line.match(this.#mark);
    if (mark?.[1] !== undefined) {
      const path = parsePath(mark[1]);
      if (path !== undefined && (this.#path === undefined || path.length > this.#path.length)) {
        this.#path = path;
      }
      this.#following = false;
      return;
    }
    const text = line.trim();
    if (text.startsWith("error:")) {
      // The last error: names the fault; earlier ones (newer Nix) only open the trace.
      const first = text.slice("error:".length).trim();
      this.#message = first === "" ? [] : [first];
      this.#following = true;
      this.#location = undefined;
      this.#awaitingAt = true;
      return;
    }
    if (text.startsWith("…")) this.#awaitingAt = false;
    if (this.#awaitingAt && text.startsWith("at ")) {
      this.#awaitingAt = false;
      this.#location = parseLocation(text.slice(3));
    }
    if (!this.#following) return;
    if (text === "" || text.startsWith("…") || text.startsWith("at ") || text.startsWith("(use")) {
      if (this.#message.length > 0) this.#following = false;
      return;
    }
    if (this.#message.length < 6) this.#message.push(text);
  }

  /**
   * The deepest mark's path (for a fleet, its attribute) and Nix's message, as far as they were said, and the
   * file, line and column of the error when Nix named them.
   */
  result(): { path: MarkPath | undefined; message: string; location?: EvalLocation } {
    return {
      path: this.#path,
      message: this.#message.join(" ").slice(0, 2000),
      ...(this.#location === undefined ? {} : { location: this.#location }),
    };
  }
}

/** Where Nix says an error is. */
export interface EvalLocation {
  readonly file: string;
  readonly line: number;
  readonly column: number;
}

/** `FILE:LINE:COL:` as Nix writes it after `at`; a place that is no file (`«string»`) is none. */
function parseLocation(text: string): EvalLocation | undefined {
  const m = /^(\/[^\s«»]{1,4000}):(\d{1,9}):(\d{1,9}):?$/.exec(text);
  if (m === null) return undefined;
  return { file: m[1] as string, line: Number(m[2]), column: Number(m[3]) };
}

function parsePath(text: string): MarkPath | undefined {
  try {
    const value = JSON.parse(text) as unknown;
    if (Array.isArray(value) && value.every((s) => typeof s === "string" || typeof s === "number"))
      return value as MarkPath;
  } catch {
    // not a mark of ours after all
  }
  return undefined;
}
