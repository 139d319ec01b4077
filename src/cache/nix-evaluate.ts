// Evaluating a fleet's flakes with the local Nix: every output in one `nix eval`, the flakes
// fetched once, a missing output reported with the outputs the flake does have.

import { InputError, OperationError } from "../errors.js";
import { flakeErrorHint } from "../nix/flake-error-hint.js";
import { nixString } from "../nix/nix-string.js";
import { sourceReference, withoutSourceSecrets } from "../util/source-reference.js";
import { NEW_CLI, type NixOptions, nixCommand, storeArgs } from "./local-nix.js";

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

/**
 * An evaluation that Nix failed: its own words (the end of its stderr), without the expression
 * nixship generated, naming the flakes; the references in both shown without their credentials.
 */
function evaluationFailed(stderr: string, flakes: readonly string[]): OperationError {
  const said = withoutSourceSecrets(stderr.trim().split("\n").slice(-20).join("\n"));
  return new OperationError(
    "nix-eval-failed",
    `evaluating ${flakes.map(sourceReference).join(", ")} failed${said ? `:\n${said}` : ""}`,
    {
      hint: flakeErrorHint(
        said,
        "the error is Nix's, in the flake: fix it there ('nix flake check' helps)",
      ),
    },
  );
}

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
  const expr = evaluationExpression(outputs, attribute);
  const evaluated = await nixCommand(
    "nix",
    [...NEW_CLI, "eval", "--impure", "--json", ...storeArgs(options), "--expr", expr],
    { okCodes: [0, 1], ...(signal ? { signal } : {}) },
  ).catch((err: unknown) => {
    // Its failure quotes the command line, whose expression holds the flakes' references.
    if (!(err instanceof OperationError)) throw err;
    throw new OperationError(err.code, withoutSourceSecrets(err.message), {
      ...(err.hint === undefined ? {} : { hint: err.hint }),
    });
  });
  if (evaluated.code !== 0) throw evaluationFailed(evaluated.stderr, flakes);
  const picked = JSON.parse(evaluated.stdout) as ({ drv: string } | { available: string[] })[];
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
 * caller can name the hosts and the closest outputs; only faults of Nix itself fail it.
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
  pick = f: cands: itself: let found = builtins.filter (x: x != null) (map (at f) cands ++ map (p: drv (at f p)) itself); in
    if found == [ ] then { available = available f; } else { drv = (builtins.head found).${attribute}; };
in [ ${outputs
    .map(
      (o) => `(pick (builtins.elemAt flakes ${flakes.indexOf(o.flake)}) ${candidates(o.attrPath)})`,
    )
    .join(" ")} ]`;
}
