// The NixOS configurations of a local flake, as `nixship init` needs them: one `nix eval` of
// their names and each one's `nixship.deployment` (when it imports the module), nothing built.
import { dirname, join } from "node:path";
import { evalFailureText, markedEval } from "../cache/marked-eval.js";
import { InputError, OperationError } from "../errors.js";
import { FLEET_MARK, formatNixAttrPath } from "../fleet/flake-fleet.js";
import type { JsonObject } from "../fleet/fleet-json.js";
import { type ConfigurationInfo, configurationsExpression } from "../fleet/init-fleet.js";
import { isJsonObject } from "../fleet/json-check.js";
import { parseJsonText } from "../fleet/json-text.js";
import { evalPlace } from "../nix/eval-place.js";
import { flakeErrorHint } from "../nix/flake-error-hint.js";
import { untrackedFileFix } from "../nix/git-flake.js";
import { localFlakeRef } from "./flake-source.js";

/** Seconds the listing may take: the module system of each configuration, not its system. */
const LIST_TIMEOUT = 1800;
/** The JSON the listing may print: names and deployment options, far less than this. */
const MAX_LIST_JSON = 16 * 1024 * 1024;

export interface FlakeConfigurations {
  /** The flake reference Nix read (`git+file:` when the flake is in a git work tree). */
  readonly flake: string;
  readonly configurations: ConfigurationInfo[];
  /** Whether the flake already has the fleet output (`nixship`). */
  readonly hasFleet: boolean;
}

/** Lists the configurations of the flake in `dir` (which must hold flake.nix). */
export async function listFlakeConfigurations(
  dir: string,
  fleetOutput: string,
): Promise<FlakeConfigurations> {
  const label = join(dir, "flake.nix");
  const flake = await localFlakeRef(dir, false, {
    where: "nixship init",
    base: "the current directory",
  });
  const r = await markedEval(configurationsExpression(flake, fleetOutput), {
    mark: FLEET_MARK,
    timeoutSeconds: LIST_TIMEOUT,
    jsonLimit: MAX_LIST_JSON,
  });
  if (r.kind === "timeout") {
    throw new OperationError(
      "init-eval-timeout",
      `${label}: listing nixosConfigurations took longer than ${LIST_TIMEOUT} s`,
    );
  }
  if (r.kind === "failed") {
    const said = evalFailureText(r);
    // The configuration and option it failed in (the expression's marks).
    const at = r.path === undefined || r.path.length === 0 ? "" : `${formatNixAttrPath(r.path)}: `;
    throw new InputError(
      "init-eval-failed",
      `${evalPlace(label, r.location, flake)}: ${at}${said}`,
      {
        hint:
          (await untrackedFileFix(said, dirname(label))) ??
          flakeErrorHint(
            said,
            "the error is Nix's, evaluating the flake's nixosConfigurations ('nix flake check' helps)",
          ),
      },
    );
  }
  if (r.kind === "too-large") {
    throw new InputError(
      "init-eval-too-large",
      `${label}: the configurations' nixship.deployment come to more than ${MAX_LIST_JSON / 1024 / 1024} MiB of JSON`,
    );
  }
  const out = parseJsonText(r.json, label) as {
    missing?: string[];
    hasFleet?: boolean;
    configurations?: Record<string, { deployment: unknown }>;
  };
  const entries = Object.entries(out.configurations ?? {});
  if (out.missing !== undefined || entries.length === 0) {
    const outputs = (out.missing ?? []).slice(0, 20).join(", ");
    throw new InputError(
      "no-configurations",
      `${label}: the flake has no NixOS configurations (looked for the output nixosConfigurations${out.missing === undefined ? ", which is empty" : `; its outputs: ${outputs || "none"}`})`,
      {
        hint: "add nixosConfigurations.NAME = nixpkgs.lib.nixosSystem { … } to the flake's outputs, one per host, then run nixship init again",
      },
    );
  }
  return {
    flake,
    hasFleet: out.hasFleet === true,
    configurations: entries.map(([name, { deployment }]) => ({
      name,
      deployment: isJsonObject(deployment) ? (deployment as JsonObject) : null,
    })),
  };
}
