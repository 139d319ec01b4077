// Builds in another machine's store over ssh-ng:// (a build host): the derivations evaluated
// here are copied there, built there, and their closures copied back into the deployer's store,
// which pushes them as it pushes its own builds (the signing key never leaves the deployer),
// unless the build host pushes them itself (deploy/build-host-push.ts): then they stay there.
import { localNixVersion, NEW_CLI } from "./local-nix.js";
import {
  type BuildPlace,
  type BuiltDerivations,
  mainOutputs,
  type NixRunOptions,
  runNixLogged,
} from "./nix-build.js";
import { derivationOutputs } from "./nix-version.js";

/**
 * `nix copy --derivation --to HOST`, `nix build --store HOST`, then (unless `copyBack` is
 * false) `nix copy --from HOST` of the outputs (`--no-check-sigs`: the deployer asked for them, and signs them itself when it
 * pushes). Every failure there names the host (BuilderError).
 */
export async function buildOnHost(
  drvPaths: readonly string[],
  host: string,
  place: BuildPlace,
  options: NixRunOptions & { readonly copyBack?: boolean } = {},
): Promise<BuiltDerivations> {
  const version = await localNixVersion();
  const drvs = [...new Set(drvPaths)];
  const { signal } = options;
  const there = { store: host, ...(signal ? { signal } : {}) };
  await runNixLogged([...NEW_CLI, "copy", "--derivation", "--to", host, ...drvs], place, there);
  const built = await runNixLogged(
    [
      ...NEW_CLI,
      "build",
      "--no-link",
      "--json",
      "--store",
      host,
      ...drvs.map((drv) => derivationOutputs(drv, version)),
    ],
    place,
    { ...there, ...(options.onProgress ? { onProgress: options.onProgress } : {}) },
  );
  const byDrv = mainOutputs(built.stdout, version);
  if (options.copyBack === false) return { byDrv, builtOn: built.log.builtOn(), unusable: [] };
  await runNixLogged(
    [...NEW_CLI, "copy", "--no-check-sigs", "--from", host, ...new Set(byDrv.values())],
    place,
    there,
  );
  return { byDrv, builtOn: built.log.builtOn(), unusable: [] };
}
