// The starting fleet `nixship init` writes from a flake's NixOS configurations: the one Nix
// expression that lists them (names, and each one's `nixship.deployment` when it imports the
// module), and the fleet as a fleet file or as a Nix file for the flake. Pure: the command runs
// the evaluation and writes the files.

import { nixString } from "../nix/nix-string.js";
import { NIX_MARK_FUNCTION } from "./flake-fleet.js";
import { ADDRESS_PLACEHOLDER } from "./fleet.js";
import type { JsonObject } from "./fleet-json.js";
import { nixName } from "./nix-text.js";

/** A configuration as init sees it: its name, and its `config.nixship.deployment`, if any. */
export interface ConfigurationInfo {
  readonly name: string;
  /** The module's options (nulls left out); null: the configuration does not import it. */
  readonly deployment: JsonObject | null;
}

/** The deployment options a fleet file's host takes as they are (policy goes to `policies`). */
const HOST_KEYS = [
  "tags",
  "address",
  "sshHost",
  "sshUser",
  "delivery",
  "sudo",
  "hostKey",
  "instanceId",
  "targets",
] as const;

/**
 * One `nix eval --json`: `{ configurations = { NAME = { deployment = … or null; }; }; hasFleet; }`,
 * or `{ missing = [outputs]; }` when the flake has no nixosConfigurations. Nothing is built:
 * only each configuration's `config.nixship` is looked at, asked with `?` as
 * lib.fleetFromConfigurations asks, so a configuration without the module costs nothing more.
 */
export function configurationsExpression(flake: string, fleetOutput: string): string {
  const str = nixString;
  return `let
  mark = ${NIX_MARK_FUNCTION};
  flake = builtins.getFlake ${str(flake)};
  outputs = flake.outputs;
  clean = v: if builtins.isAttrs v && (v.type or null) != "derivation"
    then builtins.mapAttrs (_: clean) (builtins.removeAttrs v (builtins.filter (n: v.\${n} == null) (builtins.attrNames v)))
    else if builtins.isList v then map clean v else v;
  # Each option evaluated whole under a mark naming the configuration and option, so that an
  # error in a configuration names where it is.
  at = name: path: mark ([ "nixosConfigurations" name "config" "nixship" "deployment" ] ++ path);
  deploymentOf = name: c: let n = at name [ ] (c.config.nixship or { }); in
    if builtins.isAttrs n && n ? deployment
    then builtins.mapAttrs (key: v: at name [ key ] (builtins.deepSeq v v)) (clean (at name [ ] n.deployment))
    else null;
in
  if !(outputs ? nixosConfigurations) then { missing = builtins.attrNames outputs; }
  else {
    hasFleet = outputs ? ${str(fleetOutput)};
    configurations = builtins.mapAttrs (name: c: { deployment = deploymentOf name c; }) outputs.nixosConfigurations;
  }`;
}

/** What the fleet needs besides the configurations. */
export interface InitSettings {
  readonly cacheUrl: string;
  readonly publicKey: string;
}

/** The module's `mode`, else its former name `delivery`: the fleet file's `delivery`. */
function deliveryOf(deployment: JsonObject): unknown {
  return deployment.mode ?? deployment.delivery ?? "ssh";
}

/** A host init could not give an address: the user must fill one in. */
function needsAddress(deployment: JsonObject | null): boolean {
  if (deployment === null) return true;
  const delivery = deliveryOf(deployment);
  return delivery === "ssh" && deployment.address === undefined && deployment.sshHost === undefined;
}

/** The hosts whose address is the placeholder (or, with the module, is missing). */
export function hostsToFill(configurations: readonly ConfigurationInfo[]): string[] {
  return configurations.filter((c) => needsAddress(c.deployment)).map((c) => c.name);
}

/** The fleet file (`nixship.json`): each configuration a host built by its flake attribute. */
export function initFleetJson(
  configurations: readonly ConfigurationInfo[],
  settings: InitSettings,
): JsonObject {
  const hosts: JsonObject = {};
  const policies: JsonObject = {};
  for (const { name, deployment } of configurations) {
    const host: JsonObject = {};
    for (const key of HOST_KEYS) {
      const value =
        key === "delivery" && deployment !== null ? deliveryOf(deployment) : deployment?.[key];
      // The module's defaults (no tags, ssh) are left out, as a fleet file leaves them.
      const isDefault =
        (key === "tags" && Array.isArray(value) && value.length === 0) ||
        (key === "delivery" && value === "ssh");
      if (value === undefined || isDefault) continue;
      host[key] = value;
    }
    if (needsAddress(deployment)) host.address = ADDRESS_PLACEHOLDER;
    host.system = `.#nixosConfigurations.${nixName(name)}.config.system.build.toplevel`;
    hosts[name] = host;
    const policy = deployment?.policy;
    if (policy !== undefined && Object.keys(policy as object).length > 0) policies[name] = policy;
  }
  return {
    cache: { url: settings.cacheUrl, publicKeys: [settings.publicKey] },
    ...(Object.keys(policies).length > 0 ? { policies } : {}),
    hosts,
  };
}

/**
 * The fleet as a Nix file for the flake (`nixship.nix`), a function of `self` (and of
 * nixship's lib when a configuration imports the module): lib.fleetFromConfigurations makes the
 * hosts of those that do, and the others are hosts written out, with the placeholder address.
 * The configurations `leftOut` (named as no host can be) are taken out of what it is given.
 */
export function initFleetNix(
  configurations: readonly ConfigurationInfo[],
  settings: InitSettings,
  leftOut: readonly string[] = [],
): string {
  const str = nixString;
  const withModule = configurations.filter((c) => c.deployment !== null);
  const without = configurations.filter((c) => c.deployment === null);
  const toFill = withModule.filter((c) => needsAddress(c.deployment)).map((c) => c.name);
  const lines = [
    "# The fleet nixship deploys (docs/fleet.md), written by 'nixship init'. It is the flake's",
    "# `nixship` output: add to the flake's outputs the line 'nixship init' printed.",
  ];
  if (without.length > 0) {
    lines.push(
      "# Fill in each host's address where it says FILL IN: nixship refuses the fleet until then.",
    );
  }
  if (toFill.length > 0) {
    lines.push(
      `# Set nixship.deployment.address (or sshHost) in the configurations of: ${toFill.join(", ")}.`,
    );
  }
  const hosts = without.map(
    ({ name }) =>
      `    ${nixName(name)} = { system = self.nixosConfigurations.${nixName(name)}; address = ${str(ADDRESS_PLACEHOLDER)}; };`,
  );
  const body = [
    `  cache = { url = ${str(settings.cacheUrl)}; publicKeys = [ ${str(settings.publicKey)} ]; };`,
    ...(hosts.length > 0 ? ["  hosts = {", ...hosts, "  };"] : ["  hosts = { };"]),
  ];
  if (withModule.length === 0) {
    return `${[...lines, "{ self, ... }:", "{", ...body, "}"].join("\n")}\n`;
  }
  return `${[
    ...lines,
    "{ self, nixshipLib, ... }:",
    "nixshipLib.fleetFromConfigurations {",
    leftOut.length === 0
      ? "  configurations = self.nixosConfigurations;"
      : `  configurations = builtins.removeAttrs self.nixosConfigurations [ ${leftOut.map(str).join(" ")} ];`,
    ...body,
    "}",
  ].join("\n")}\n`;
}

/** The line the flake's outputs need for the fleet in `file` (`./nixship.nix`). */
export function fleetOutputLine(
  configurations: readonly ConfigurationInfo[],
  output: string,
  file: string,
): string {
  const lib = configurations.some((c) => c.deployment !== null) ? " nixshipLib = nixship.lib;" : "";
  return `${nixName(output)} = import ${file} { inherit self;${lib} };`;
}
