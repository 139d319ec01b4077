// Builds in another machine's store over ssh-ng:// (a build host): the derivations evaluated
// here are copied there, built there, and their closures copied back into the deployer's store,
// which pushes them as it pushes its own builds (the signing key never leaves the deployer),
// unless the build host pushes them itself (deploy/build-host-push.ts): then they stay there.
import {
  checkClosureDefined,
  checkDeclaredOutputs,
  type DerivationClosure,
  derivationClosure,
} from "./derivation-closure.js";
import { localNixVersion, NEW_CLI, queryClosure } from "./local-nix.js";
import {
  type BuildPlace,
  type BuiltDerivations,
  mainOutputs,
  type NixRunOptions,
  runNixLogged,
} from "./nix-build.js";
import { derivationOutputs } from "./nix-version.js";

/**
 * Milliseconds a copy to or from the build host may go without a word from Nix (its progress
 * comes with every chunk moved): a daemon that hangs behind a live ssh is stopped then.
 */
const COPY_IDLE_MS = 10 * 60_000;

/** A build host's build, with what the derivations built there make (derivation-closure.ts). */
export interface BuiltOnHost extends BuiltDerivations {
  readonly made: DerivationClosure;
}

/**
 * `nix copy --derivation --to HOST`, `nix build --store HOST`, then (unless `copyBack` is
 * false) `nix copy --from HOST` of the outputs (`--no-check-sigs`: the deployer signs them
 * itself when it pushes). What the host answers is held to the derivations: each output must
 * be one its derivation declares, and each path of the closures one the derivations make,
 * checked in the host's records before the copy and in this store after it. Every failure
 * there names the host (BuilderError).
 */
export async function buildOnHost(
  drvPaths: readonly string[],
  host: string,
  place: BuildPlace,
  options: NixRunOptions & { readonly copyBack?: boolean; readonly copyIdleMs?: number } = {},
): Promise<BuiltOnHost> {
  const version = await localNixVersion();
  const drvs = [...new Set(drvPaths)];
  const { signal } = options;
  const there = { store: host, ...(signal ? { signal } : {}) };
  // A copy that moves nothing for COPY_IDLE_MS is stopped; a build may be silent for longer.
  const copying = { ...there, idleMs: options.copyIdleMs ?? COPY_IDLE_MS };
  await runNixLogged([...NEW_CLI, "copy", "--derivation", "--to", host, ...drvs], place, copying);
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
  const made = await derivationClosure(drvs, signal ? { signal } : {});
  checkDeclaredOutputs(byDrv, made, host);
  const result = { byDrv, builtOn: built.log.builtOn(), unusable: [], made };
  // Left there, the host's push is checked against `made` (deploy/build-host-push.ts).
  if (options.copyBack === false) return result;
  const outputs = [...new Set(byDrv.values())];
  const hostStore = {
    store: host,
    ...(place.sshOpts === undefined ? {} : { sshOpts: place.sshOpts }),
  };
  checkClosureDefined(await queryClosure(outputs, hostStore), made, host);
  await runNixLogged(
    [...NEW_CLI, "copy", "--no-check-sigs", "--from", host, ...outputs],
    place,
    copying,
  );
  // What came is what the host sends, not what it recorded a moment before.
  checkClosureDefined(await queryClosure(outputs), made, host, true);
  return result;
}
