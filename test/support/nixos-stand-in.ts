// What the NixOS module tests share without nixpkgs: the stand-ins for nixpkgs' `lib.mkOption`
// and `lib.mkIf` (they record what a module declares), and a strict JSON evaluation by the
// real Nix that fails with Nix's own words.
import { run } from "../../support/cli.js";
import { TEST_NIX_CONFIG } from "../../support/nix-config.js";

/** Nix text: `mkOption` and `mkIf` as attributes of a stand-in `lib`. */
export const LIB_OPTIONS = `
    mkOption =
      { default ? null, defaultText ? null, example ? null, description ? null,
        relatedPackages ? null, type ? null, apply ? null, internal ? null,
        visible ? null, readOnly ? null }@attrs:
      attrs // { _type = "option"; };
    mkIf = condition: content: { _type = "if"; inherit condition content; };`;

/** `nix-instantiate --eval --strict --json` of `expr`, parsed; a failure throws Nix's stderr. */
export async function evalNixJson<T>(expr: string): Promise<T> {
  const r = await run("nix-instantiate", ["--eval", "--strict", "--json", "--expr", expr], {
    env: { NIX_CONFIG: TEST_NIX_CONFIG },
  });
  if (r.code !== 0) throw new Error(`nix-instantiate --eval failed:\n${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}
