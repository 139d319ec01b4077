// Reads a fleet written in a flake: one `nix eval` of its output, checked by the fleet file's
// own rules (fleet-file.ts), every problem and Nix error named by the flake's attribute.

import { localNixVersion, NEW_CLI } from "../cache/local-nix.js";
import { InputError, OperationError } from "../errors.js";
import { flakeErrorHint } from "../nix/flake-error-hint.js";
import { withDeadline } from "../util/deadline.js";
import { withoutSourceSecrets } from "../util/source-reference.js";
import { runStreamed } from "../util/streamed-run.js";
import { evalPlace } from "./eval-place.js";
import {
  type FlakeFleetSource,
  FleetEvalTrace,
  fleetExpression,
  formatNixAttrPath,
  nixProblem,
} from "./flake-fleet.js";
import type { Fleet } from "./fleet.js";
import { parseFleetValue, resolveFleetPaths } from "./fleet-file.js";
import { parseJsonText } from "./json-text.js";

/** The JSON a fleet may evaluate to: far more than any fleet's settings take. */
const MAX_FLEET_JSON = 64 * 1024 * 1024;
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
  await localNixVersion();
  const trace = new FleetEvalTrace();
  const r = await withDeadline(FLEET_EVAL_TIMEOUT * 1000, signal, (bounded) =>
    runStreamed(
      "nix",
      [...NEW_CLI, "eval", "--impure", "--json", "--show-trace", "--expr", fleetExpression(source)],
      { signal: bounded, onStderrLine: (line) => trace.add(line), stdoutKept: MAX_FLEET_JSON },
    ),
  );
  const where = formatNixAttrPath(source.attrPath);
  if (r.error !== undefined) {
    throw new OperationError("nix-missing", `cannot run 'nix': ${r.error.message}`);
  }
  if (r.stopped) {
    throw new OperationError(
      "fleet-eval-timeout",
      `${source.label}: evaluating ${where} took longer than ${FLEET_EVAL_TIMEOUT} s`,
    );
  }
  if (r.code !== 0) throw evalFailed(source, trace);
  if (r.stdoutBytes > MAX_FLEET_JSON) {
    throw new InputError(
      "fleet-too-large",
      `${source.label}: ${where} evaluates to more than ${MAX_FLEET_JSON / 1024 / 1024} MiB of JSON`,
    );
  }
  const out = parseJsonText(r.stdout, source.label) as { fleet?: unknown; missing?: string[] };
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
  const fleet = parseFleetValue(out.fleet, source.label, (p) => nixProblem(source.attrPath, p));
  return resolveFleetPaths(fleet, source.baseDir);
}

function evalFailed(source: FlakeFleet, trace: FleetEvalTrace): InputError {
  const { path, message, location } = trace.result();
  const said = withoutSourceSecrets(message || "Nix failed without saying why");
  const at = path === undefined ? "" : `${formatNixAttrPath([...source.attrPath, ...path])}: `;
  // Outside the fleet's own attributes, the flake itself did not evaluate (an input out of
  // reach, an error elsewhere in it): said apart, since such a flake may hold no fleet at all.
  const code = path === undefined ? "flake-eval-failed" : "fleet-eval-failed";
  const place = evalPlace(source.label, location, source.flake);
  return new InputError(code, `${place}: ${at}${said}`, {
    hint: flakeErrorHint(
      said,
      path === undefined
        ? "the error is Nix's, evaluating the flake ('nix flake check' helps)"
        : "the error is Nix's, in the flake's fleet: fix it there",
    ),
  });
}
