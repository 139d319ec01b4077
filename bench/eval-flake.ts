// The evaluation benchmark's inputs: a flake of many distinct example systems (examples/system.nix,
// no nixpkgs), fleet files naming the first N of them, and the expression `nixship build` hands
// `nix eval` for any slice of them (nixship's own, from cache/local-nix.ts).
import { cp, realpath, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { evaluationExpression } from "../src/cache/nix-evaluate.js";

const EXAMPLES = fileURLToPath(new URL("../../examples", import.meta.url));

/** Read by the flake (under `--impure`), so every run's derivations are new to the store. */
export const SALT_VARIABLE = "NIXSHIP_BENCH_SALT";

/** The name every store path of host `i` ends with in a run salted `salt`. */
export function saltedSuffix(salt: string): RegExp {
  return new RegExp(`-${salt}(\\.drv)?$`);
}

/**
 * Writes a flake whose packages.x86_64-linux.host-I (I = 1..maxHosts) are distinct systems:
 * each its own toplevel, etc and `packages` packages of its own (5 derivations with 3), over
 * the shared service code and kernel. The salt makes every run's derivations new, as a
 * changed fleet's are, so each evaluation writes its .drv files and each build builds.
 * `weight` > 0 gives each system a configuration of that many options, made, serialised and
 * hashed into its version: evaluation work of a module system's kind (nixpkgs is not to be had
 * here), so that a system can cost what a real one does to evaluate.
 */
export async function writeEvalFlake(
  dir: string,
  maxHosts: number,
  packages: number,
  weight: number,
) {
  await cp(join(EXAMPLES, "system.nix"), join(dir, "system.nix"));
  await cp(join(EXAMPLES, "web"), join(dir, "web"), { recursive: true });
  const pnames = Array.from({ length: packages }, (_, k) => `tool-${k + 1}`);
  await writeFile(
    join(dir, "flake.nix"),
    `{
  description = "nixship bench:eval: ${maxHosts} distinct example systems";
  outputs = { self }:
    let
      system = "x86_64-linux";
      mkSystem = import ./system.nix;
      salt = builtins.getEnv "${SALT_VARIABLE}";
      weight = ${weight};
      host = i: let
        n = toString i;
        options = builtins.listToAttrs (builtins.genList (k: {
          name = "option-\${toString k}";
          value = { enable = k - (k / 2) * 2 == 0; port = i * 100000 + k; tags = [ "t\${toString (k - (k / 7) * 7)}" n ]; };
        }) weight);
        digest = builtins.substring 0 8 (builtins.hashString "sha256" (builtins.toJSON options));
      in {
        name = "host-\${n}";
        value = mkSystem {
          inherit system;
          name = "host-\${n}-\${salt}";
          version = if weight == 0 then n else "\${n}-\${digest}";
          packages = { ${pnames.map((p) => `${p} = "h\${n}-\${salt}";`).join(" ")} };
        };
      };
    in { packages.\${system} = builtins.listToAttrs (builtins.genList (i: host (i + 1)) ${maxHosts}); };
}
`,
  );
}

/**
 * A fleet file of hosts host-1..host-N, each with its own system `.#host-I` and a dummy ssh
 * address (TEST-NET-2's for the first 250): `nixship build` never contacts a host.
 */
export async function writeEvalFleet(dir: string, hosts: number): Promise<string> {
  const file = join(dir, `nixship-${hosts}.json`);
  const entries = Array.from({ length: hosts }, (_, k) => [
    `host-${k + 1}`,
    { address: `198.51.${100 + Math.floor(k / 250)}.${(k % 250) + 1}`, system: `.#host-${k + 1}` },
  ]);
  await writeFile(file, `${JSON.stringify({ hosts: Object.fromEntries(entries) }, null, 2)}\n`);
  return file;
}

/** The flake reference nixship evaluates for the directory (not in git: `path:`, real path). */
export async function flakeRefOf(dir: string): Promise<string> {
  return `path:${await realpath(dir)}`;
}

/**
 * The expression `nixship build` evaluates for systems `.#NAME` of one flake: nixship's own
 * (cache/local-nix.ts, evaluationExpression), for any slice of them.
 */
export function evalExpression(flake: string, names: readonly string[]): string {
  return evaluationExpression(
    names.map((name) => ({ flake, attrPath: [name] })),
    "drvPath",
  );
}

/** `items` cut into `parts` contiguous slices of nearly equal size (none empty). */
export function slices<T>(items: readonly T[], parts: number): T[][] {
  const n = Math.max(1, Math.min(parts, items.length));
  return Array.from({ length: n }, (_, k) =>
    items.slice(Math.floor((k * items.length) / n), Math.floor(((k + 1) * items.length) / n)),
  );
}
