// Building derivations with the local Nix, on the deployer or on its builders: one `nix build`,
// its structured log read for progress and for what other machines did.
import { OperationError } from "../errors.js";
import { parseStorePath, type StorePath } from "../nix/store-path.js";
import { eitherSignal, startIdleDeadline } from "../util/deadline.js";
import { mapLimit } from "../util/pool.js";
import { runStreamed } from "../util/streamed-run.js";
import { type BuilderFailure, NixBuildLog } from "./build-log.js";
import { builderError } from "./builder-error.js";
import {
  localNixVersion,
  NEW_CLI,
  NIX_ERRORS,
  NIX_MISSING_HINT,
  type NixOptions,
  nixCommand,
  storeArgs,
  validPaths,
} from "./local-nix.js";
import { type BuildProgress, NixActivity } from "./nix-activity.js";
import { nixSettingFix } from "./nix-settings.js";
import { derivationOutputs, type NixVersion } from "./nix-version.js";

/** The lines of what Nix said last that a failure's message carries. */
const TAIL_LINES = 16;

/** Where builds run beyond the deployer's own Nix (deploy/build-place.ts makes it). */
export interface BuildPlace {
  /** Nix's builders in its own syntax (`--builders`), with builders-use-substitutes. */
  readonly builders?: string;
  /** `--max-jobs` on the deployer: 0 builds nothing here. */
  readonly maxJobs?: number;
  /** NIX_SSHOPTS for every ssh Nix starts (to the builders, to a build host). */
  readonly sshOpts?: string;
}

/** Each derivation's main output, and what other machines did for the build. */
export interface BuiltDerivations {
  readonly byDrv: ReadonlyMap<string, StorePath>;
  /** The builders that built derivations, each with how many. */
  readonly builtOn: readonly { readonly builder: string; readonly derivations: number }[];
  /** Builders Nix could not use, although the build succeeded without them. */
  readonly unusable: readonly BuilderFailure[];
}

/** The environment of a Nix that may start ssh: NIX_SSHOPTS when the place names options. */
export function placeEnv(place: BuildPlace): NodeJS.ProcessEnv | undefined {
  return place.sshOpts === undefined ? undefined : { ...process.env, NIX_SSHOPTS: place.sshOpts };
}

/** What a build is told beyond its arguments. */
export interface NixRunOptions {
  /** Called as derivations start and end building (nix-activity.ts). */
  readonly onProgress?: (progress: BuildProgress) => void;
  /**
   * Stops Nix (TERM, then KILL): an interrupted command, where a Ctrl-C reaches only nixship
   * (a SIGTERM to its process, as CI and supervisors send) and Nix would build on.
   */
  readonly signal?: AbortSignal;
}

/**
 * Runs a Nix command, reading what its stderr says of other machines (build-log.ts); a failure
 * there becomes a BuilderError naming the builder, any other a `nix-failed` with Nix's last
 * words. `store`: the other machine whose store the command builds in, if any. `idleMs`: the
 * command is stopped once its structured log (a copy's progress comes with every chunk it
 * moves) has been silent that long, as a Nix whose daemon hangs behind a live ssh would be.
 */
export async function runNixLogged(
  args: readonly string[],
  place: BuildPlace,
  options: NixRunOptions & { readonly store?: string; readonly idleMs?: number } = {},
): Promise<{ stdout: string; log: NixBuildLog }> {
  await localNixVersion();
  const { store, onProgress, signal, idleMs } = options;
  const log = new NixBuildLog(store);
  const activity = new NixActivity((line) => log.add(line), onProgress);
  const env = placeEnv(place);
  const idle = idleMs === undefined ? undefined : startIdleDeadline(idleMs);
  const stop = idle === undefined ? signal : eitherSignal(idle, signal);
  // Nix's structured log (nix-activity.ts): its builds as progress, its words as plain lines.
  const r = await runStreamed("nix", ["--log-format", "internal-json", ...args], {
    onStderrLine: (line) => {
      idle?.touch();
      activity.add(line);
    },
    ...(env ? { env } : {}),
    ...(stop ? { signal: stop } : {}),
  }).finally(() => idle?.clear());
  log.end();
  if (r.error !== undefined) {
    throw new OperationError(NIX_ERRORS.missing, `cannot run 'nix': ${r.error.message}`, {
      hint: NIX_MISSING_HINT,
    });
  }
  if (r.code === 0) return { stdout: r.stdout, log };
  const shown = `'nix ${args.filter((a) => !a.startsWith("/nix/store/")).join(" ")}'`;
  if (signal?.aborted)
    throw new OperationError(NIX_ERRORS.failed, `${shown} was stopped: interrupted`);
  if (idle?.signal.aborted) {
    const where = store === undefined ? "" : ` (${store})`;
    throw new OperationError(
      NIX_ERRORS.failed,
      `${shown} said nothing for ${(idleMs ?? 0) / 1000} s, and was stopped${where}`,
      {
        hint: `a copy moves and reports bytes all along: check ${store ?? "the other machine"} (its nix-daemon, its disk, the link to it)`,
      },
    );
  }
  const failed = [...log.failures].sort(
    (a, b) => Number(b.kind === "build-failed") - Number(a.kind === "build-failed"),
  );
  const onBuilder = builderError(failed);
  if (onBuilder !== undefined) throw onBuilder;
  const last = activity.tail(TAIL_LINES).join("\n");
  // The settings of the Nix that failed: a build host's own when the build ran there.
  const fix = nixSettingFix(`${last}\n${r.stderr}`, store);
  throw new OperationError(
    NIX_ERRORS.failed,
    `${shown} exited with ${r.code ?? r.killedBy}${last ? `:\n${last}` : ""}`,
    fix === undefined ? {} : { hint: fix },
  );
}

/**
 * A build that failed, with the derivations asked for that did not build (each an output
 * missing: it failed, or something it needs did). The build kept going past the first
 * failure, so those that could be built were.
 */
export class DerivationsFailedError extends OperationError {
  constructor(
    readonly failed: readonly string[],
    cause: OperationError,
  ) {
    super(cause.code, cause.message, {
      ...(cause.hint === undefined ? {} : { hint: cause.hint }),
      cause,
    });
  }
}

/**
 * Builds derivations in ONE `nix build`, on the deployer or on the place's builders (Nix routes
 * each by system and features), keeping going past a failure (every system that can be built
 * is, and a failure names every one that cannot: DerivationsFailedError). Returns each
 * derivation's main output.
 */
export async function buildDerivations(
  drvPaths: readonly string[],
  options: NixOptions = {},
  place: BuildPlace = {},
  run: NixRunOptions = {},
): Promise<BuiltDerivations> {
  const version = await localNixVersion();
  const drvs = [...new Set(drvPaths)];
  const { stdout, log } = await runNixLogged(
    [
      ...NEW_CLI,
      "build",
      "--no-link",
      "--json",
      "--keep-going",
      ...storeArgs(options),
      ...(place.builders === undefined
        ? []
        : ["--builders", place.builders, "--option", "builders-use-substitutes", "true"]),
      ...(place.maxJobs === undefined ? [] : ["--max-jobs", String(place.maxJobs)]),
      ...drvs.map((drv) => derivationOutputs(drv, version)),
    ],
    place,
    run,
  ).catch(async (err: unknown) => {
    if (!(err instanceof OperationError) || err.code !== NIX_ERRORS.failed || run.signal?.aborted)
      throw err;
    throw new DerivationsFailedError(await unbuilt(drvs, options), err);
  });
  return {
    byDrv: mainOutputs(stdout, version),
    builtOn: log.builtOn(),
    unusable: log.failures,
  };
}

/** The derivations of `drvs` some output of which the store lacks (none when it cannot say). */
async function unbuilt(drvs: readonly string[], options: NixOptions): Promise<string[]> {
  try {
    const outputs = await mapLimit(drvs, 8, async (drv) => {
      const { stdout } = await nixCommand(
        "nix-store",
        [...storeArgs(options), "--query", "--outputs", drv],
        { timeoutMs: 60_000 },
      );
      return stdout.split("\n").filter(Boolean) as StorePath[];
    });
    const valid = await validPaths(outputs.flat(), options);
    return drvs.filter((_, i) => (outputs[i] ?? []).some((o) => !valid.has(o)));
  } catch {
    // The build's own error says what Nix said; which systems it spared is a bonus.
    return [];
  }
}

/** Each derivation's main output (`out`, else its first) from `nix build --json`. */
export function mainOutputs(stdout: string, version: NixVersion): Map<string, StorePath> {
  return new Map(
    parseBuiltDerivations(stdout, version).map((b) => [
      b.drvPath,
      parseStorePath(b.outputs.out ?? (Object.values(b.outputs)[0] as string)).path,
    ]),
  );
}

/** One entry of `nix build --json` for a derivation: its path and its outputs' paths. */
interface BuiltDerivation {
  readonly drvPath: string;
  readonly outputs: Readonly<Record<string, string>>;
}

/**
 * Reads `nix build --json` of derivations. An entry without outputs is what a Nix that took a
 * bare `.drv` as the file itself prints: said so, naming the Nix, rather than failing later.
 */
export function parseBuiltDerivations(stdout: string, version: NixVersion): BuiltDerivation[] {
  const data: unknown = JSON.parse(stdout);
  const entries = Array.isArray(data) ? data : [];
  return entries.map((entry: unknown) => {
    const e = (entry ?? {}) as { drvPath?: unknown; outputs?: unknown };
    const outputs = e.outputs as Record<string, unknown> | undefined;
    if (
      typeof e.drvPath !== "string" ||
      outputs === undefined ||
      typeof outputs !== "object" ||
      Object.keys(outputs).length === 0 ||
      !Object.values(outputs).every((o) => typeof o === "string")
    ) {
      throw new OperationError(
        "nix-build-output",
        `${version.text} answered 'nix build --json' with an entry that names no built outputs: ${JSON.stringify(entry).slice(0, 200)}`,
        {
          hint: "this Nix's command line differs from the ones nixship is tested with: report it with the line above",
        },
      );
    }
    return { drvPath: e.drvPath, outputs: outputs as Record<string, string> };
  });
}
