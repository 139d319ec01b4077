// What the derivations a deploy evaluated can put in a closure: their outputs, those of every
// derivation they need, and the sources they read, as the deployer's own .drv files declare
// them (`nix-store --query`). A build host is trusted with what these paths hold (it builds
// them, or substitutes them), never with which paths there are: a closure it reports with a
// path outside this set, or an output the derivation does not declare, was not built from the
// deployer's derivations, and nothing of it is signed or imported.
import { OperationError } from "../errors.js";
import { isStorePath, type StorePath } from "../nix/store-path.js";
import { mapLimit } from "../util/pool.js";
import { type NixOptions, nixCommand, STORE_QUERY_TIMEOUT_MS, storeArgs } from "./local-nix.js";

/** Derivations named in one `nix-store --query --outputs` (well inside the argument limit). */
const CHUNK = 500;

export interface DerivationClosure {
  /** Every output and source of the derivations and of all they need. */
  readonly paths: ReadonlySet<StorePath>;
  /** The outputs each given derivation declares. */
  readonly outputsOf: ReadonlyMap<string, ReadonlySet<StorePath>>;
}

/** Reads the closure of `drvs` in the deployer's store (where they were evaluated). */
export async function derivationClosure(
  drvs: readonly string[],
  options: NixOptions & { readonly signal?: AbortSignal } = {},
): Promise<DerivationClosure> {
  const query = async (args: readonly string[]): Promise<StorePath[]> => {
    const { stdout } = await nixCommand("nix-store", [...storeArgs(options), "--query", ...args], {
      purpose: "read the derivations' closure in the local Nix store",
      timeoutMs: STORE_QUERY_TIMEOUT_MS,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    return stdout.split("\n").filter(isStorePath);
  };
  const requisites = await query(["--requisites", ...drvs]);
  const derivations = requisites.filter((p) => p.endsWith(".drv"));
  const chunks: string[][] = [];
  for (let i = 0; i < derivations.length; i += CHUNK) {
    chunks.push(derivations.slice(i, i + CHUNK));
  }
  const outputs = await mapLimit(chunks, 2, (chunk) => query(["--outputs", ...chunk]));
  const own = await mapLimit(drvs, 8, (drv) => query(["--outputs", drv]));
  return {
    paths: new Set([...requisites, ...outputs.flat()]),
    outputsOf: new Map(drvs.map((drv, i) => [drv, new Set(own[i])])),
  };
}

/**
 * Refuses outputs a build host answered that their derivations do not declare (it named
 * another path, an older system of its store say, as what it built).
 */
export function checkDeclaredOutputs(
  byDrv: ReadonlyMap<string, StorePath>,
  closure: DerivationClosure,
  host: string,
): void {
  for (const [drv, out] of byDrv) {
    const declared = closure.outputsOf.get(drv);
    if (declared?.has(out)) continue;
    throw new OperationError(
      "build-host-refused",
      `refused what ${host} built: it answered ${out} for ${drv}, which declares ${declared && declared.size > 0 ? [...declared].join(", ") : "no such output"}; nothing of it was signed or copied`,
      { hint: hostHint(host) },
    );
  }
}

/**
 * Refuses a closure (as a build host's Nix records it, or as it came back) holding paths the
 * derivations do not make: the first named, with how many others.
 */
export function checkClosureDefined(
  paths: readonly { readonly path: StorePath }[],
  closure: DerivationClosure,
  host: string,
  landed = false,
): void {
  const foreign = paths.filter((p) => !closure.paths.has(p.path));
  const first = foreign[0];
  if (first === undefined) return;
  const others = foreign.length > 1 ? ` (and ${foreign.length - 1} other paths)` : "";
  throw new OperationError(
    "build-host-refused",
    `refused what ${host} built: its closure holds ${first.path}${others}, which no derivation this deploy evaluated makes or reads; ${landed ? "it came back into this machine's store, where nothing references it now" : "nothing of it was signed or copied"}`,
    {
      hint: landed
        ? `nix-store --delete ${first.path} removes it here; ${hostHint(host)}`
        : hostHint(host),
    },
  );
}

function hostHint(host: string): string {
  return `${host}'s store holds paths this machine's derivations do not make: check it (its Nix, and who can write its store); without a build host (the fleet's build.host, --build-host) the deploy builds here`;
}
