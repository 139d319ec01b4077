// Runs the built `nixship` binary as a user would, capturing its output and exit code.
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The checkout: the nearest folder above this file that holds package.json. This file runs from
 * support/ under vitest and from dist-bench/support/ in a benchmark, so no fixed `../` fits both.
 */
function checkoutRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
  return dir;
}

/** The built CLI (`npm run build`). */
export const NIXSHIP_BIN = join(checkoutRoot(), "dist/cli/bin.js");

export interface CliRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  readonly input?: Buffer;
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  /** Called with each chunk of stdout as it comes (to act while the command runs). */
  readonly onStdout?: (chunk: string) => void;
}

export function nixship(args: readonly string[], options: RunOptions = {}): Promise<CliRun> {
  return run(process.execPath, [NIXSHIP_BIN, ...args], options);
}

/** A signing key `nixship key generate` made in `dir`: its secret file, and its public key. */
export async function generatedKey(
  dir: string,
  name: string,
): Promise<{ readonly file: string; readonly publicKey: string }> {
  const file = join(dir, `${name}.sec`);
  const made = await nixship(["key", "generate", "--name", name, "--out", file]);
  if (made.code !== 0) throw new Error(`key generate ${name}: ${made.stderr}`);
  return { file, publicKey: (await nixship(["key", "public", file])).stdout.trim() };
}

export function run(
  command: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const proc = spawn(command, args, {
      env: { ...process.env, ...options.env },
      cwd: options.cwd,
      stdio: ["pipe", "pipe", "pipe"],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    proc.stdout.on("data", (d: Buffer) => {
      out.push(d);
      options.onStdout?.(d.toString("utf8"));
    });
    proc.stderr.on("data", (d: Buffer) => err.push(d));
    proc.on("error", reject);
    proc.stdin.on("error", () => {});
    proc.stdin.end(options.input);
    proc.on("close", (code) =>
      resolve({
        code: code ?? -1,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
      }),
    );
  });
}

/** Runs a command that must succeed; a failure throws with its stderr so the test shows why. */
export async function runOk(
  command: string,
  args: readonly string[],
  options: { input?: Buffer; cwd?: string } = {},
): Promise<string> {
  const r = await run(command, args, options);
  if (r.code !== 0) throw new Error(`${command} ${args.join(" ")} exited ${r.code}:\n${r.stderr}`);
  return r.stdout;
}

/** `nix-store --dump PATH` as raw bytes, for byte-for-byte comparisons. */
export function nixStoreDump(path: string): Buffer {
  const r = spawnSync("nix-store", ["--dump", path], { maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`nix-store --dump ${path} failed: ${r.stderr.toString()}`);
  return r.stdout;
}

/**
 * The arguments of a stock `nix copy --from CACHE` into a separate store, with signatures
 * required and only `trustedKey` trusted: how every test (and the benchmark) asks Nix itself
 * to judge a cache.
 */
export function nixCopyFromArgs(
  from: string,
  storeDir: string,
  trustedKey: string,
  path: string,
): string[] {
  return [
    "copy",
    "--from",
    from,
    "--store",
    storeDir,
    "--option",
    "require-sigs",
    "true",
    "--option",
    "trusted-public-keys",
    trustedKey,
    path,
  ];
}

/** Runs `nix copy --from` as above. */
export function nixCopyFrom(
  from: string,
  storeDir: string,
  trustedKey: string,
  path: string,
): Promise<CliRun> {
  return run("nix", nixCopyFromArgs(from, storeDir, trustedKey, path));
}
