// Reads another deployer's fleet from a local flake for `nixship init --from`: a colmena hive or
// deploy-rs's `deploy` output, each in one bounded `nix eval`, a Nix error named by the
// attribute being evaluated (a node's option), a missing hive or deploy output said plainly.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { evalFailureText, markedEval } from "../cache/marked-eval.js";
import { InputError, OperationError } from "../errors.js";
import { FLEET_MARK, formatNixAttrPath } from "../fleet/flake-fleet.js";
import { type ColmenaHive, colmenaExpression } from "../fleet/from-colmena.js";
import {
  type DeployRsDeploy,
  deployRsExpression,
  deployRsReadError,
  readDeployRsNodes,
} from "../fleet/from-deploy-rs.js";
import { parseJsonText } from "../fleet/json-text.js";
import { evalPlace } from "../nix/eval-place.js";
import { untrackedFileFix } from "../nix/git-flake.js";
import { shellWord } from "../util/shell-quote.js";
import { localFlakeRef } from "./flake-source.js";

/** Seconds the evaluation may take: every node's configuration, through the module system. */
const READ_TIMEOUT = 1800;
/** The JSON it may print: options and names, far less than this. */
const MAX_READ_JSON = 16 * 1024 * 1024;
/** nixship's reading of a raw hive (packaging/nix/colmena-hive.nix, lib.readColmenaHive). */
export const COLMENA_HIVE_NIX = fileURLToPath(
  new URL("../../packaging/nix/colmena-hive.nix", import.meta.url),
);

export interface ForeignRead<T> {
  readonly value: T;
  /** The flake reference Nix read. */
  readonly flake: string;
  /** The flake.nix errors name. */
  readonly label: string;
}

/** The hive of the flake in `dir`: its colmenaHive, its colmena, or its hive.nix. */
export async function readColmenaHive(dir: string): Promise<ForeignRead<ColmenaHive>> {
  const flake = await localFlakeRef(dir, false, {
    where: "nixship init --from colmena",
    base: "the current directory",
  });
  const label = join(dir, "flake.nix");
  const out = await evaluate(
    colmenaExpression(dir, flake, COLMENA_HIVE_NIX),
    label,
    "the hive",
    flake,
  );
  if (out.missing !== undefined && existsSync(join(dir, "hive.nix"))) {
    // There on disk, not in the flake as Nix reads it: a git repository that does not track it.
    throw new InputError(
      "hive-not-in-flake",
      `${label}: ${join(dir, "hive.nix")} is not part of the flake as Nix reads it (the flake is a git repository, and git does not track the file), so the fleet could not import it either`,
      {
        hint: `git -C ${shellWord(dir)} add hive.nix (and the files it imports), then run init again`,
      },
    );
  }
  if (out.missing !== undefined) {
    throw new InputError(
      "no-hive",
      `${label}: no colmena hive: the flake has no colmenaHive or colmena output, and ${join(dir, "hive.nix")} does not exist`,
      {
        hint: `its outputs: ${(out.missing as string[]).slice(0, 20).join(", ") || "none"}; run init --from colmena where the hive is`,
      },
    );
  }
  return { value: out as unknown as ColmenaHive, flake, label };
}

/**
 * The `deploy` output of the flake in `dir` (readDeployRsNodes: a configuration that fails and
 * that no node's system profile activates is left out and said; one that a node's activates is
 * named with the node).
 */
export async function readDeployRs(dir: string): Promise<ForeignRead<DeployRsDeploy>> {
  const flake = await localFlakeRef(dir, false, {
    where: "nixship init --from deploy-rs",
    base: "the current directory",
  });
  const label = join(dir, "flake.nix");
  const read = await readDeployRsNodes(async (look) => {
    const r = await evaluateMarked(deployRsExpression(flake, look), label, "deploy.nodes");
    if (r.kind === "failed") {
      const place = evalPlace(label, r.location, flake);
      return { kind: "failed", path: r.path, place, text: evalFailureText(r) };
    }
    const out = parseJsonText(r.json, label) as Record<string, unknown>;
    if (out.missing !== undefined) {
      throw new InputError(
        "no-deploy",
        `${label}: the flake has no deploy output (deploy-rs's deploy.nodes)`,
        { hint: `its outputs: ${(out.missing as string[]).slice(0, 20).join(", ") || "none"}` },
      );
    }
    return { kind: "read", deploy: out as unknown as DeployRsDeploy };
  });
  if (read.kind === "failed") {
    throw deployRsReadError(read, await untrackedFileFix(read.failure.text, dir));
  }
  return { value: read.deploy, flake, label };
}

/**
 * One bounded `nix eval` of `expr`: its JSON, or Nix's failure (as markedEval gives it); past
 * its time or its size, refused, naming `what` was read.
 */
async function evaluateMarked(expr: string, label: string, what: string) {
  const r = await markedEval(expr, {
    mark: FLEET_MARK,
    timeoutSeconds: READ_TIMEOUT,
    jsonLimit: MAX_READ_JSON,
  });
  if (r.kind === "timeout") {
    throw new OperationError(
      "init-eval-timeout",
      `${label}: reading ${what} took longer than ${READ_TIMEOUT} s`,
    );
  }
  if (r.kind === "too-large") {
    throw new InputError(
      "init-eval-too-large",
      `${label}: ${what} comes to more than ${MAX_READ_JSON / 1024 / 1024} MiB of JSON`,
    );
  }
  return r;
}

async function evaluate(
  expr: string,
  label: string,
  what: string,
  flake: string,
): Promise<Record<string, unknown>> {
  const r = await evaluateMarked(expr, label, what);
  if (r.kind === "failed") {
    const { path, location } = r;
    const at = path === undefined || path.length === 0 ? "" : `${formatNixAttrPath(path)}: `;
    const place = evalPlace(label, location, flake);
    const text = evalFailureText(r);
    throw new InputError("init-eval-failed", `${place}: ${at}${text}`, {
      hint:
        (await untrackedFileFix(text, dirname(label))) ??
        `the error is Nix's, evaluating ${what}: fix it there`,
    });
  }
  return parseJsonText(r.json, label) as Record<string, unknown>;
}
