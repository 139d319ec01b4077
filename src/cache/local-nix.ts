// The local Nix, driven through its CLI: build installables, query closures, import paths.
import { spawn } from "node:child_process";
import { realpath } from "node:fs/promises";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { InputError, OperationError } from "../errors.js";
import type { PathInfo } from "../nix/closure.js";
import { Sha256 } from "../nix/hash.js";
import { isStorePath, parseStorePath, STORE_DIR, type StorePath } from "../nix/store-path.js";

const NEW_CLI = ["--extra-experimental-features", "nix-command flakes"];

export interface NixOptions {
  /** A Nix store URL or directory (`--store`); the default store when omitted. */
  readonly store?: string;
}

function storeArgs(options: NixOptions): string[] {
  return options.store ? ["--store", options.store] : [];
}

interface RunResult {
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a Nix command; a non-zero exit becomes an OperationError quoting Nix's own words. */
export function runNix(
  command: string,
  args: readonly string[],
  input?: Readable,
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const proc = spawn(command, args, { stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let stderr = "";
    proc.stdout.on("data", (d: Buffer) => out.push(d));
    proc.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr = (stderr + d).slice(-8000);
    });
    let inputFailure: Error | undefined;
    if (input) {
      // If the input fails, the command must not wait for more: end it and report the cause.
      pipeline(input, proc.stdin).catch((err: Error) => {
        inputFailure = err;
        proc.kill();
      });
    } else proc.stdin.end();
    proc.on("error", (err) =>
      reject(
        new OperationError("nix-missing", `cannot run '${command}': ${err.message}`, {
          hint: "install Nix (Debian: apt-get install nix-bin)",
        }),
      ),
    );
    proc.on("close", (code) => {
      if (inputFailure) reject(inputFailure);
      else if (code === 0) resolve({ stdout: Buffer.concat(out).toString("utf8"), stderr });
      else {
        const last = stderr.trim().split("\n").slice(-6).join("\n");
        reject(
          new OperationError(
            "nix-failed",
            `'${command} ${args.join(" ")}' exited with ${code}:\n${last}`,
          ),
        );
      }
    });
  });
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
export function parsePathInfoJson(text: string): PathInfo[] {
  const data = JSON.parse(text) as RawPathInfo[] | Record<string, RawPathInfo | null>;
  const entries: RawPathInfo[] = Array.isArray(data)
    ? data
    : Object.entries(data).map(([path, info]) => ({ ...(info ?? { valid: false }), path }));
  return entries.map((raw) => {
    if (!raw.path || raw.valid === false || !raw.narHash || raw.narSize === undefined) {
      throw new OperationError(
        "path-not-valid",
        `'${raw.path}' is not a valid path in the local Nix store`,
      );
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
  const { stdout } = await runNix("nix", [
    ...NEW_CLI,
    "path-info",
    "--json",
    "--recursive",
    ...storeArgs(options),
    ...paths,
  ]);
  return parsePathInfoJson(stdout);
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
