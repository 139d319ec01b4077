// The local Nix, driven through its CLI: build installables, query closures, import paths.
import { realpath } from "node:fs/promises";
import type { Readable } from "node:stream";
import { InputError, OperationError } from "../errors.js";
import type { PathInfo } from "../nix/closure.js";
import { Sha256 } from "../nix/hash.js";
import { isStorePath, parseStorePath, STORE_DIR, type StorePath } from "../nix/store-path.js";
import { type RunOptions, type RunResult, runCommand } from "../util/run.js";
import { sourceReference, withoutSourceSecrets } from "../util/source-reference.js";
import { runStreamed } from "../util/streamed-run.js";
import { type BuilderFailure, NixBuildLog } from "./build-log.js";
import { builderError } from "./builder-error.js";
import { type BuildProgress, NixActivity } from "./nix-activity.js";
import { nixSettingFix } from "./nix-settings.js";
import {
  derivationOutputs,
  type NixVersion,
  parseNixVersion,
  unsupportedNix,
} from "./nix-version.js";

export const NEW_CLI = ["--extra-experimental-features", "nix-command flakes"];
/** The lines of what Nix said last that a failure's message carries. */
const TAIL_LINES = 16;

export interface NixOptions {
  /** A Nix store URL or directory (`--store`); the default store when omitted. */
  readonly store?: string;
  /** NIX_SSHOPTS for a store over ssh (`ssh-ng://`): deploy/build-place.ts makes it. */
  readonly sshOpts?: string;
}

function storeEnv(options: NixOptions): NodeJS.ProcessEnv | undefined {
  return options.sshOpts === undefined
    ? undefined
    : { ...process.env, NIX_SSHOPTS: options.sshOpts };
}

function storeArgs(options: NixOptions): string[] {
  return options.store ? ["--store", options.store] : [];
}

/** Runs a Nix command; a non-zero exit becomes an OperationError quoting Nix's own words. */
const NIX_ERRORS = { missing: "nix-missing", failed: "nix-failed" } as const;
const NIX_MISSING_HINT = "install Nix (Debian: apt-get install nix-bin)";

export function runNix(
  command: string,
  args: readonly string[],
  input?: Readable,
  env?: NodeJS.ProcessEnv,
  signal?: AbortSignal,
): Promise<RunResult> {
  return nixCommand(command, args, {
    ...(input ? { input } : {}),
    ...(env ? { env } : {}),
    ...(signal ? { signal } : {}),
  });
}

/** Runs a Nix command once the local Nix is known to be one nixship supports. */
async function nixCommand(
  command: string,
  args: readonly string[],
  options: RunOptions,
): Promise<RunResult> {
  await localNixVersion();
  return runCommand(command, args, {
    ...options,
    errorCodes: NIX_ERRORS,
    missingHint: NIX_MISSING_HINT,
  }).catch((err: unknown) => {
    // A setting of the local Nix (its sandbox, its build users) is why: say the line to add.
    const fix = err instanceof OperationError ? nixSettingFix(err.message) : undefined;
    if (fix === undefined || (err as OperationError).hint !== undefined) throw err;
    throw new OperationError((err as OperationError).code, (err as OperationError).message, {
      hint: fix,
    });
  });
}

const versions = new Map<string, Promise<NixVersion>>();

/**
 * The local Nix's version, read once per process (and PATH) from `nix --version`; a Nix older
 * than the oldest one tested, or one whose version cannot be read, is refused here, before
 * any command of it runs.
 */
export function localNixVersion(): Promise<NixVersion> {
  const key = process.env.PATH ?? "";
  let version = versions.get(key);
  if (version === undefined) {
    version = runCommand("nix", ["--version"], {
      errorCodes: NIX_ERRORS,
      missingHint: NIX_MISSING_HINT,
      signal: AbortSignal.timeout(30_000),
    }).then(({ stdout }) => {
      const parsed = parseNixVersion(stdout);
      const refused = unsupportedNix(parsed, stdout, "the local machine");
      if (refused !== undefined || parsed === undefined) throw refused;
      return parsed;
    });
    versions.set(key, version);
  }
  return version;
}

interface RawPathInfo {
  path?: string;
  narHash?: string;
  narSize?: number;
  references?: string[];
  deriver?: string | null;
  signatures?: string[];
  ca?: string | null;
  valid?: boolean;
}

/** Parses `nix path-info --json` output: an array (Nix ≤ 2.18) or an object keyed by path. */
export function parsePathInfoJson(text: string, where = "the local Nix store"): PathInfo[] {
  const data = JSON.parse(text) as RawPathInfo[] | Record<string, RawPathInfo | null>;
  const entries: RawPathInfo[] = Array.isArray(data)
    ? data
    : Object.entries(data).map(([path, info]) => ({ ...(info ?? { valid: false }), path }));
  return entries.map((raw) => {
    if (!raw.path || raw.valid === false || !raw.narHash || raw.narSize === undefined) {
      throw new OperationError("path-not-valid", `'${raw.path}' is not a valid path in ${where}`);
    }
    const deriver = raw.deriver ? parseStorePath(raw.deriver).baseName : undefined;
    return {
      path: parseStorePath(raw.path).path,
      narHash: Sha256.parse(raw.narHash),
      narSize: raw.narSize,
      references: (raw.references ?? []).map((r) => parseStorePath(r).path),
      deriver,
      sigs: raw.signatures ?? [],
      ca: raw.ca ?? undefined,
    };
  });
}

/** The closure of `paths` with the metadata Nix recorded (`nix path-info --json --recursive`). */
export async function queryClosure(
  paths: readonly StorePath[],
  options: NixOptions = {},
): Promise<PathInfo[]> {
  if (paths.length === 0) return [];
  const { stdout } = await runNix(
    "nix",
    [...NEW_CLI, "path-info", "--json", "--recursive", ...storeArgs(options), ...paths],
    undefined,
    storeEnv(options),
  );
  return parsePathInfoJson(stdout, options.store ?? "the local Nix store");
}

/** Which of `paths` are valid in the store (used to skip imports of paths already present). */
export async function validPaths(
  paths: readonly StorePath[],
  options: NixOptions = {},
): Promise<Set<StorePath>> {
  if (paths.length === 0) return new Set();
  const { stdout } = await runNix("nix-store", [
    ...storeArgs(options),
    "--check-validity",
    "--print-invalid",
    ...paths,
  ]);
  const invalid = new Set(stdout.split("\n").filter(Boolean));
  return new Set(paths.filter((p) => !invalid.has(p)));
}

/**
 * Resolves installables to store paths: store paths (or paths inside one) are taken as they
 * are; anything else is built with ONE `nix build` call.
 */
export async function resolveInstallables(
  installables: readonly string[],
  options: NixOptions = {},
): Promise<StorePath[]> {
  const direct: StorePath[] = [];
  const toBuild: string[] = [];
  for (const item of installables) {
    // A result symlink (./result) names the store path it points at.
    const resolved = await realpath(item).catch(() => item);
    if (resolved.startsWith(`${STORE_DIR}/`)) {
      const base = resolved.split("/").slice(0, 4).join("/");
      if (!isStorePath(base))
        throw new InputError("bad-store-path", `'${item}' is not a valid store path`);
      direct.push(base as StorePath);
    } else toBuild.push(item);
  }
  if (toBuild.length === 0) return direct;
  const { stdout } = await runNix("nix", [
    ...NEW_CLI,
    "build",
    "--no-link",
    "--json",
    ...storeArgs(options),
    ...toBuild,
  ]);
  const built = JSON.parse(stdout) as { outputs?: Record<string, string>; path?: string }[];
  const outputs = built
    .flatMap((b) => (b.outputs ? Object.values(b.outputs) : b.path ? [b.path] : []))
    .map((p) => parseStorePath(p).path);
  return [...direct, ...outputs];
}

/** Feeds a `nix-store --export` stream to `nix-store --import`. */
export async function importExport(stream: Readable, options: NixOptions = {}): Promise<void> {
  await runNix("nix-store", [...storeArgs(options), "--import"], stream);
}

/** Outputs a flake does not have, each with the ones it does (exit 2). */
export class MissingOutputsError extends InputError {
  constructor(
    readonly outputs: readonly FlakeOutput[],
    readonly missing: readonly { readonly index: number; readonly available: readonly string[] }[],
  ) {
    super(
      "flake-output-missing",
      missing
        .map(({ index }) => {
          const o = outputs[index] as FlakeOutput;
          return `flake output not found: ${sourceReference(o.flake)}#${o.attrPath.join(".")}`;
        })
        .join("\n"),
    );
  }
}

/**
 * An evaluation that Nix failed: its own words (the end of its stderr), without the expression
 * nixship generated, naming the flakes; the references in both shown without their credentials.
 */
function evaluationFailed(stderr: string, flakes: readonly string[]): OperationError {
  const said = withoutSourceSecrets(stderr.trim().split("\n").slice(-20).join("\n"));
  return new OperationError(
    "nix-eval-failed",
    `evaluating ${flakes.map(sourceReference).join(", ")} failed${said ? `:\n${said}` : ""}`,
    { hint: "the error is Nix's, in the flake: fix it there ('nix flake check' helps)" },
  );
}

/** A flake output by flake reference and attribute path (`path:/abs/dir`, ["web"]). */
export interface FlakeOutput {
  readonly flake: string;
  readonly attrPath: readonly string[];
}

const ATTR = /^[A-Za-z0-9_][A-Za-z0-9_'-]*$/;
const FLAKE_OUTPUT_KINDS = new Set(["packages", "legacyPackages", "nixosConfigurations", "checks"]);

/**
 * Where Nix would look for `#attr` (as `nix build` and `nixos-rebuild` resolve it): the places
 * tried first, then the attribute itself when it holds a derivation or a configuration (whose
 * toplevel), as a fleet in the flake names a host's system (`#nixship.hosts.web1.system`).
 */
function candidates(attrPath: readonly string[]): string {
  const list = (segments: readonly string[]) =>
    `[ ${segments.map((s) => (s === "\0system" ? "sys" : `"${s}"`)).join(" ")} ]`;
  const [first] = attrPath;
  if (first !== undefined && FLAKE_OUTPUT_KINDS.has(first)) {
    const full =
      first === "nixosConfigurations" && attrPath.length === 2
        ? [...attrPath, "config", "system", "build", "toplevel"]
        : attrPath;
    return `[ ${list(full)} ] [ ]`;
  }
  const places = [
    ["packages", "\0system", ...attrPath],
    ["legacyPackages", "\0system", ...attrPath],
    ["nixosConfigurations", ...attrPath, "config", "system", "build", "toplevel"],
  ];
  const itself = [[...attrPath, "config", "system", "build", "toplevel"], attrPath];
  return `[ ${places.map(list).join(" ")} ] [ ${itself.map(list).join(" ")} ]`;
}

/**
 * Evaluates every output in ONE Nix evaluation (each flake is fetched once by getFlake).
 * Returns the derivation of each, in order; `buildDerivations` (or a build host) builds them.
 */
export function evaluateDerivations(
  outputs: readonly FlakeOutput[],
  options: NixOptions = {},
): Promise<string[]> {
  return evaluateOutputs(outputs, options, "drvPath");
}

/**
 * The system (`x86_64-linux`, …) each output is built for, in one evaluation that instantiates
 * nothing: what a fleet needs of its builders (`doctor`). Bounded by `signal`.
 */
export function evaluateSystemTypes(
  outputs: readonly FlakeOutput[],
  options: NixOptions = {},
  signal?: AbortSignal,
): Promise<string[]> {
  return evaluateOutputs(outputs, options, "system", signal);
}

async function evaluateOutputs(
  outputs: readonly FlakeOutput[],
  options: NixOptions,
  attribute: "drvPath" | "system",
  signal?: AbortSignal,
): Promise<string[]> {
  if (outputs.length === 0) return [];
  for (const o of outputs) {
    const bad = o.attrPath.find((s) => !ATTR.test(s));
    if (o.attrPath.length === 0 || bad !== undefined) {
      throw new InputError(
        "bad-installable",
        `${sourceReference(o.flake)}#${o.attrPath.join(".")}: '${bad ?? ""}' is not an attribute name this tool can evaluate`,
      );
    }
  }
  const flakes = [...new Set(outputs.map((o) => o.flake))];
  const expr = evaluationExpression(outputs, attribute);
  const evaluated = await nixCommand(
    "nix",
    [...NEW_CLI, "eval", "--impure", "--json", ...storeArgs(options), "--expr", expr],
    { okCodes: [0, 1], ...(signal ? { signal } : {}) },
  ).catch((err: unknown) => {
    // Its failure quotes the command line, whose expression holds the flakes' references.
    if (!(err instanceof OperationError)) throw err;
    throw new OperationError(err.code, withoutSourceSecrets(err.message), {
      ...(err.hint === undefined ? {} : { hint: err.hint }),
    });
  });
  if (evaluated.code !== 0) throw evaluationFailed(evaluated.stderr, flakes);
  const picked = JSON.parse(evaluated.stdout) as ({ drv: string } | { available: string[] })[];
  const missing = picked.flatMap((p, index) =>
    "available" in p ? [{ index, available: p.available }] : [],
  );
  if (missing.length > 0) throw new MissingOutputsError(outputs, missing);
  return picked.map((p) => (p as { drv: string }).drv);
}

/**
 * The one expression that evaluates `outputs` (each flake fetched once by getFlake): a list,
 * per output, of `{ drv = OUTPUT.ATTRIBUTE; }` or `{ available = [ ... ]; }` when the flake
 * has no such output. A missing output is data, with the outputs the flake does have, so the
 * caller can name the hosts and the closest outputs; only faults of Nix itself fail it.
 */
export function evaluationExpression(
  outputs: readonly FlakeOutput[],
  attribute: "drvPath" | "system",
): string {
  const flakes = [...new Set(outputs.map((o) => o.flake))];
  return `let
  sys = builtins.currentSystem;
  flakes = [ ${flakes.map((f) => `(builtins.getFlake ${JSON.stringify(f)})`).join(" ")} ];
  at = set: path: builtins.foldl' (s: k: if s != null && builtins.isAttrs s && builtins.hasAttr k s then builtins.getAttr k s else null) set path;
  names = set: if builtins.isAttrs set then builtins.attrNames set else [ ];
  available = f: (names (at f [ "packages" sys ])) ++ (map (n: "nixosConfigurations.\${n}") (names (f.nixosConfigurations or { })));
  drv = v: if builtins.isAttrs v && (v.type or null) == "derivation" then v else null;
  pick = f: cands: itself: let found = builtins.filter (x: x != null) (map (at f) cands ++ map (p: drv (at f p)) itself); in
    if found == [ ] then { available = available f; } else { drv = (builtins.head found).${attribute}; };
in [ ${outputs
    .map(
      (o) => `(pick (builtins.elemAt flakes ${flakes.indexOf(o.flake)}) ${candidates(o.attrPath)})`,
    )
    .join(" ")} ]`;
}

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

/**
 * Runs a Nix command, reading what its stderr says of other machines (build-log.ts); a failure
 * there becomes a BuilderError naming the builder, any other a `nix-failed` with Nix's last
 * words. `store`: the other machine whose store the command builds in, if any.
 */
export async function runNixLogged(
  args: readonly string[],
  place: BuildPlace,
  store?: string,
  onProgress?: (progress: BuildProgress) => void,
): Promise<{ stdout: string; log: NixBuildLog }> {
  await localNixVersion();
  const log = new NixBuildLog(store);
  const activity = new NixActivity((line) => log.add(line), onProgress);
  const env = placeEnv(place);
  // Nix's structured log (nix-activity.ts): its builds as progress, its words as plain lines.
  const r = await runStreamed("nix", ["--log-format", "internal-json", ...args], {
    onStderrLine: (line) => activity.add(line),
    ...(env ? { env } : {}),
  });
  log.end();
  if (r.error !== undefined) {
    throw new OperationError(NIX_ERRORS.missing, `cannot run 'nix': ${r.error.message}`, {
      hint: NIX_MISSING_HINT,
    });
  }
  if (r.code === 0) return { stdout: r.stdout, log };
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
    `'nix ${args.filter((a) => !a.startsWith("/nix/store/")).join(" ")}' exited with ${r.code ?? r.killedBy}${last ? `:\n${last}` : ""}`,
    fix === undefined ? {} : { hint: fix },
  );
}

/**
 * Builds derivations in ONE `nix build`, on the deployer or on the place's builders (Nix routes
 * each by system and features). Returns each derivation's main output.
 */
export async function buildDerivations(
  drvPaths: readonly string[],
  options: NixOptions = {},
  place: BuildPlace = {},
  onProgress?: (progress: BuildProgress) => void,
): Promise<BuiltDerivations> {
  const version = await localNixVersion();
  const { stdout, log } = await runNixLogged(
    [
      ...NEW_CLI,
      "build",
      "--no-link",
      "--json",
      ...storeArgs(options),
      ...(place.builders === undefined
        ? []
        : ["--builders", place.builders, "--option", "builders-use-substitutes", "true"]),
      ...(place.maxJobs === undefined ? [] : ["--max-jobs", String(place.maxJobs)]),
      ...[...new Set(drvPaths)].map((drv) => derivationOutputs(drv, version)),
    ],
    place,
    undefined,
    onProgress,
  );
  return {
    byDrv: mainOutputs(stdout, version),
    builtOn: log.builtOn(),
    unusable: log.failures,
  };
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

/**
 * Copies a closure to a host with `nix copy --to ssh://DEST`. `sshOpts` becomes NIX_SSHOPTS,
 * which Nix splits at whitespace without quoting: give only what `nixSshOpts`
 * (delivery/ssh-config-for-nix.ts) makes of the fleet's options.
 */
export async function copyToHost(
  path: string,
  destination: string,
  sshOpts: string,
  options: { readonly signal?: AbortSignal } = {},
): Promise<void> {
  await runNix(
    "nix",
    [...NEW_CLI, "copy", "--to", `ssh://${destination}`, path],
    undefined,
    { ...process.env, NIX_SSHOPTS: sshOpts },
    options.signal,
  );
}
