// Systems given by store path for some hosts, in place of what the fleet names: `deploy
// --system HOST=PATH` (Terraform's deploy module passes the paths it holds, so that restoring
// an earlier var file deploys the earlier systems), and the systems a rollback sends hosts back
// to. Paths the local store lacks are fetched from the fleet's cache, their signatures checked.
import { fetchAndImport } from "../cache/fetch.js";
import { narInfoKey } from "../cache/layout.js";
import { validPaths } from "../cache/local-nix.js";
import { InputError, OperationError, UsageError } from "../errors.js";
import { closestFirst, listForHint } from "../fleet/closest.js";
import type { Fleet } from "../fleet/fleet.js";
import { parsePublicKey } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import { openStore } from "../store/url.js";
import type { FleetInput } from "./fleet-input.js";
import { storePathArgument } from "./store-path-argument.js";

/** `--system HOST=PATH` flags, each a host of the fleet and a store path, each host once. */
export function parseSystemFlags(
  flags: readonly string[] | undefined,
  fleet: Fleet,
  command: string,
): Map<string, StorePath> {
  const given = new Map<string, StorePath>();
  const names = fleet.hosts.map((h) => h.name);
  for (const flag of flags ?? []) {
    const at = flag.indexOf("=");
    const host = flag.slice(0, at);
    if (at <= 0) {
      throw new UsageError(
        `${command}: --system '${flag}' is not HOST=/nix/store/…`,
        "give a host of the fleet and the store path of its system, e.g. --system web1=/nix/store/…-nixos-system-web1",
      );
    }
    if (!names.includes(host)) {
      const close = closestFirst(host, names);
      throw new UsageError(
        `${command}: --system names '${host}', which is no host of the fleet`,
        close.length > 0 ? `the fleet has ${listForHint(close)}` : "the fleet has no hosts",
      );
    }
    if (given.has(host)) {
      throw new UsageError(`${command}: --system gives host '${host}' twice`);
    }
    let path: StorePath;
    try {
      path = storePathArgument(flag.slice(at + 1), `--system ${host}`);
    } catch (err) {
      throw new UsageError(`${command}: ${(err as Error).message}`);
    }
    given.set(host, path);
  }
  return given;
}

/** The fleet with each host of `systems` given its store path for its system. */
export function withGivenSystems(fleet: Fleet, systems: ReadonlyMap<string, StorePath>): Fleet {
  if (systems.size === 0) return fleet;
  return {
    ...fleet,
    hosts: fleet.hosts.map((h) => {
      const path = systems.get(h.name);
      return path === undefined ? h : { ...h, system: { kind: "store-path", path } };
    }),
  };
}

/** Where a system given by store path must be, when it cannot be had. */
const GIVEN_SYSTEM_HINT =
  "a system given by store path must be in this machine's store, or in the fleet's cache signed by its key (nixship push)";

/**
 * Systems the local store lacks are fetched from the fleet's cache, verified. `whose` names
 * what asked for a path, for the error when it cannot be had; `absentHint`, what to do when
 * the cache does not hold the path at all (collected, or never pushed). Any other refusal
 * (unsigned, a reference missing) keeps the fetch's own hint.
 */
export async function importMissingSystems(
  fleet: Fleet,
  paths: readonly StorePath[],
  whose: (path: StorePath) => string = (path) => path,
  absentHint: (path: StorePath) => string = () => GIVEN_SYSTEM_HINT,
): Promise<void> {
  const valid = await validPaths(paths);
  const missing = paths.filter((p) => !valid.has(p));
  if (missing.length === 0 || fleet.cache === undefined) return;
  const store = await openStore(fleet.cache.url);
  try {
    const trusted = fleet.cache.publicKeys.map((k) => parsePublicKey(k));
    for (const path of missing) {
      await fetchAndImport({ store, trusted }, path).catch(async (err: unknown) => {
        if (!(err instanceof OperationError || err instanceof InputError)) throw err;
        const absent = (await store.head(narInfoKey(path)).catch(() => null)) === undefined;
        const hint = absent ? absentHint(path) : (err.hint ?? GIVEN_SYSTEM_HINT);
        throw new OperationError(
          err.code,
          `${whose(path)}: this machine's store lacks ${path}, and the fleet's cache ${absent ? "does not hold it either" : "cannot give it"}: ${err.message}`,
          { hint },
        );
      });
    }
  } finally {
    await store.close();
  }
}

/** The help of `--system`, for the commands that take it. */
export const SYSTEM_FLAG_HELP = `  --system HOST=PATH     the store path HOST's system is, in place of what the fleet names
                         (repeatable; fetched from the fleet's cache, its signature checked,
                         where this machine's store lacks it): Terraform's deploy module
                         passes the store paths it holds this way`;

/**
 * The fleet read, with the systems `--system` gives (each path this machine's store lacks
 * fetched from the fleet's cache first).
 */
export async function withSystemFlags(
  input: FleetInput,
  flags: readonly string[] | undefined,
  command: string,
): Promise<FleetInput> {
  const given = parseSystemFlags(flags, input.fleet, command);
  if (given.size === 0) return input;
  await importMissingSystems(input.fleet, [...new Set(given.values())], (path) => {
    const hosts = [...given].flatMap(([host, p]) => (p === path ? [host] : []));
    return `${command}: --system ${hosts.join(", ")}`;
  });
  return { ...input, fleet: withGivenSystems(input.fleet, given) };
}
