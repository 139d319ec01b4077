// A flake that holds a fleet, for the tests of fleets written in Nix: its outputs see the
// example systems (`examples.web-v1`), the stand-in for nixpkgs' nixosSystem
// (nixos-system.nix), nixship's `fleetLib` (packaging/nix/lib.nix) and the `deployment`
// module (packaging/nixos/nixship-deployment.nix), each by its path in this checkout, as the
// evaluations are impure (the flake has no inputs to lock, so nothing is written beside it).
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { EXAMPLES_DIR } from "./example-systems.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** Writes DIR/flake.nix whose outputs are `outputs` (Nix attributes, `self` in scope). */
export async function writeFleetFlake(dir: string, outputs: string): Promise<void> {
  await writeFile(
    join(dir, "flake.nix"),
    `{
  outputs = { self }:
    let
      examples = (builtins.getFlake "path:${EXAMPLES_DIR}").packages.\${builtins.currentSystem};
      nixosSystem = import ${join(ROOT, "test/support/nixos-system.nix")};
      fleetLib = import ${join(ROOT, "packaging/nix/lib.nix")};
      deployment = ${join(ROOT, "packaging/nixos/nixship-deployment.nix")};
    in {
${outputs}
    };
}
`,
  );
}
