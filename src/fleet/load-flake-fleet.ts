// Reads a fleet written in a flake: one `nix eval` of its output, checked by the fleet file's
// own rules (fleet-file.ts), every problem and Nix error named by the flake's attribute.

import { realpath } from "node:fs/promises";
import { relative } from "node:path";
import { evalFailureText, type MarkedEvalFailure, markedEval } from "../cache/marked-eval.js";
import { InputError, OperationError } from "../errors.js";
import { evalPlace } from "../nix/eval-place.js";
import { flakeErrorHint } from "../nix/flake-error-hint.js";
import { untrackedFileFix } from "../nix/git-flake.js";
import { runCommand } from "../util/run.js";
import {
  FLEET_MARK,
  type FlakeFleetSource,
  fleetExpression,
  fleetPositionsExpression,
  formatNixAttrPath,
  nixProblem,
} from "./flake-fleet.js";
import type { Fleet } from "./fleet.js";
import { FleetFileError, MAX_REPORTED, parseFleetValue, resolveFleetPaths } from "./fleet-file.js";
import type { Problem } from "./json-check.js";
import { parseJsonText } from "./json-text.js";
import { MAX_FLEET_JSON } from "./load-fleet.js";

/**
 * Seconds the evaluation may take: it evaluates each configuration's `nixship.deployment`
 * (the module system, not the systems), about a second each for a large NixOS configuration.
 */
export const FLEET_EVAL_TIMEOUT = 1800;

/** The output a flake's fleet is, unless named: `.#nixship`. */
export const DEFAULT_FLEET_OUTPUT = "nixship";

export interface FlakeFleet extends FlakeFleetSource {
  /** What errors name as the fleet's place: the flake's flake.nix, or its reference. */
  readonly label: string;
  /** The fleet as messages name it: `/dir#nixship`. */
  readonly name: string;
  /** Where the fleet's relative paths (ssh's files, secrets) are resolved. */
  readonly baseDir: string;
}

/** Evaluates the fleet once, and checks it as a fleet file is checked. */
export async function loadFlakeFleet(source: FlakeFleet, signal?: AbortSignal): Promise<Fleet> {
  const r = await markedEval(fleetExpression(source), {
    mark: FLEET_MARK,
    timeoutSeconds: FLEET_EVAL_TIMEOUT,
    jsonLimit: MAX_FLEET_JSON,
    ...(signal === undefined ? {} : { signal }),
  });
  const where = formatNixAttrPath(source.attrPath);
  if (r.kind === "timeout") {
    throw new OperationError(
      "fleet-eval-timeout",
      `${source.label}: evaluating ${where} took longer than ${FLEET_EVAL_TIMEOUT} s`,
    );
  }
  if (r.kind === "failed") throw await evalFailed(source, r);
  if (r.kind === "too-large") {
    throw new InputError(
      "fleet-too-large",
      `${source.label}: ${where} evaluates to more than ${MAX_FLEET_JSON / 1024 / 1024} MiB of JSON`,
    );
  }
  const out = parseJsonText(r.json, source.label) as { fleet?: unknown; missing?: string[] };
  if (out.fleet === undefined) {
    const outputs = (out.missing ?? []).slice(0, 20).join(", ");
    throw new InputError(
      "fleet-output-missing",
      `${source.label}: the flake has no output ${JSON.stringify(where)}`,
      {
        hint:
          outputs === ""
            ? "add the fleet as an output of the flake (docs/fleet.md)"
            : `its outputs: ${outputs}; add the fleet as one (docs/fleet.md)`,
      },
    );
  }
  let fleet: Fleet;
  try {
    fleet = parseFleetValue(out.fleet, source.label, (p) => nixProblem(source.attrPath, p));
  } catch (err) {
    if (!(err instanceof FleetFileError)) throw err;
    // Each problem names the file and line that define its attribute, where Nix knows them.
    const at = await problemPositions(source, err.problems, signal);
    throw new FleetFileError(source.label, err.problems, (p) =>
      nixProblem(source.attrPath, p, at.get(p)),
    );
  }
  const resolved = resolveFleetPaths(fleet, source.baseDir);
  await refuseTokenInCopy(source, resolved);
  return resolved;
}

/** How long git may take to say whether it tracks a file. */
const GIT_TIMEOUT_MS = 10_000;

/**
 * Refuses a Prometheus bearer token file that the flake's copy in the Nix store holds (every
 * file of a `path:` flake; the tracked ones of a git flake): the store is world-readable.
 */
async function refuseTokenInCopy(source: FlakeFleet, fleet: Fleet): Promise<void> {
  const file = fleet.prometheus?.bearerTokenFile;
  if (file === undefined || source.localDir === null) return;
  const real = await realpath(file).catch(() => file);
  const within = (top: string) => real.startsWith(`${top}/`);
  let copied: string | undefined;
  if (source.flake.startsWith("path:")) {
    const top = await realpath(source.localDir).catch(() => source.localDir as string);
    if (within(top)) copied = "every file of its directory";
  } else if (source.flake.startsWith("git+file:")) {
    const top = decodeURIComponent(new URL(source.flake).pathname);
    if (within(top)) {
      const tracked = await runCommand(
        "git",
        ["-C", top, "ls-files", "--error-unmatch", "--", relative(top, real)],
        {
          okCodes: [0, 1],
          purpose: "ask git whether it tracks the bearer token file",
          timeoutMs: GIT_TIMEOUT_MS,
        },
      );
      if (tracked.code === 0) copied = "the files git tracks, this one among them";
    }
  }
  if (copied === undefined) return;
  throw new InputError(
    "secret-in-flake",
    `prometheus.bearerTokenFile ${file} is in the flake ${source.localDir}, which Nix copies (${copied}) into the world-readable Nix store`,
    {
      hint: "keep the token outside the flake, in a file of mode 0600 (an absolute path, or one relative to the flake that leads out of it); with git, never add it",
    },
  );
}

/** Seconds the lookup of where a fleet's problems are defined may take. */
const POSITIONS_TIMEOUT = 60;

/**
 * Where each problem's attribute is defined ("FILE:LINE"): its own, else its nearest parent's
 * (a key that is missing, or a list's element); none where Nix knows none, or cannot say in
 * time. One evaluation, only for a fleet that has problems.
 */
async function problemPositions(
  source: FlakeFleet,
  problems: readonly Problem[],
  signal: AbortSignal | undefined,
): Promise<Map<Problem, string>> {
  const shown = problems.slice(0, MAX_REPORTED);
  const prefixes = (p: Problem) => p.path.map((_, i) => p.path.slice(0, p.path.length - i));
  const paths = [...new Map(shown.flatMap(prefixes).map((q) => [JSON.stringify(q), q])).values()];
  const found = new Map<Problem, string>();
  if (paths.length === 0) return found;
  const r = await markedEval(fleetPositionsExpression(source, paths), {
    mark: FLEET_MARK,
    timeoutSeconds: POSITIONS_TIMEOUT,
    jsonLimit: MAX_FLEET_JSON,
    ...(signal === undefined ? {} : { signal }),
  });
  if (r.kind !== "ok") return found;
  let answers: unknown;
  try {
    answers = JSON.parse(r.json);
  } catch {
    return found;
  }
  if (!Array.isArray(answers)) return found;
  const byPath = new Map(paths.map((q, i) => [JSON.stringify(q), answers[i]]));
  for (const problem of shown) {
    const at = prefixes(problem)
      .map((q) => byPath.get(JSON.stringify(q)))
      .find((a): a is string => typeof a === "string");
    if (at !== undefined) found.set(problem, at);
  }
  return found;
}

async function evalFailed(source: FlakeFleet, failure: MarkedEvalFailure): Promise<InputError> {
  const { path, location } = failure;
  const said = evalFailureText(failure);
  const at = path === undefined ? "" : `${formatNixAttrPath([...source.attrPath, ...path])}: `;
  // Outside the fleet's own attributes, the flake itself did not evaluate (an input out of
  // reach, an error elsewhere in it): said apart, since such a flake may hold no fleet at all.
  const code = path === undefined ? "flake-eval-failed" : "fleet-eval-failed";
  const place = evalPlace(source.label, location, source.flake);
  // A file the fleet reads that git does not track (a local git flake): its `git add`.
  const untracked =
    source.localDir === null ? undefined : await untrackedFileFix(said, source.localDir);
  return new InputError(code, `${place}: ${at}${said}`, {
    hint:
      untracked ??
      flakeErrorHint(
        said,
        path === undefined
          ? "the error is Nix's, evaluating the flake ('nix flake check' helps)"
          : "the error is Nix's, in the flake's fleet: fix it there",
      ),
  });
}
