// Evaluating a fleet's flakes with the local Nix: every output in one `nix eval`, the flakes
// fetched once, a missing output reported with the outputs the flake does have.

import { InputError, OperationError } from "../errors.js";
import { evalPlace } from "../nix/eval-place.js";
import { nixMarkFunction } from "../nix/eval-trace.js";
import { flakeErrorHint } from "../nix/flake-error-hint.js";
import { nixString } from "../nix/nix-string.js";
import { sourceReference } from "../util/source-reference.js";
import type { NixOptions } from "./local-nix.js";
import { evalFailureText, type MarkedEvalFailure, markedEval } from "./marked-eval.js";

/** Outputs a flake does not have, each with the ones it does (exit 2). */
export class MissingOutputsError extends InputError {
  constructor(
    readonly outputs: readonly FlakeOutput[],
    readonly missing: readonly { readonly index: number; readonly available: readonly string[] }[],
  ) {
    super(
      "flake-output-missing",
      missing
        .map(({ index }) => {
          const o = outputs[index] as FlakeOutput;
          return `flake output not found: ${sourceReference(o.flake)}#${o.attrPath.join(".")}`;
        })
        .join("\n"),
    );
  }
}

/** The marks' name in the systems' evaluation: a failure's mark is `[INDEX]`, its output's. */
const SYSTEM_MARK = "nixship-system-output";

/**
 * An evaluation of systems that Nix failed: its own words, without the expression nixship
 * generated, naming the output whose evaluation failed (`output`, its index; undefined when it
 * failed outside every output: fetching a flake) and the file and line Nix named, in the
 * directory the user edits; references shown without their credentials. Callers that know
 * which hosts an output is for say so in front (`inFrontOf`).
 */
export class SystemEvalError extends OperationError {
  constructor(
    readonly output: number | undefined,
    readonly said: string,
    readonly place: string,
  ) {
    super("nix-eval-failed", `${place}: ${said}`, {
      hint: flakeErrorHint(
        said,
        "the error is Nix's, in the flake: fix it there ('nix flake check' helps)",
      ),
    });
  }

  /** The same error, with `who` (the hosts whose system it is) in front. */
  inFrontOf(who: string): SystemEvalError {
    return new SystemEvalError(this.output, this.said, `${who}: ${this.place}`);
  }
}

/**
 * Seconds the systems' evaluation may take: ten minutes, and a minute more for each output
 * (a large NixOS configuration evaluates in seconds; a fleet of hundreds takes minutes).
 */
export function systemsEvalTimeout(outputs: number): number {
  return 600 + 60 * outputs;
}

/** The JSON the systems' evaluation may print: a derivation path, or a list of outputs, each. */
const MAX_EVAL_JSON = 64 * 1024 * 1024;

/** A flake output by flake reference and attribute path (`path:/abs/dir`, ["web"]). */
export interface FlakeOutput {
  readonly flake: string;
  readonly attrPath: readonly string[];
}

const ATTR = /^[A-Za-z0-9_][A-Za-z0-9_'-]*$/;
const FLAKE_OUTPUT_KINDS = new Set(["packages", "legacyPackages", "nixosConfigurations", "checks"]);

/**
 * Where Nix would look for `#attr` (as `nix build` and `nixos-rebuild` resolve it): the places
 * tried first, then the attribute itself when it holds a derivation or a configuration (whose
 * toplevel), as a fleet in the flake names a host's system (`#nixship.hosts.web1.system`).
 */
function candidates(attrPath: readonly string[]): string {
  const list = (segments: readonly string[]) =>
    `[ ${segments.map((s) => (s === "\0system" ? "sys" : `"${s}"`)).join(" ")} ]`;
  const [first] = attrPath;
  if (first !== undefined && FLAKE_OUTPUT_KINDS.has(first)) {
    const full =
      first === "nixosConfigurations" && attrPath.length === 2
        ? [...attrPath, "config", "system", "build", "toplevel"]
        : attrPath;
    return `[ ${list(full)} ] [ ]`;
  }
  const places = [
    ["packages", "\0system", ...attrPath],
    ["legacyPackages", "\0system", ...attrPath],
    ["nixosConfigurations", ...attrPath, "config", "system", "build", "toplevel"],
  ];
  const itself = [[...attrPath, "config", "system", "build", "toplevel"], attrPath];
  return `[ ${places.map(list).join(" ")} ] [ ${itself.map(list).join(" ")} ]`;
}

/**
 * Evaluates every output in ONE Nix evaluation (each flake is fetched once by getFlake).
 * Returns the derivation of each, in order; `buildDerivations` (or a build host) builds them.
 */
export function evaluateDerivations(
  outputs: readonly FlakeOutput[],
  options: NixOptions = {},
  signal?: AbortSignal,
): Promise<string[]> {
  return evaluateOutputs(outputs, options, "drvPath", signal);
}

/**
 * The system (`x86_64-linux`, …) each output is built for, in one evaluation that instantiates
 * nothing: what a fleet needs of its builders (`doctor`). Bounded by `signal`.
 */
export function evaluateSystemTypes(
  outputs: readonly FlakeOutput[],
  options: NixOptions = {},
  signal?: AbortSignal,
): Promise<string[]> {
  return evaluateOutputs(outputs, options, "system", signal);
}

async function evaluateOutputs(
  outputs: readonly FlakeOutput[],
  options: NixOptions,
  attribute: "drvPath" | "system",
  signal?: AbortSignal,
): Promise<string[]> {
  if (outputs.length === 0) return [];
  for (const o of outputs) {
    const bad = o.attrPath.find((s) => !ATTR.test(s));
    if (o.attrPath.length === 0 || bad !== undefined) {
      throw new InputError(
        "bad-installable",
        `${sourceReference(o.flake)}#${o.attrPath.join(".")}: '${bad ?? ""}' is not an attribute name this tool can evaluate`,
      );
    }
  }
  const flakes = [...new Set(outputs.map((o) => o.flake))];
  const timeoutSeconds = systemsEvalTimeout(outputs.length);
  const evaluated = await markedEval(evaluationExpression(outputs, attribute), {
    mark: SYSTEM_MARK,
    timeoutSeconds,
    jsonLimit: MAX_EVAL_JSON,
    nix: options,
    ...(signal === undefined ? {} : { signal }),
  });
  const named = flakes.map(sourceReference).join(", ");
  if (evaluated.kind === "timeout") {
    throw new OperationError(
      "nix-eval-timeout",
      `evaluating ${named} took longer than ${timeoutSeconds} s (10 minutes and one more for each of its ${outputs.length} outputs), and was stopped`,
      { hint: "an evaluation that never ends is a loop in the flake; 'nix flake check' helps" },
    );
  }
  if (evaluated.kind === "too-large") {
    throw new OperationError(
      "nix-eval-failed",
      `evaluating ${named} printed more than ${MAX_EVAL_JSON / 1024 / 1024} MiB, where derivation paths were asked`,
    );
  }
  if (evaluated.kind === "failed") throw systemEvalFailed(evaluated, outputs);
  const picked = JSON.parse(evaluated.json) as ({ drv: string } | { available: string[] })[];
  const missing = picked.flatMap((p, index) =>
    "available" in p ? [{ index, available: p.available }] : [],
  );
  if (missing.length > 0) throw new MissingOutputsError(outputs, missing);
  return picked.map((p) => (p as { drv: string }).drv);
}

/**
 * The one expression that evaluates `outputs` (each flake fetched once by getFlake): a list,
 * per output, of `{ drv = OUTPUT.ATTRIBUTE; }` or `{ available = [ ... ]; }` when the flake
 * has no such output. A missing output is data, with the outputs the flake does have, so the
 * caller can name the hosts and the closest outputs. Each output is evaluated under a mark of
 * its index, which names it when its evaluation fails (a throw, a type error in its system).
 */
export function evaluationExpression(
  outputs: readonly FlakeOutput[],
  attribute: "drvPath" | "system",
): string {
  const flakes = [...new Set(outputs.map((o) => o.flake))];
  return `let
  sys = builtins.currentSystem;
  flakes = [ ${flakes.map((f) => `(builtins.getFlake ${nixString(f)})`).join(" ")} ];
  at = set: path: builtins.foldl' (s: k: if s != null && builtins.isAttrs s && builtins.hasAttr k s then builtins.getAttr k s else null) set path;
  names = set: if builtins.isAttrs set then builtins.attrNames set else [ ];
  available = f: (names (at f [ "packages" sys ])) ++ (map (n: "nixosConfigurations.\${n}") (names (f.nixosConfigurations or { })));
  drv = v: if builtins.isAttrs v && (v.type or null) == "derivation" then v else null;
  mark = ${nixMarkFunction(SYSTEM_MARK)};
  pick = f: cands: itself: let found = builtins.filter (x: x != null) (map (at f) cands ++ map (p: drv (at f p)) itself); in
    if found == [ ] then { available = available f; }
    else let d = (builtins.head found).${attribute}; in builtins.seq d { drv = d; };
in
  # The flakes (and their inputs) fetched first, outside the marks: a failure there is no output's.
  builtins.seq (builtins.foldl' (seen: f: builtins.seq f.outputs seen) null flakes) [ ${outputs
    .map(
      (o, i) =>
        `(mark [ ${i} ] (pick (builtins.elemAt flakes ${flakes.indexOf(o.flake)}) ${candidates(o.attrPath)}))`,
    )
    .join(" ")} ]`;
}

/** A failed evaluation of `outputs`, naming the output it failed in (its mark) where known. */
function systemEvalFailed(failure: MarkedEvalFailure, outputs: readonly FlakeOutput[]): Error {
  const index = failure.path?.[0];
  const output = typeof index === "number" ? outputs[index] : undefined;
  const flakes = [...new Set(outputs.map((o) => o.flake))];
  const label =
    output === undefined
      ? `evaluating ${flakes.map(sourceReference).join(", ")}`
      : `${sourceReference(output.flake)}#${output.attrPath.join(".")}`;
  const place = evalPlace(label, failure.location, output?.flake ?? flakes[0] ?? "");
  const where = place.startsWith(label) ? place : `${label} (${place})`;
  return new SystemEvalError(
    output === undefined ? undefined : (index as number),
    evalFailureText(failure),
    where,
  );
}
