// `nixship build`: the systems of the selected hosts, evaluated once and built once on the
// deployer. Hosts with the same system share one result.
import { isAbsolute, resolve } from "node:path";
import { buildOnHost } from "../cache/build-host.js";
import type { BuilderFailure } from "../cache/build-log.js";
import type { DerivationClosure } from "../cache/derivation-closure.js";
import { type NixOptions, resolveInstallables, validPaths } from "../cache/local-nix.js";
import {
  type BuiltDerivations,
  buildDerivations,
  DerivationsFailedError,
  type NixRunOptions,
} from "../cache/nix-build.js";
import {
  evaluateDerivations,
  evaluateSystemTypes,
  type FlakeOutput,
  MissingOutputsError,
  SystemEvalError,
} from "../cache/nix-evaluate.js";
import { InputError, OperationError } from "../errors.js";
import { closestFirst, listForHint } from "../fleet/closest.js";
import type { FleetHost } from "../fleet/fleet.js";
import { FLAKE_INSTALLABLE_PATTERN, formatSystemSpec } from "../fleet/fleet.js";
import type { StorePath } from "../nix/store-path.js";
import { sourceReference } from "../util/source-reference.js";
import { buildHostSystemFiles } from "./build-host-files.js";
import type { ResolvedBuildPlace } from "./build-place.js";
import type { BuiltSystem } from "./events.js";
import { type FlakeNamer, localFlakeRef } from "./flake-source.js";
import type { SystemFiles } from "./system-files.js";

export interface BuildResult {
  readonly systems: readonly BuiltSystem[];
  /** Each host's desired system. */
  readonly byHost: ReadonlyMap<string, StorePath>;
  /** The other machines that built derivations (builders, or the build host), with how many. */
  readonly builtOn: readonly { readonly builder: string; readonly derivations: number }[];
  /** Builders Nix could not use, although the build succeeded without them. */
  readonly unusable: readonly BuilderFailure[];
  /** The build host whose store built the systems. */
  readonly host: string | undefined;
  /** Systems whose closures were left in the build host's store (it pushes them itself). */
  readonly leftOnHost: LeftOnHost | undefined;
}

/** Where systems left on the build host are: its store, and their files read over ssh. */
export interface LeftOnHost {
  readonly paths: ReadonlySet<StorePath>;
  /** What the derivations built there make: all its push may hold (derivation-closure.ts). */
  readonly made: DerivationClosure;
  readonly nix: NixOptions;
  readonly files: SystemFiles;
}

/**
 * Evaluates the outputs here (one evaluation), then builds them in one build: here and on the
 * fleet's builders, or in the build host's store (then copied back). Each output's path.
 */
async function evaluateAndBuild(
  outputs: readonly FlakeOutput[],
  nix: NixOptions,
  where: ResolvedBuildPlace | undefined,
  copyBack: boolean,
  run: NixRunOptions,
): Promise<{ paths: StorePath[]; built: BuiltDerivations & { made?: DerivationClosure } }> {
  const drvs = await evaluateDerivations(outputs, nix, run.signal);
  if (drvs.length === 0) {
    return { paths: [], built: { byDrv: new Map(), builtOn: [], unusable: [] } };
  }
  const built: BuiltDerivations & { made?: DerivationClosure } =
    where?.host !== undefined
      ? await buildOnHost(drvs, where.host, where.place, { ...run, copyBack })
      : await buildDerivations(drvs, nix, where?.place ?? {}, run).catch((err: unknown) => {
          if (!(err instanceof DerivationsFailedError) || err.failed.length === 0) throw err;
          const failed = drvs.flatMap((drv, i) => (err.failed.includes(drv) ? [i] : []));
          throw new SystemsBuildError(failed, err);
        });
  const paths = drvs.map((drv, i) => {
    const out = built.byDrv.get(drv);
    if (out === undefined) {
      const o = outputs[i] as FlakeOutput;
      throw new OperationError(
        "nix-failed",
        `nix build gave no output for ${sourceReference(o.flake)}#${o.attrPath.join(".")}`,
      );
    }
    return out;
  });
  return { paths, built };
}

/** A flake output named by the fleet file: a flake reference, or a local directory. */
export type FlakeInstallable =
  | (FlakeOutput & { readonly local?: undefined })
  | {
      readonly local: {
        /** Absolute: `path:./x#a`, `./x#a` and `.#a` are relative to the fleet file. */
        readonly dir: string;
        /** The fleet file wrote `path:` itself. */
        readonly explicitPath: boolean;
      };
      readonly attrPath: readonly string[];
    };

/**
 * `path:./x#a`, `./x#a` and `.#a` name directories relative to the fleet file; they become
 * absolute, so the result does not depend on the working directory.
 */
export function parseFlakeInstallable(installable: string, baseDir: string): FlakeInstallable {
  const hash = installable.lastIndexOf("#");
  const flake = installable.slice(0, hash);
  const attrPath = installable.slice(hash + 1).split(".");
  const explicitPath = flake.startsWith("path:");
  const local = explicitPath ? flake.slice(5) : flake;
  if (local === "." || local.startsWith("./") || local.startsWith("../") || isAbsolute(local)) {
    return {
      local: { dir: isAbsolute(local) ? local : resolve(baseDir, local), explicitPath },
      attrPath,
    };
  }
  return { flake, attrPath };
}

/**
 * The flake output an installable names, as Nix is to evaluate it: a local directory becomes
 * its `git+file` or `path:` reference (flake-source.ts).
 */
async function flakeOutput(
  installable: string,
  baseDir: string,
  named: FlakeNamer,
): Promise<FlakeOutput> {
  const parsed = parseFlakeInstallable(installable, baseDir);
  if (parsed.local === undefined) return parsed;
  const flake = await localFlakeRef(parsed.local.dir, parsed.local.explicitPath, named);
  return { flake, attrPath: parsed.attrPath };
}

/** Who names a system of the fleet file: its hosts' `system` fields (the first few). */
function fleetNamer(hosts: readonly string[], baseDir: string): FlakeNamer {
  const fields = hosts
    .slice(0, 3)
    .map((h) => `hosts.${h}.system`)
    .join(", ");
  return {
    where: hosts.length > 3 ? `${fields} and ${hosts.length - 3} more` : fields,
    base: `the fleet file's directory, ${baseDir}`,
  };
}

/**
 * What `nixship push` is given, resolved as the fleet file resolves a host's `system`:
 * `FLAKE#ATTR` (`.#name` is packages.SYSTEM.name, legacyPackages.SYSTEM.name or
 * nixosConfigurations.name's toplevel; a local directory relative to `baseDir`) evaluated and
 * built as `buildSystems` does. Store paths (or links to them) are taken as they are; anything
 * else (a flake without `#`, an output selected with `^`) goes to `nix build` as given.
 * The flake outputs come first, in the order given.
 */
export async function resolvePushInstallables(
  items: readonly string[],
  baseDir: string,
  nix: NixOptions = {},
  /** Stops the evaluation and the build (an interrupted push). */
  signal?: AbortSignal,
): Promise<StorePath[]> {
  const isFlakeOutput = (item: string) =>
    FLAKE_INSTALLABLE_PATTERN.test(item) && !item.slice(item.lastIndexOf("#")).includes("^");
  const flakeItems = items.filter(isFlakeOutput);
  const others = items.filter((item) => !isFlakeOutput(item));
  const outputs = await Promise.all(
    flakeItems.map((item) =>
      flakeOutput(item, baseDir, { where: `'${item}'`, base: `the current directory, ${baseDir}` }),
    ),
  );
  const { paths } = await evaluateAndBuild(outputs, nix, undefined, true, {
    ...(signal === undefined ? {} : { signal }),
  }).catch((err: unknown) => {
    if (err instanceof MissingOutputsError) throw missingOutputs(err, flakeItems);
    throw withWhose(err, (i) => `'${sourceReference(flakeItems[i] ?? "")}'`);
  });
  return [...paths, ...(await resolveInstallables(others, nix, signal))];
}

export interface BuildSystemsOptions extends NixRunOptions {
  readonly nix?: NixOptions;
  /** The fleet's builders or build host (build-place.ts); undefined: here alone. */
  readonly where?: ResolvedBuildPlace;
  /** The build host pushes the closures itself, so they are not copied back. */
  readonly leaveOnHost?: boolean;
}

/** Evaluates and builds the hosts' systems: one evaluation, one build. */
export async function buildSystems(
  hosts: readonly FleetHost[],
  baseDir: string,
  options: BuildSystemsOptions = {},
): Promise<BuildResult> {
  const { nix = {}, where, leaveOnHost = false, ...run } = options;
  const specs = new Map<string, string[]>();
  for (const host of hosts) {
    const spec = formatSystemSpec(host.system);
    specs.set(spec, [...(specs.get(spec) ?? []), host.name]);
  }
  const flakeSpecs = [...specs.keys()].filter((s) => !s.startsWith("/"));
  const outputs = await Promise.all(
    flakeSpecs.map((s) => flakeOutput(s, baseDir, fleetNamer(specs.get(s) ?? [], baseDir))),
  );
  const onHost = leaveOnHost && where?.host !== undefined && where.hostSsh !== undefined;
  const { paths, built } = await evaluateAndBuild(outputs, nix, where, !onHost, run).catch(
    (err: unknown) => {
      if (err instanceof MissingOutputsError) throw missingSystems(err, flakeSpecs, specs);
      throw withWhose(err, (i) => systemFields(specs.get(flakeSpecs[i] ?? "") ?? []));
    },
  );
  const pathOf = new Map<string, StorePath>(flakeSpecs.map((s, i) => [s, paths[i] as StorePath]));
  const given = [...specs.keys()].filter((s) => s.startsWith("/")) as StorePath[];
  const valid = await validPaths(given, nix);
  for (const path of given) {
    if (!valid.has(path)) {
      throw new OperationError(
        "system-missing",
        `${path} (the system of ${specs.get(path)?.join(", ")}) is not in the local Nix store`,
        {
          hint: "build or copy it here first; nixship pushes systems from the deployer's store",
        },
      );
    }
    pathOf.set(path, path);
  }
  // Specs that name one system (two hosts of a fleet in the flake, each its own attribute, on
  // one derivation) are one system, named by the first.
  const byPath = new Map<StorePath, BuiltSystem>();
  for (const [spec, names] of specs) {
    const path = pathOf.get(spec) as StorePath;
    const seen = byPath.get(path);
    byPath.set(
      path,
      seen === undefined
        ? // Shown and printed (--json): what identifies the flake, never a token its reference holds.
          { spec: sourceReference(spec), path, hosts: names }
        : { ...seen, hosts: [...seen.hosts, ...names] },
    );
  }
  const systems = [...byPath.values()];
  const byHost = new Map<string, StorePath>();
  for (const [path, s] of byPath) for (const h of s.hosts) byHost.set(h, path);
  return {
    systems,
    byHost,
    builtOn: built.builtOn,
    unusable: built.unusable,
    host: where?.host,
    leftOnHost:
      onHost &&
      where?.host !== undefined &&
      where.hostSsh !== undefined &&
      paths.length > 0 &&
      built.made !== undefined
        ? {
            paths: new Set(paths),
            made: built.made,
            nix: {
              store: where.host,
              ...(where.place.sshOpts === undefined ? {} : { sshOpts: where.place.sshOpts }),
            },
            files: buildHostSystemFiles(where.hostSsh),
          }
        : undefined,
  };
}

/**
 * The systems (`x86_64-linux`, …) the hosts' flake systems are built for, each with the hosts
 * that need it, evaluated without building (store-path systems are built already). A missing
 * output fails as in a build.
 */
export async function neededSystemTypes(
  hosts: readonly FleetHost[],
  baseDir: string,
  signal?: AbortSignal,
): Promise<Map<string, string[]>> {
  const flakeHosts = hosts.filter((h) => h.system.kind === "flake");
  const specs = [...new Set(flakeHosts.map((h) => formatSystemSpec(h.system)))];
  const namesOf = new Map<string, string[]>();
  for (const h of flakeHosts) {
    const spec = formatSystemSpec(h.system);
    namesOf.set(spec, [...(namesOf.get(spec) ?? []), h.name]);
  }
  const outputs = await Promise.all(
    specs.map((s) => flakeOutput(s, baseDir, fleetNamer(namesOf.get(s) ?? [], baseDir))),
  );
  const types = await evaluateSystemTypes(outputs, {}, signal).catch((err: unknown) => {
    throw withWhose(err, (i) => systemFields(namesOf.get(specs[i] ?? "") ?? []));
  });
  const needed = new Map<string, string[]>();
  for (const host of flakeHosts) {
    const type = types[specs.indexOf(formatSystemSpec(host.system))] ?? "";
    needed.set(type, [...(needed.get(type) ?? []), host.name]);
  }
  return needed;
}

/** The fleet file's fields that name hosts' system: `hosts.web.system, hosts.db.system`. */
function systemFields(hosts: readonly string[]): string {
  return hosts.map((h) => `hosts.${h}.system`).join(", ");
}

/**
 * A build in which the systems of `outputs` (their indexes) did not build: each failed, or
 * something it needs did. The build kept going, so every other one did.
 */
class SystemsBuildError extends OperationError {
  constructor(
    readonly outputs: readonly number[],
    readonly failure: OperationError,
    who?: string,
  ) {
    super(
      failure.code,
      `${who ?? "some systems"}: did not build (each failed, or something it needs did; every other system built):\n${failure.message}`,
      { ...(failure.hint === undefined ? {} : { hint: failure.hint }), cause: failure },
    );
  }
}

/**
 * An evaluation that failed in one output, or a build in which some did not build, with whose
 * outputs they are (`whose(index)`) in front.
 */
function withWhose(err: unknown, whose: (index: number) => string): unknown {
  if (err instanceof SystemEvalError && err.output !== undefined) {
    return err.inFrontOf(whose(err.output));
  }
  if (err instanceof SystemsBuildError) {
    return new SystemsBuildError(err.outputs, err.failure, err.outputs.map(whose).join(", "));
  }
  return err;
}

/** Installables (push's arguments) whose flake output does not exist, with the closest that do. */
function missingOutputs(err: MissingOutputsError, items: readonly string[]): InputError {
  const lines = err.missing.map(
    ({ index }) => `the flake has no output ${JSON.stringify(sourceReference(items[index] ?? ""))}`,
  );
  return new InputError("flake-output-missing", lines.join("\n"), {
    hint: closestHint(err),
  });
}

function closestHint(err: MissingOutputsError): string {
  const first = err.missing[0];
  const wanted = first ? (err.outputs[first.index]?.attrPath.join(".") ?? "") : "";
  const available = first ? closestFirst(wanted, first.available) : [];
  return available.length > 0
    ? `the flake has ${listForHint(available)}`
    : "the flake has no packages for this system and no nixosConfigurations";
}

/**
 * Systems whose flake output does not exist, named as the fleet file names them (the hosts'
 * `system` fields), with the outputs the flake does have, closest first.
 */
function missingSystems(
  err: MissingOutputsError,
  flakeSpecs: readonly string[],
  specs: ReadonlyMap<string, readonly string[]>,
): InputError {
  const lines = err.missing.map(({ index }) => {
    const spec = flakeSpecs[index] as string;
    return `${systemFields(specs.get(spec) ?? [])}: the flake has no output ${JSON.stringify(sourceReference(spec))}`;
  });
  return new InputError("flake-output-missing", lines.join("\n"), { hint: closestHint(err) });
}
