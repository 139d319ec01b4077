// The local Nix, driven through its CLI: its version, closures and path infos, imports, copies
// to a host; evaluation and builds are nix-evaluate.ts's and nix-build.ts's.
import { realpath } from "node:fs/promises";
import type { Readable } from "node:stream";
import { InputError, OperationError } from "../errors.js";
import type { PathInfo } from "../nix/closure.js";
import { Sha256 } from "../nix/hash.js";
import { isStorePath, parseStorePath, STORE_DIR, type StorePath } from "../nix/store-path.js";
import { type RunOptions, type RunResult, runCommand } from "../util/run.js";
import { nixSettingFix } from "./nix-settings.js";
import { type NixVersion, parseNixVersion, unsupportedNix } from "./nix-version.js";

export const NEW_CLI = ["--extra-experimental-features", "nix-command flakes"];

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

export function storeArgs(options: NixOptions): string[] {
  return options.store ? ["--store", options.store] : [];
}

/** Runs a Nix command; a non-zero exit becomes an OperationError quoting Nix's own words. */
export const NIX_ERRORS = { missing: "nix-missing", failed: "nix-failed" } as const;
export const NIX_MISSING_HINT = "install Nix (Debian: apt-get install nix-bin)";

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
export async function nixCommand(
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

/**
 * How long a query of a store's records may take: far more than a closure of 100,000 paths
 * needs, so only a store that stopped answering meets it (a build host's daemon stuck on a lock,
 * or an ssh-ng:// connection whose host no longer answers).
 */
export const STORE_QUERY_TIMEOUT_MS = 10 * 60_000;

/** The closure of `paths` with the metadata Nix recorded (`nix path-info --json --recursive`). */
export async function queryClosure(
  paths: readonly StorePath[],
  options: NixOptions = {},
): Promise<PathInfo[]> {
  if (paths.length === 0) return [];
  const env = storeEnv(options);
  const { stdout } = await nixCommand(
    "nix",
    [...NEW_CLI, "path-info", "--json", "--recursive", ...storeArgs(options), ...paths],
    {
      purpose: `read the closure's records in ${options.store ?? "the local Nix store"}`,
      timeoutMs: STORE_QUERY_TIMEOUT_MS,
      ...(env ? { env } : {}),
    },
  );
  return parsePathInfoJson(stdout, options.store ?? "the local Nix store");
}

/** Which of `paths` are valid in the store (used to skip imports of paths already present). */
export async function validPaths(
  paths: readonly StorePath[],
  options: NixOptions = {},
): Promise<Set<StorePath>> {
  if (paths.length === 0) return new Set();
  const { stdout } = await nixCommand(
    "nix-store",
    [...storeArgs(options), "--check-validity", "--print-invalid", ...paths],
    {
      purpose: `ask which paths ${options.store ?? "the local Nix store"} holds`,
      timeoutMs: STORE_QUERY_TIMEOUT_MS,
    },
  );
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
  signal?: AbortSignal,
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
  // The interrupt's signal stops the build (a SIGTERM reaches nixship alone: Nix would build on).
  const { stdout } = await runNix(
    "nix",
    [...NEW_CLI, "build", "--no-link", "--json", ...storeArgs(options), ...toBuild],
    undefined,
    undefined,
    signal,
  );
  const built = JSON.parse(stdout) as { outputs?: Record<string, string>; path?: string }[];
  const outputs = built
    .flatMap((b) => (b.outputs ? Object.values(b.outputs) : b.path ? [b.path] : []))
    .map((p) => parseStorePath(p).path);
  return [...direct, ...outputs];
}

/**
 * Feeds a `nix-store --export` stream to `nix-store --import`, stopped by `bounds.signal` (an
 * interrupt) or once it has run `bounds.timeoutMs`.
 */
export async function importExport(
  stream: Readable,
  options: NixOptions = {},
  bounds: { readonly signal?: AbortSignal; readonly timeoutMs?: number } = {},
): Promise<void> {
  await nixCommand("nix-store", [...storeArgs(options), "--import"], {
    input: stream,
    ...(bounds.signal === undefined ? {} : { signal: bounds.signal }),
    ...(bounds.timeoutMs === undefined ? {} : { timeoutMs: bounds.timeoutMs }),
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
